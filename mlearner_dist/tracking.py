"""Experiment tracking: the :class:`Tracker` protocol, a no-op default, and framework-free helpers.

The pipeline talks to a :class:`Tracker`; :class:`NullTracker` is used when tracking is off and
:class:`mlearner_dist.backends.mlflow_tracking.MlflowTracker` when it is on. Everything here is
plain Python so it can be tested without MLflow: flattening a nested configuration into parameters,
chunking batches to MLflow's limits, and turning a finished ``result.json`` into the metrics and
tags a run records.

MLflow limits (3.x): at most 100 params, 1000 metrics and 100 tags per batch; a param value holds
at most 6000 characters; metric names may contain alphanumerics, ``_ - . / `` and spaces.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

import pandas as pd

from mlearner_dist.exceptions import MLearnerError

logger = logging.getLogger(__name__)

#: Largest number of params MLflow accepts in one batch.
MAX_PARAMS_PER_BATCH = 100
#: Largest number of metrics MLflow accepts in one batch.
MAX_METRICS_PER_BATCH = 1000
#: Largest number of tags MLflow accepts in one batch.
MAX_TAGS_PER_BATCH = 100
#: Longest param value MLflow stores.
MAX_PARAM_VALUE_LENGTH = 6000

TAG_CHOSEN_K = "mlearner.chosen_k"
TAG_DECLARED = "mlearner.declared"
TAG_P_LEAF = "mlearner.p_leaf"
TAG_THRESHOLD = "mlearner.threshold"
TAG_CALIBRATION_MODE = "mlearner.calibration_mode"
TAG_STAGE = "mlearner.stage"
TAG_OUTPUT_DIR = "mlearner.output_dir"
TAG_DATA_SOURCE = "mlearner.data_source"
TAG_RESULT_RUN_ID = "mlearner.run_id"
TAG_DATA_HASH = "mlearner.data_hash"
TAG_CODE_COMMIT = "mlearner.code_commit"

_EFFECTS = ("indirect", "direct", "total", "prop_mediated")
_T = TypeVar("_T")


@runtime_checkable
class Tracker(Protocol):
    """What the pipeline needs from an experiment tracker.

    A run is opened with :meth:`start_run` and closed with :meth:`end_run`; nested runs (per
    stage, per K, per calibration batch) are opened with :meth:`child`, a context manager that
    makes the child the current run while it is open. Every ``log_*`` call goes to the current
    run.
    """

    @property
    def run_id(self) -> str | None:
        """The id of the current run (the innermost open child), or None when no run is open."""
        ...

    def start_run(self, name: str, *, tags: Mapping[str, Any] | None = None) -> str:
        """Open the top-level run ``name`` with ``tags`` and return its id."""
        ...

    def end_run(self, status: str = "FINISHED") -> None:
        """Close the top-level run with ``status`` (``FINISHED``, ``FAILED`` or ``KILLED``)."""
        ...

    def child(
        self, name: str, tags: Mapping[str, Any] | None = None
    ) -> contextlib.AbstractContextManager[str]:
        """A context manager opening a nested run under the current one; yields its id."""
        ...

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log parameters; nested mappings are flattened with :func:`flatten_dict`."""
        ...

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Log numeric metrics (non-finite values are skipped)."""
        ...

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set tags on the current run (values become strings)."""
        ...

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Upload the file (or folder) at ``path`` under ``artifact_path``."""
        ...

    def log_dict(self, obj: Any, file_name: str) -> None:
        """Store ``obj`` as a JSON (or YAML, by extension) artifact ``file_name``."""
        ...

    def log_table(self, df: pd.DataFrame, file_name: str) -> None:
        """Store a table as artifact ``file_name`` (``.csv``, ``.json`` or ``.parquet``)."""
        ...

    def log_input(self, source: str, n_rows: int, schema_hash: str) -> None:
        """Record the input data set: where it came from, its size and a hash of its schema."""
        ...

    def log_subgroup_model(self, tree_model: Any, input_example: pd.DataFrame) -> str | None:
        """Log the subgroup scoring model; return its model URI (None when not tracking)."""
        ...


class NullTracker:
    """A tracker that records nothing (``tracking.enabled: false``).

    Every method accepts the same arguments as :class:`Tracker` and does nothing; ``run_id`` is
    always None, :meth:`start_run` returns an empty string, and :meth:`child` yields one.
    """

    @property
    def run_id(self) -> str | None:
        """Always None: no run is ever open."""
        return None

    def start_run(self, name: str, *, tags: Mapping[str, Any] | None = None) -> str:
        """Do nothing and return ``""``."""
        return ""

    def end_run(self, status: str = "FINISHED") -> None:
        """Do nothing."""

    @contextlib.contextmanager
    def child(self, name: str, tags: Mapping[str, Any] | None = None) -> Iterator[str]:
        """Yield ``""`` and do nothing."""
        yield ""

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Do nothing."""

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Do nothing."""

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Do nothing."""

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Do nothing."""

    def log_dict(self, obj: Any, file_name: str) -> None:
        """Do nothing."""

    def log_table(self, df: pd.DataFrame, file_name: str) -> None:
        """Do nothing."""

    def log_input(self, source: str, n_rows: int, schema_hash: str) -> None:
        """Do nothing."""

    def log_subgroup_model(self, tree_model: Any, input_example: pd.DataFrame) -> str | None:
        """Do nothing and return None."""
        return None


def flatten_dict(d: Mapping[str, Any], sep: str = ".") -> dict[str, str | int | float | bool]:
    """Flatten a nested mapping into one level, as MLflow params want it.

    Parameters
    ----------
    d : mapping
        Nested configuration, e.g. ``{"embed": {"perplexity": 30}}``.
    sep : str, default "."
        Joins the keys of nested levels: ``{"embed": {"perplexity": 30}}`` becomes
        ``{"embed.perplexity": 30}``.

    Returns
    -------
    dict
        One entry per leaf. Scalars (str, int, float, bool) are kept; lists and tuples become JSON
        strings; None becomes ``""``; other objects become ``str(obj)``. An empty nested mapping
        becomes ``"{}"`` so that its key is still recorded.

    Raises
    ------
    MLearnerError
        If ``d`` is not a mapping, ``sep`` is empty, or two paths flatten to the same key.
    """
    if not isinstance(d, Mapping):
        raise MLearnerError(f"flatten_dict: d must be a mapping, got {type(d).__name__}")
    if not sep:
        raise MLearnerError("flatten_dict: sep must be a non-empty string such as '.'")
    out: dict[str, str | int | float | bool] = {}

    def visit(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            if not value and prefix:
                put(prefix, "{}")
            for k, v in value.items():
                visit(f"{prefix}{sep}{k}" if prefix else str(k), v)
        elif isinstance(value, (list, tuple)):
            put(prefix, json.dumps(list(value), default=str))
        elif value is None:
            put(prefix, "")
        elif isinstance(value, (str, bool, int, float)):
            put(prefix, value)
        else:
            put(prefix, str(value))

    def put(key: str, value: str | int | float | bool) -> None:
        if key in out:
            raise MLearnerError(
                f"flatten_dict: key {key!r} occurs twice after flattening with sep={sep!r}; "
                "use another separator"
            )
        out[key] = value

    visit("", d)
    return out


def chunked(items: Sequence[_T], size: int) -> Iterator[list[_T]]:
    """Yield consecutive slices of ``items`` of at most ``size`` elements (MLflow batch limits).

    Raises
    ------
    MLearnerError
        If ``size`` is not a positive integer.
    """
    if not isinstance(size, int) or size < 1:
        raise MLearnerError(f"chunked: size must be a positive integer, got {size!r}")
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def param_value(value: Any, max_length: int = MAX_PARAM_VALUE_LENGTH) -> str:
    """The string MLflow stores for a param, cut to ``max_length`` characters.

    A value that had to be cut ends with ``"...[truncated N chars]"`` so the record says so.
    """
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool):
        text = str(value)
    elif isinstance(value, (int, float)):
        text = repr(value)
    else:
        text = json.dumps(value, default=str)
    if len(text) <= max_length:
        return text
    marker = f"...[truncated {len(text)} chars]"
    return text[: max_length - len(marker)] + marker


_METRIC_NAME = re.compile(r"[^0-9A-Za-z_\-./ ]")


def metric_key(name: str) -> str:
    """A metric or param name that MLflow accepts: other characters become ``_``."""
    return _METRIC_NAME.sub("_", str(name))


def schema_hash(df: pd.DataFrame) -> str:
    """A short, stable hash of a table's column names and dtypes (16 hex digits)."""
    import hashlib

    text = json.dumps([[str(c), str(t)] for c, t in df.dtypes.items()])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _finite(x: Any) -> float | None:
    if x is None or isinstance(x, bool):
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def result_metrics(result: Mapping[str, Any]) -> dict[str, float]:
    """The metrics a finished ``result.json`` records in its MLflow run.

    Parameters
    ----------
    result : mapping
        The contents of ``result.json`` (see ``docs/architecture.md``).

    Returns
    -------
    dict of str to float
        ``<effect>.estimate|ci_low|ci_high`` for each average effect; ``p_leaf``, ``p_leaf_y``,
        ``p_leaf_m``, ``threshold``, ``mc_pvalue``, ``declared`` (1.0 or 0.0), ``n_input``,
        ``n_used``, ``n_removed``, ``n_subgroups``; ``p_y.k<K>.tree<T>`` and
        ``p_m.k<K>.tree<T>`` for every tested configuration; ``wcss.k<K>`` per K;
        ``seconds.<stage>`` per stage; ``targets.<target>.p_leaf|threshold|declared`` for each
        analysed target (``indirect``, ``total``). Missing, null and non-finite values are left
        out.

    Raises
    ------
    MLearnerError
        If ``result`` is not a mapping.
    """
    if not isinstance(result, Mapping):
        raise MLearnerError(f"result must be the result.json mapping, got {type(result).__name__}")
    out: dict[str, float] = {}

    def put(name: str, value: Any) -> None:
        v = _finite(value)
        if v is not None:
            out[metric_key(name)] = v

    for eff, ci in (result.get("average_effects") or {}).items():
        if isinstance(ci, Mapping):
            for part in ("estimate", "ci_low", "ci_high"):
                put(f"{eff}.{part}", ci.get(part))
    for key in ("p_leaf", "p_leaf_y", "p_leaf_m", "threshold"):
        put(key, result.get(key))
    calib = result.get("calibration") or {}
    put("mc_pvalue", calib.get("mc_pvalue"))
    if "declared" in result:
        out["declared"] = 1.0 if result["declared"] else 0.0
    account = result.get("row_account") or {}
    put("n_input", account.get("n_input"))
    put("n_used", account.get("n_used"))
    removed = account.get("removed") or {}
    if isinstance(removed, Mapping):
        put("n_removed", sum(int(v) for v in removed.values()))
    if "subgroups" in result:
        out["n_subgroups"] = float(len(result["subgroups"] or []))
    for conf in result.get("configurations") or []:
        k, tree = conf.get("k"), conf.get("tree_id")
        put(f"p_y.k{k}.tree{tree}", conf.get("p_y"))
        put(f"p_m.k{k}.tree{tree}", conf.get("p_m"))
    for k, wcss in ((result.get("clustering") or {}).get("wcss") or {}).items():
        put(f"wcss.k{k}", wcss)
    for stage, seconds in (result.get("timings") or {}).items():
        put(f"seconds.{stage}", seconds)
    for name, rec in (result.get("targets") or {}).items():
        if isinstance(rec, Mapping) and "p_leaf" in rec:
            put(f"targets.{name}.p_leaf", rec.get("p_leaf"))
            put(f"targets.{name}.threshold", rec.get("threshold"))
            out[metric_key(f"targets.{name}.declared")] = 1.0 if rec.get("declared") else 0.0
    return out


