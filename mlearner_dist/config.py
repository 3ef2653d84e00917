"""Typed configuration: YAML files loaded into frozen dataclasses.

Later files and ``--set section.key=value`` overrides win over earlier ones. An unknown key, or a
value of the wrong type or out of range, is a :class:`~mlearner_dist.exceptions.ConfigError` that
names the key and lists what is allowed.

Examples
--------
>>> cfg = load_config(["conf/base.yaml"], overrides=["cluster.k_max=4"])  # doctest: +SKIP
>>> cfg.cluster.k_max  # doctest: +SKIP
4
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

import yaml

from mlearner_dist.core.cross_split import check_resolution
from mlearner_dist.core.learners import LearnerKind
from mlearner_dist.core.roles import Roles
from mlearner_dist.exceptions import ConfigError


@dataclass(frozen=True)
class DataConfig:
    """Where the units table comes from.

    ``source`` is a file or folder path, a catalog table name (``catalog.schema.table``), or the
    built-in data set ``jobs_ii`` (format ``builtin``).
    """

    source: str = ""
    format: Literal["parquet", "csv", "delta", "table", "builtin"] = "parquet"
    missing: Literal["error", "drop"] = "error"
    csv_header: bool = True


@dataclass(frozen=True)
class ColumnsConfig:
    """Column roles. ``mediator`` may be empty (total effect only) or list several (joint).

    ``strata``: columns whose value combination is the randomisation stratum (block); empty for
    complete randomisation.

    ``cluster``: the column of the randomisation cluster (cluster-randomised trial); empty for
    individually randomised units. ``weight``: the column of the analysis (sampling) weights;
    empty for equal weights.
    """

    unit_id: str = "unit_id"
    treatment: str = "T"
    mediator: tuple[str, ...] = ()
    outcome: str = "Y"
    covariates: tuple[str, ...] = ()
    effect_outcome_baseline: str = ""
    strata: tuple[str, ...] = ()
    cluster: str = ""
    weight: str = ""


@dataclass(frozen=True)
class ValidationConfig:
    """Minimum sizes checked before any expensive work."""

    min_treated: int = 20
    min_control: int = 20
    min_subgroup: int = 10


@dataclass(frozen=True)
class EffectsConfig:
    """Step 1: cross-fitted nuisance models and the effect estimator."""

    estimator: Literal["nested", "reference"] = "nested"
    n_folds: int = 5
    learner: LearnerKind = "auto"
    learner_params: dict[str, Any] = field(default_factory=dict)
    row_budget: int = 50_000
    design_max_n: int = 200_000
    propensity_clip: float = 0.01
    auto_candidates: tuple[str, ...] = (
        "constant",
        "linear",
        "spline",
        "linear_boosting",
        "hist_gradient_boosting_early_stopping",
    )
    max_density_ratio: float = 10.0
    mediator_density: Literal["gaussian", "classifier"] = "gaussian"
    constant_effect_models: Literal["auto", "allowed", "excluded"] = "auto"


@dataclass(frozen=True)
class EmbedConfig:
    """Step 2: effect vector, distances and t-SNE (exact below ``exact_max_n``, else landmarks)."""

    effects: tuple[str, ...] = ("auto",)
    scaling: Literal["standardize", "none"] = "standardize"
    exact_max_n: int = 5000
    n_landmarks: int = 2000
    perplexity: float = 30.0
    n_iter: int = 750
    kernel_power: int = 2
    grid_size: int = 2000
    block_size: int = 200_000
    n_jobs: int = 1


@dataclass(frozen=True)
class ClusterConfig:
    """Step 3: K-means on the embedding for K in ``k_min..k_max``."""

    k_min: int = 2
    k_max: int = 5
    n_init: int = 10
    max_iter: int = 50
    engine: Literal["sklearn", "dask_ml"] = "dask_ml"
    space: Literal["effects", "covariates"] = "effects"


@dataclass(frozen=True)
class ProfileConfig:
    """Step 4a: profile trees of cluster labels on the covariates."""

    criteria: tuple[str, ...] = ("gini", "entropy")
    min_split_fractions: tuple[float, ...] = (0.10, 0.15, 0.20)
    n_complexity: int = 16
    complexity_min: float = 1e-6
    complexity_max: float = 1e-2
    cv_folds: int = 5
    tree_choice: Literal["one_se", "first_pareto"] = "one_se"
    max_rows: int = 20_000
    merge_leaves: bool = True
    merge_level: float = 0.05


@dataclass(frozen=True)
class TestConfig:
    """Step 4b: the decision test (DR scores) and the reference's interaction tests."""

    method: Literal["f", "lr"] = "f"
    statistic: Literal["dr_score", "interaction"] = "dr_score"
    covariance: Literal["HC1", "HC0"] = "HC1"
    overlap_trim: float = 0.1