def result_tags(result: Mapping[str, Any], output_dir: str | Path | None = None) -> dict[str, str]:
    """The ``mlearner.*`` tags a finished ``result.json`` sets on its MLflow run.

    Returns
    -------
    dict of str to str
        ``mlearner.chosen_k``, ``mlearner.declared`` (``"true"``/``"false"``), ``mlearner.p_leaf``,
        ``mlearner.threshold``, ``mlearner.calibration_mode``, ``mlearner.run_id``,
        ``mlearner.data_source``, ``mlearner.data_hash``, ``mlearner.code_commit``,
        ``mlearner.output_dir`` and ``mlearner.targets.<target>.declared`` when known.
    """
    if not isinstance(result, Mapping):
        raise MLearnerError(f"result must be the result.json mapping, got {type(result).__name__}")
    tags: dict[str, str] = {}
    chosen = result.get("chosen") or {}
    if chosen.get("k") is not None:
        tags[TAG_CHOSEN_K] = str(chosen["k"])
    if "declared" in result:
        tags[TAG_DECLARED] = "true" if result["declared"] else "false"
    if result.get("p_leaf") is not None:
        tags[TAG_P_LEAF] = f"{float(result['p_leaf']):.6g}"
    if result.get("threshold") is not None:
        tags[TAG_THRESHOLD] = f"{float(result['threshold']):.6g}"
    mode = (result.get("calibration") or {}).get("mode")
    if mode:
        tags[TAG_CALIBRATION_MODE] = str(mode)
    for name, rec in (result.get("targets") or {}).items():
        if isinstance(rec, Mapping) and "declared" in rec:
            tags[f"mlearner.targets.{name}.declared"] = "true" if rec["declared"] else "false"
    if result.get("run_id"):
        tags[TAG_RESULT_RUN_ID] = str(result["run_id"])
    source = ((result.get("config") or {}).get("data") or {}).get("source")
    if source:
        tags[TAG_DATA_SOURCE] = str(source)
    record = result.get("record") or {}
    if (record.get("data_hash") or {}).get("sha256"):
        tags[TAG_DATA_HASH] = str(record["data_hash"]["sha256"])
    if record.get("code_commit"):
        tags[TAG_CODE_COMMIT] = str(record["code_commit"])
    if output_dir is not None:
        tags[TAG_OUTPUT_DIR] = str(Path(output_dir).resolve())
    return tags


def subgroup_frame(subgroups: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The subgroup list of ``result.json`` as a flat table, one row per leaf.

    Columns: ``leaf``, ``rule``, ``n``, then ``<effect>``, ``<effect>_ci_low``,
    ``<effect>_ci_high`` for each adjusted effect and ``unadjusted_<effect>...`` beside them.
    Effects that are null (no mediator) are NaN.
    """
    rows = []
    for sg in subgroups:
        row: dict[str, Any] = {"leaf": sg.get("leaf"), "rule": sg.get("rule"), "n": sg.get("n")}
        for prefix, src in (("", sg), ("unadjusted_", sg.get("unadjusted") or {})):
            for eff in _EFFECTS:
                ci = src.get(eff) or {}
                row[f"{prefix}{eff}"] = _finite(ci.get("estimate"))
                row[f"{prefix}{eff}_ci_low"] = _finite(ci.get("ci_low"))
                row[f"{prefix}{eff}_ci_high"] = _finite(ci.get("ci_high"))
        rows.append(row)
    return pd.DataFrame(rows)


__all__ = [
    "MAX_METRICS_PER_BATCH",
    "MAX_PARAMS_PER_BATCH",
    "MAX_PARAM_VALUE_LENGTH",
    "MAX_TAGS_PER_BATCH",
    "TAG_CALIBRATION_MODE",
    "TAG_CHOSEN_K",
    "TAG_DATA_SOURCE",
    "TAG_DECLARED",
    "TAG_OUTPUT_DIR",
    "TAG_P_LEAF",
    "TAG_RESULT_RUN_ID",
    "TAG_STAGE",
    "TAG_THRESHOLD",
    "NullTracker",
    "Tracker",
    "chunked",
    "flatten_dict",
    "metric_key",
    "param_value",
    "result_metrics",
    "result_tags",
    "schema_hash",
    "subgroup_frame",
]