@dataclass(frozen=True)
class CalibrationConfig:
    """Step 4c: the threshold for declaring heterogeneity."""

    mode: Literal["null", "fixed", "split"] = "null"
    alpha: float = 0.05
    n_replicates: int = 99
    threshold: float = 0.0043
    null_max_n: int = 150_000
    permutation_max_n: int = 1_500
    replicates: Literal["scores", "permutation"] = "scores"
    multiplier: Literal["rademacher", "normal", "mammen"] = "rademacher"
    familywise: bool = False
    honest: bool = True
    engine: Literal["dask", "spark"] = "dask"


@dataclass(frozen=True)
class SubgroupsConfig:
    """Step 4d: per-subgroup effects and intervals.

    ``honest``: with a calibration that estimates the subgroup effects on the units that chose
    the subgroups (``calibration.mode: fixed``, ``replicates: permutation``, or
    ``honest: false``), run the selection and its calibration on a hashed half and estimate the
    reported subgroups' effects on the other half. The split and the default cross-split
    calibration estimate them on held-out units already.
    """

    n_bootstrap: int = 1000
    level: float = 0.95
    honest: bool = False


@dataclass(frozen=True)
class SparkConfig:
    """Spark session settings (ignored when an active session exists, e.g. on Databricks)."""

    master: str = "local[*]"
    app_name: str = "mlearner-dist"
    partitions: int = 0
    driver_memory: str = "4g"
    conf: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DaskConfig:
    """Dask client: an existing scheduler address, or a local cluster of this size."""

    scheduler_address: str = ""
    n_workers: int = 2
    threads_per_worker: int = 1
    memory_limit: str = "4GiB"


@dataclass(frozen=True)
class ComputeConfig:
    """Where the work runs."""

    spark: SparkConfig = field(default_factory=SparkConfig)
    dask: DaskConfig = field(default_factory=DaskConfig)
    #: above this many units the profile stage holds a hashed sample of this size on the driver
    #: (the trees are grown on it) and computes every test from leaf moments on Spark
    driver_max_rows: int = 200_000


@dataclass(frozen=True)
class TrackingConfig:
    """MLflow tracking. An empty ``uri`` means a SQLite store inside the output folder."""

    enabled: bool = True
    uri: str = ""
    experiment: str = "mlearner"
    run_name: str = ""
    allow_outside_output: bool = False


@dataclass(frozen=True)
class ReportConfig:
    """Figures and the HTML report."""

    figures: bool = True
    html: bool = True


@dataclass(frozen=True)
class SensitivityConfig:
    """Sensitivity of the indirect effect to M-Y confounding (one mediator only).

    The Imai-Keele-Yamamoto curve ACME(rho) for the whole sample and every subgroup
    (:mod:`mlearner_dist.core.sensitivity`).
    """

    enabled: bool = True
    n_bootstrap: int = 200
    max_rows: int = 20_000


@dataclass(frozen=True)
class StabilityConfig:
    """Seed stability of the reported partition (:mod:`mlearner_dist.core.stability`)."""

    n_seeds: int = 5
    max_n: int = 50_000


@dataclass(frozen=True)
class Config:
    """The whole resolved configuration of one analysis."""

    fidelity: Literal["ours", "reference"] = "ours"
    design: Literal["randomised", "observational"] = "randomised"
    random_state: int = 2025
    data: DataConfig = field(default_factory=DataConfig)
    columns: ColumnsConfig = field(default_factory=ColumnsConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    effects: EffectsConfig = field(default_factory=EffectsConfig)
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    profile: ProfileConfig = field(default_factory=ProfileConfig)
    test: TestConfig = field(default_factory=TestConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    subgroups: SubgroupsConfig = field(default_factory=SubgroupsConfig)
    compute: ComputeConfig = field(default_factory=ComputeConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    sensitivity: SensitivityConfig = field(default_factory=SensitivityConfig)
    stability: StabilityConfig = field(default_factory=StabilityConfig)

    @property
    def roles(self) -> Roles:
        """The column roles as used by the core."""
        c = self.columns
        return Roles(
            unit_id=c.unit_id,
            treatment=c.treatment,
            outcome=c.outcome,
            mediators=tuple(c.mediator),
            covariates=tuple(c.covariates),
            strata=tuple(c.strata),
            cluster=c.cluster or None,
            weight=c.weight or None,
        )

    def to_dict(self) -> dict[str, Any]:
        """The configuration as plain nested dicts and lists (JSON and YAML safe)."""
        return _to_plain(dataclasses.asdict(self))

    def to_yaml(self) -> str:
        """The configuration as YAML text."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def fingerprint(self, sections: Iterable[str] | None = None) -> str:
        """A short hash of the configuration (or of some top-level sections)."""
        d = self.to_dict()
        if sections is not None:
            d = {k: d[k] for k in sections}
        text = json.dumps(d, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


# --- range rules: key -> (predicate, description) -------------------------------------------


def _positive(x: Any) -> bool:
    return x > 0


_RULES: dict[str, tuple[typing.Callable[[Any], bool], str]] = {
    "validation.min_treated": (lambda x: x >= 1, "an integer >= 1"),
    "validation.min_control": (lambda x: x >= 1, "an integer >= 1"),
    "validation.min_subgroup": (lambda x: x >= 2, "an integer >= 2"),
    "effects.n_folds": (lambda x: 2 <= x <= 50, "an integer from 2 to 50"),
    "effects.row_budget": (lambda x: x >= 100, "an integer >= 100"),
    "effects.design_max_n": (lambda x: x >= 10, "an integer >= 10"),
    "effects.propensity_clip": (lambda x: 0 <= x < 0.5, "a number in [0, 0.5)"),
    "embed.exact_max_n": (lambda x: x >= 0, "an integer >= 0"),
    "embed.n_landmarks": (lambda x: x >= 50, "an integer >= 50"),
    "embed.perplexity": (lambda x: 1 <= x <= 500, "a number from 1 to 500"),
    "embed.n_iter": (lambda x: x >= 50, "an integer >= 50"),
    "embed.kernel_power": (
        lambda x: x in (2, 4),
        "2 (standard t-SNE) or 4 (the reference's Rtsne)",
    ),
    "embed.grid_size": (lambda x: x >= 100, "an integer >= 100"),
    "embed.block_size": (lambda x: x >= 1000, "an integer >= 1000"),
    "embed.n_jobs": (lambda x: x >= 1, "an integer >= 1"),
    "cluster.k_min": (lambda x: x >= 2, "an integer >= 2"),
    "cluster.k_max": (lambda x: 2 <= x <= 20, "an integer from 2 to 20"),
    "cluster.n_init": (lambda x: x >= 1, "an integer >= 1"),
    "cluster.max_iter": (lambda x: x >= 1, "an integer >= 1"),
    "profile.n_complexity": (lambda x: x >= 1, "an integer >= 1"),
    "profile.complexity_min": (_positive, "a number > 0"),
    "profile.complexity_max": (_positive, "a number > 0"),
    "profile.cv_folds": (lambda x: 2 <= x <= 50, "an integer from 2 to 50"),
    "profile.max_rows": (lambda x: x >= 100, "an integer >= 100"),
    "profile.merge_level": (lambda x: 0 < x < 1, "a number in (0, 1)"),
    "test.overlap_trim": (lambda x: 0 <= x < 0.5, "a number in [0, 0.5)"),
    "calibration.alpha": (lambda x: 0 < x < 1, "a number in (0, 1)"),
    "calibration.n_replicates": (lambda x: x >= 1, "an integer >= 1"),
    "calibration.threshold": (lambda x: 0 < x < 1, "a number in (0, 1)"),
    "calibration.null_max_n": (lambda x: x >= 10, "an integer >= 10"),
    "calibration.permutation_max_n": (lambda x: x >= 10, "an integer >= 10"),
    "subgroups.n_bootstrap": (lambda x: x >= 0, "an integer >= 0 (0: no bootstrap)"),
    "subgroups.level": (lambda x: 0.5 <= x < 1, "a number in [0.5, 1)"),
    "compute.spark.partitions": (lambda x: x >= 0, "an integer >= 0 (0: Spark's default)"),
    "compute.dask.n_workers": (lambda x: x >= 1, "an integer >= 1"),
    "compute.driver_max_rows": (lambda x: x >= 1000, "an integer >= 1000"),
    "compute.dask.threads_per_worker": (lambda x: x >= 1, "an integer >= 1"),
    "sensitivity.n_bootstrap": (lambda x: x >= 20, "an integer >= 20"),
    "sensitivity.max_rows": (lambda x: x >= 100, "an integer >= 100"),
    "stability.n_seeds": (lambda x: x >= 0, "an integer >= 0 (0: off)"),
    "stability.max_n": (lambda x: x >= 1, "an integer >= 1"),
}

_EFFECT_NAMES = ("auto", "indirect", "direct", "total")
_CRITERIA = ("gini", "entropy", "log_loss")


#: Spark settings whose values are credentials (storage keys, tokens, passwords).
_SECRET_KEY = re.compile(
    r"secret|password|passwd|token|credential|account\.key|access\.key|sas\.|\.sas|"
    r"private\.key|api\.key|apikey",
    re.IGNORECASE,
)
#: A URL with a password in it: ``scheme://user:password@host``.
_URL_PASSWORD = re.compile(r"^[a-z][a-z0-9+.-]*://[^/@\s]*:[^/@\s]+@", re.IGNORECASE)
#: Values that refer to a secret instead of holding it: Databricks ``{{secrets/scope/key}}``,
#: environment ``${VAR}``.
_SECRET_REFERENCE = re.compile(r"^\s*(\{\{\s*secrets/[^}]+\}\}|\$\{[A-Za-z_][A-Za-z0-9_]*\})\s*$")


def _secret_problems(cfg: Config) -> list[str]:
    """Credentials written into the configuration (which is logged and stored in MLflow)."""
    problems = []
    for key, value in (
        ("tracking.uri", cfg.tracking.uri),
        ("data.source", cfg.data.source),
        ("compute.dask.scheduler_address", cfg.compute.dask.scheduler_address),
    ):
        if _URL_PASSWORD.match(str(value)):
            problems.append(
                f"{key}: the URL holds a password; configuration is logged and stored with the "
                "run, so give credentials through the environment (MLFLOW_TRACKING_USERNAME / "
                "MLFLOW_TRACKING_PASSWORD or MLFLOW_TRACKING_TOKEN, DATABRICKS_TOKEN, cloud "
                "credentials) or the platform's secret store"
            )
    for name, value in cfg.compute.spark.conf.items():
        if _SECRET_KEY.search(str(name)) and not _SECRET_REFERENCE.match(str(value)):
            problems.append(
                f"compute.spark.conf[{name!r}]: a credential in a config file ends up in logs and "
                "MLflow params; refer to it instead ({{secrets/scope/key}} on Databricks, "
                "${ENV_VAR} for an environment variable) or set it in the cluster's Spark config"
            )
    return problems


def _cross_checks(cfg: Config) -> list[str]:
    problems = _secret_problems(cfg)
    c = cfg.calibration
    if c.mode == "null" and c.replicates == "scores" and c.honest:
        short = check_resolution(c.n_replicates, c.alpha, 4 if c.familywise else 2)
        if short is not None:
            problems.append(short)
    if cfg.cluster.k_min > cfg.cluster.k_max:
        problems.append(
            f"cluster.k_min={cfg.cluster.k_min} > cluster.k_max={cfg.cluster.k_max}: the K range "
            "is empty; set k_min <= k_max (the reference uses 2..5)"
        )
    if cfg.profile.complexity_min > cfg.profile.complexity_max:
        problems.append("profile.complexity_min must be <= profile.complexity_max")
    bad = [e for e in cfg.embed.effects if e not in _EFFECT_NAMES]
    if bad or not cfg.embed.effects or len(cfg.embed.effects) > 3:
        problems.append(
            f"embed.effects={list(cfg.embed.effects)}: give 1 to 3 of {list(_EFFECT_NAMES[1:])}, "
            "or [auto] (indirect with a mediator, total without)"
        )
    if "auto" in cfg.embed.effects and len(cfg.embed.effects) > 1:
        problems.append("embed.effects: 'auto' cannot be combined with other effects")
    if not cfg.columns.mediator and any(e in ("indirect", "direct") for e in cfg.embed.effects):
        problems.append(
            "embed.effects asks for indirect/direct effects but columns.mediator is empty; "
            "use [total] or [auto], or name a mediator"
        )
    if cfg.embed.n_landmarks <= 3 * cfg.embed.perplexity:
        problems.append(
            f"embed.perplexity={cfg.embed.perplexity} is too large for "
            f"embed.n_landmarks={cfg.embed.n_landmarks}: t-SNE needs more than 3 x perplexity "
            "points; lower the perplexity or raise n_landmarks"
        )
    bad_crit = [c for c in cfg.profile.criteria if c not in _CRITERIA]
    if bad_crit or not cfg.profile.criteria:
        problems.append(f"profile.criteria={list(cfg.profile.criteria)}: allowed {list(_CRITERIA)}")
    bad_frac = [f for f in cfg.profile.min_split_fractions if not 0 < f < 1]
    if bad_frac or not cfg.profile.min_split_fractions:
        problems.append(
            "profile.min_split_fractions: give fractions of n in (0, 1), e.g. [0.1, 0.2]"
        )
    if cfg.data.format == "builtin" and cfg.data.source not in ("jobs_ii",):
        problems.append(
            f"data.source={cfg.data.source!r} is not a built-in data set; with data.format=builtin "
            "use jobs_ii, or set data.format to parquet/csv/delta/table"
        )
    return problems


# --- loading ---------------------------------------------------------------------------------


def _to_plain(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_plain(v) for v in obj]
    return obj


def _allowed(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert a YAML value to the annotated type, or raise ConfigError naming the key."""
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a section (mapping) with keys {_allowed(tp)}")
        return _build(tp, value, key)
    if origin is Literal:
        choices = get_args(tp)
        if value is None and "null" in choices:
            value = "null"  # YAML reads a bare null as None
        if value not in choices:
            raise ConfigError(f"{key}={value!r} is not allowed; choose one of {list(choices)}")
        return value
    if origin is tuple:
        (inner, _ellipsis) = get_args(tp)
        if value is None or value == "":
            return ()
        if isinstance(value, (str, int, float)):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return tuple(_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict or tp is dict:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if origin in (typing.Union, types.UnionType):
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        try:
            as_float = float(value)
        except ValueError as exc:
            raise ConfigError(f"{key}: expected an integer, got {value!r}") from exc
        if not as_float.is_integer():
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return int(as_float)
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{key}: expected a number, got {value!r}") from exc
    if tp is str:
        if value is None:
            return ""
        if isinstance(value, (Mapping, list)):
            raise ConfigError(f"{key}: expected a text value, got {value!r}")
        return str(value)
    return value


def _build(cls: type, values: Mapping[str, Any], prefix: str) -> Any:
    hints = get_type_hints(cls)
    allowed = _allowed(cls)
    unknown = [k for k in values if k not in allowed]
    if unknown:
        where = f"section '{prefix}'" if prefix else "the top level"
        raise ConfigError(
            f"unknown key(s) {[f'{prefix}.{k}' if prefix else k for k in unknown]} in {where}; "
            f"allowed: {allowed}"
        )
    kwargs = {}
    for name, value in values.items():
        key = f"{prefix}.{name}" if prefix else name
        coerced = _coerce(value, hints[name], key)
        rule = _RULES.get(key)
        if rule is not None and not rule[0](coerced):
            raise ConfigError(f"{key}={coerced!r} is out of range; allowed: {rule[1]}")
        kwargs[name] = coerced
    return cls(**kwargs)


def _deep_merge(base: dict[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in new.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _deep_merge(dict(out[k]), v)
        else:
            out[k] = v
    return out


def parse_override(text: str) -> dict[str, Any]:
    """Turn ``section.key=value`` into a nested dict; the value is parsed as YAML.

    Parameters
    ----------
    text : str
        For example ``cluster.k_max=4`` or ``columns.covariates=[X1, X2]``.

    Returns
    -------
    dict
        ``{"cluster": {"k_max": 4}}``.
    """
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. --set cluster.k_max=4")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {text!r}: the key must look like section.key")
    try:
        value = yaml.safe_load(raw) if raw.strip() != "" else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {text!r}: the value is not valid YAML ({exc})") from exc
    out: dict[str, Any] = {}
    node = out
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read one YAML config file into a dict (empty file: empty dict)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(
            f"config file {str(p)!r} does not exist (paths are relative to {Path.cwd()})"
        )
    try:
        loaded = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {str(p)!r} is not valid YAML: {exc}") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, Mapping):
        raise ConfigError(f"config file {str(p)!r}: the top level must be a mapping of sections")
    return dict(loaded)


#: What ``fidelity: reference`` switches to, for every key the user did not set explicitly:
#: the authors' R scripts (in-sample plug-in effects with random forests, unscaled effects, the
#: Rtsne kernel on the squared-difference matrix, the first Pareto tree per K, the fixed 0.0043),
#: with the iteration count, landmarks, codebook and CV folds of the earlier, slower settings.
REFERENCE_PRESET: dict[str, Any] = {
    "effects": {"estimator": "reference", "learner": "random_forest"},
    "embed": {
        "scaling": "none",
        "kernel_power": 4,
        "n_iter": 2000,
        "n_landmarks": 5000,
        "grid_size": 20_000,
    },
    "profile": {"tree_choice": "first_pareto", "cv_folds": 10, "merge_leaves": False},
    "test": {"statistic": "interaction"},
    "calibration": {"mode": "fixed", "threshold": 0.0043, "replicates": "permutation"},
}


def config_from_dict(values: Mapping[str, Any]) -> Config:
    """Build and check a :class:`Config` from nested dicts.

    With ``fidelity: reference`` the keys of :data:`REFERENCE_PRESET` take the reference's values
    unless ``values`` sets them explicitly.

    Raises
    ------
    ConfigError
        For an unknown key, a wrong type, a value out of range or inconsistent values.
    """
    if values.get("fidelity") == "reference":
        values = _deep_merge(REFERENCE_PRESET, values)
    cfg = _build(Config, values, "")
    problems = _cross_checks(cfg)
    if problems:
        raise ConfigError("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))
    return cfg


def load_config(paths: Sequence[str | Path] = (), overrides: Sequence[str] = ()) -> Config:
    """Load configuration files in order, then apply ``--set`` overrides.

    The dataclass defaults (written out in ``conf/base.yaml``) apply to every key not set.

    Parameters
    ----------
    paths : sequence of path
        YAML files; later files override earlier ones key by key.
    overrides : sequence of str
        ``section.key=value`` strings applied last.

    Returns
    -------
    Config
    """
    merged: dict[str, Any] = {}
    for path in paths:
        merged = _deep_merge(merged, read_yaml(path))
    for text in overrides:
        merged = _deep_merge(merged, parse_override(text))
    return config_from_dict(merged)


def estimator_params(cfg: Config) -> dict[str, Any]:
    """The keyword arguments of :class:`mlearner_dist.core.estimator.MLearner` for ``cfg``.

    ``MLearner(**estimator_params(cfg))`` is the in-memory estimator with exactly the settings the
    pipeline's stages use; with ``Config()`` these are MLearner's own defaults (a test checks it).
    """
    import numpy as np

    p = cfg.profile
    return {
        "n_folds": cfg.effects.n_folds,
        "learner": cfg.effects.learner,
        "learner_params": dict(cfg.effects.learner_params),
        "estimator": cfg.effects.estimator,
        "row_budget": cfg.effects.row_budget,
        "propensity_clip": cfg.effects.propensity_clip,
        "auto_candidates": tuple(cfg.effects.auto_candidates),
        "max_density_ratio": cfg.effects.max_density_ratio,
        "mediator_density": cfg.effects.mediator_density,
        "constant_effect_models": cfg.effects.constant_effect_models,
        "design": cfg.design,
        "embed_effects": tuple(cfg.embed.effects),
        "scaling": cfg.embed.scaling,
        "exact_max_n": cfg.embed.exact_max_n,
        "n_landmarks": cfg.embed.n_landmarks,
        "perplexity": cfg.embed.perplexity,
        "n_iter": cfg.embed.n_iter,
        "kernel_power": cfg.embed.kernel_power,
        "grid_size": cfg.embed.grid_size,
        "n_jobs": cfg.embed.n_jobs,
        "k_values": tuple(range(cfg.cluster.k_min, cfg.cluster.k_max + 1)),
        "n_init": cfg.cluster.n_init,
        "max_iter": cfg.cluster.max_iter,
        "cluster_on": cfg.cluster.space,
        "criteria": tuple(p.criteria),
        "min_split_fractions": tuple(p.min_split_fractions),
        "complexity": tuple(
            float(c)
            for c in np.logspace(
                np.log10(p.complexity_min), np.log10(p.complexity_max), p.n_complexity
            )
        ),
        "cv_folds": p.cv_folds,
        "tree_choice": p.tree_choice,
        "max_rows": p.max_rows,
        "merge_leaves": p.merge_leaves,
        "merge_level": p.merge_level,
        "test_method": cfg.test.method,
        "test_statistic": cfg.test.statistic,
        "test_covariance": cfg.test.covariance,
        "overlap_trim": cfg.test.overlap_trim,
        "calibration": cfg.calibration.mode,
        "alpha": cfg.calibration.alpha,
        "n_replicates": cfg.calibration.n_replicates,
        "threshold": cfg.calibration.threshold,
        "null_max_n": cfg.calibration.null_max_n,
        "permutation_max_n": cfg.calibration.permutation_max_n,
        "null_replicates": cfg.calibration.replicates,
        "multiplier": cfg.calibration.multiplier,
        "familywise": cfg.calibration.familywise,
        "honest": cfg.calibration.honest,
        "n_bootstrap": cfg.subgroups.n_bootstrap,
        "level": cfg.subgroups.level,
        "honest_subgroups": cfg.subgroups.honest,
        "min_subgroup": cfg.validation.min_subgroup,
        "sensitivity": cfg.sensitivity.enabled,
        "sensitivity_bootstrap": cfg.sensitivity.n_bootstrap,
        "sensitivity_max_rows": cfg.sensitivity.max_rows,
        "stability_seeds": cfg.stability.n_seeds,
        "stability_max_n": cfg.stability.max_n,
        "random_state": cfg.random_state,
    }


def describe_keys() -> list[tuple[str, str, str]]:
    """Every configuration key with its default and allowed values, for the docs.

    Returns
    -------
    list of (key, default, allowed)
    """
    rows: list[tuple[str, str, str]] = []

    def walk(cls: type, prefix: str) -> None:
        hints = get_type_hints(cls)
        default_obj = cls()
        for f in dataclasses.fields(cls):
            key = f"{prefix}.{f.name}" if prefix else f.name
            tp = hints[f.name]
            if dataclasses.is_dataclass(tp):
                walk(tp, key)
                continue
            default = _to_plain(getattr(default_obj, f.name))
            if get_origin(tp) is Literal:
                allowed = ", ".join(str(a) for a in get_args(tp))
            elif key in _RULES:
                allowed = _RULES[key][1]
            elif get_origin(tp) is tuple:
                allowed = f"list of {get_args(tp)[0].__name__}"
            elif get_origin(tp) is dict:
                allowed = "mapping"
            else:
                allowed = getattr(tp, "__name__", str(tp))
            rows.append((key, json.dumps(default), allowed))

    walk(Config, "")
    return rows


def keys_markdown() -> str:
    """The configuration reference as Markdown (``make docs`` writes docs/configuration.md)."""
    lines = [
        "# Configuration reference",
        "",
        "Generated from the code by `make docs`; a test keeps it in step. Set any key in a YAML",
        "file passed with `--config`, or on the command line with `--set section.key=value`.",
        "",
        "| key | default | allowed |",
        "|---|---|---|",
    ]
    for key, default, allowed in describe_keys():
        lines.append(f"| `{key}` | `{default}` | {allowed} |")
    return "\n".join(lines) + "\n"
