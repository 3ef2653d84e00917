"""MLflow tracking for mlearner-dist: the tracker, the run of an analysis, and the scoring model.

- :class:`MlflowTracker` implements :class:`mlearner_dist.tracking.Tracker` with
  :class:`mlflow.MlflowClient` (explicit run ids, no global active run), batching params, metrics
  and tags to MLflow's limits. The embedded default store is ``sqlite:///<output>/mlflow.db`` with
  artifacts in ``<output>/mlartifacts`` (MLflow 3 refuses a ``./mlruns`` file store unless
  ``MLFLOW_ALLOW_FILE_STORE=true``).
- :func:`check_tracking_reachable` fails fast, before expensive work, with a message saying which
  URI, what failed and how to fix it (or ``tracking.enabled: false``).
- :func:`log_result` / :func:`log_analysis` record a finished ``result.json``; :func:`list_runs`
  lists analyses for ``mlearner runs``.
- :class:`SubgroupPyfunc` is the MLflow pyfunc wrapper of
  :class:`mlearner_dist.scoring.SubgroupModel`
  (logged as ``subgroup_model``), applied by :func:`score_with_model_uri` (pandas, parquet in and
  out) and :func:`spark_score` (``mlflow.pyfunc.spark_udf``).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import logging
import math
import os
import sqlite3
import tempfile
import threading
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
import yaml
from mlflow.entities import Dataset, DatasetInput, Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature

from mlearner_dist.exceptions import InputValidationError, MLearnerError, TrackingError
from mlearner_dist.scoring import RULE_COLUMN, SUBGROUP_COLUMN, SubgroupModel, tree_covariates
from mlearner_dist.tracking import (
    MAX_METRICS_PER_BATCH,
    MAX_PARAMS_PER_BATCH,
    MAX_TAGS_PER_BATCH,
    TAG_CHOSEN_K,
    TAG_DATA_SOURCE,
    TAG_DECLARED,
    TAG_OUTPUT_DIR,
    TAG_STAGE,
    chunked,
    flatten_dict,
    metric_key,
    param_value,
    result_metrics,
    result_tags,
    subgroup_frame,
)

logger = logging.getLogger(__name__)

#: Artifact path (and ``name=``) of the logged subgroup scoring model.
MODEL_NAME = "subgroup_model"
#: Seconds :func:`check_tracking_reachable` waits for a server before giving up.
DEFAULT_CHECK_TIMEOUT = 5.0
_PARENT_TAG = "mlflow.parentRunId"
_MAX_TAG_VALUE_LENGTH = 8000
_STATUSES = ("FINISHED", "FAILED", "KILLED")
_RUN_COLUMNS = [
    "run_id",
    "run_name",
    "start_time",
    "data_source",
    "n_used",
    "chosen_k",
    "declared",
    "p_leaf",
    "threshold",
    "status",
]
_FIX = (
    "fix the URI (tracking.uri / --tracking-uri) or turn tracking off with tracking.enabled: false"
)


# -- helpers --------------------------------------------------------------------------------------


def _sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (None for other schemes or in-memory)."""
    if not uri.startswith("sqlite:"):
        return None
    rest = uri[len("sqlite:") :]
    if rest.startswith("///"):
        path = rest[3:]
        if path in ("", ":memory:"):
            return None
        # sqlite:///rel/path is relative to the working directory, sqlite:////abs/path absolute
        return Path(path)
    return None


def default_artifact_location(tracking_uri: str) -> str | None:
    """Where a new experiment of ``tracking_uri`` keeps its artifacts.

    For a SQLite store, the folder ``mlartifacts`` next to the database file (as a ``file://``
    URI), so an embedded run keeps everything under its output folder; None (the server's
    default) otherwise.
    """
    db = _sqlite_path(tracking_uri)
    if db is None:
        return None
    return (db.resolve().parent / "mlartifacts").as_uri()


@contextlib.contextmanager
def _use_tracking_uri(uri: str | None) -> Iterator[None]:
    """Point MLflow's fluent API at ``uri`` for the duration of the block, then restore it."""
    if not uri:
        yield
        return
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


def _plain(obj: Any) -> Any:
    """``obj`` as JSON-safe builtins (numpy scalars and arrays converted)."""
    return json.loads(json.dumps(obj, default=_json_default))


def _now_ms() -> int:
    return int(time.time() * 1000)


# -- the tracker ----------------------------------------------------------------------------------


class MlflowTracker:
    """A :class:`~mlearner_dist.tracking.Tracker` writing to an MLflow tracking store.

    Parameters
    ----------
    tracking_uri : str
        ``sqlite:///<path>/mlflow.db`` (embedded default), ``http(s)://host:port`` (a tracking
        server), ``databricks``, or any URI MLflow accepts.
    experiment : str
        Experiment name; created when missing (for SQLite with artifacts next to the database).

    Notes
    -----
    Runs are addressed by id through :class:`mlflow.MlflowClient`, so the tracker never touches
    MLflow's global "active run" except briefly in :meth:`log_subgroup_model`, whose MLflow API
    needs it. Nested runs carry the ``mlflow.parentRunId`` tag, which MLflow's UI uses to nest them.
    """

    def __init__(self, tracking_uri: str, experiment: str) -> None:
        if not isinstance(tracking_uri, str) or not tracking_uri.strip():
            raise TrackingError(
                f"tracking_uri must be a non-empty string, got {tracking_uri!r}: " + _FIX
            )
        if not isinstance(experiment, str) or not experiment.strip():
            raise TrackingError(f"experiment must be a non-empty name, got {experiment!r}")
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        db = _sqlite_path(tracking_uri)
        if db is not None:
            db.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._client = mlflow.MlflowClient(tracking_uri=tracking_uri)
            self.experiment_id = self._get_or_create_experiment()
        except MlflowException as exc:
            raise TrackingError(
                f"MLflow tracking store {tracking_uri!r} refused experiment {experiment!r}: "
                f"{exc}. {_FIX}"
            ) from exc
        self._stack: list[str] = []

    def _get_or_create_experiment(self) -> str:
        exp = self._client.get_experiment_by_name(self.experiment)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                raise TrackingError(
                    f"experiment {self.experiment!r} at {self.tracking_uri} is deleted: restore it "
                    "(mlflow experiments restore) or choose another tracking.experiment"
                )
            return str(exp.experiment_id)
        try:
            return str(
                self._client.create_experiment(
                    self.experiment,
                    artifact_location=default_artifact_location(self.tracking_uri),
                )
            )
        except MlflowException:
            # another process created it between the lookup and the creation
            exp = self._client.get_experiment_by_name(self.experiment)
            if exp is None:
                raise
            return str(exp.experiment_id)

    @property
    def client(self) -> mlflow.MlflowClient:
        """The underlying :class:`mlflow.MlflowClient`."""
        return self._client

    @property
    def run_id(self) -> str | None:
        """Id of the current run (innermost open child), or None when no run is open."""
        return self._stack[-1] if self._stack else None

    def _require_run(self) -> str:
        if not self._stack:
            raise TrackingError("no MLflow run is open: call start_run(name) first")
        return self._stack[-1]

    def start_run(self, name: str, *, tags: Mapping[str, Any] | None = None) -> str:
        """Open the top-level run ``name`` and return its id.

        Raises
        ------
        TrackingError
            If a run is already open on this tracker, or the store refuses the run.
        """
        if self._stack:
            raise TrackingError(
                f"run {self._stack[0]} is still open on this tracker: end_run() it first"
            )
        str_tags = {k: param_value(v, _MAX_TAG_VALUE_LENGTH) for k, v in (tags or {}).items()}
        try:
            run = self._client.create_run(self.experiment_id, run_name=str(name), tags=str_tags)
        except MlflowException as exc:
            raise TrackingError(
                f"could not create run {name!r} at {self.tracking_uri}: {exc}. {_FIX}"
            ) from exc
        self._stack.append(run.info.run_id)
        logger.info("MLflow run %s (%s) started at %s", run.info.run_id, name, self.tracking_uri)
        return run.info.run_id

    def end_run(self, status: str = "FINISHED") -> None:
        """Close the top-level run (and any child still open) with ``status``.

        Parameters
        ----------
        status : {"FINISHED", "FAILED", "KILLED"}
        """
        if status not in _STATUSES:
            raise TrackingError(f"status must be one of {_STATUSES}, got {status!r}")
        while self._stack:
            run_id = self._stack.pop()
            self._client.set_terminated(run_id, status=status)
        logger.info("MLflow run ended: %s", status)

    @contextlib.contextmanager
    def child(self, name: str, tags: Mapping[str, Any] | None = None) -> Iterator[str]:
        """Open a nested run under the current run for the duration of the block.

        Yields the child's run id; inside the block every ``log_*`` call goes to the child. The
        child ends ``FINISHED``, or ``FAILED`` if the block raises (the error propagates).
        """
        parent = self._require_run()
        str_tags = {k: param_value(v, _MAX_TAG_VALUE_LENGTH) for k, v in (tags or {}).items()}
        str_tags[_PARENT_TAG] = parent
        run = self._client.create_run(self.experiment_id, run_name=str(name), tags=str_tags)
        child_id = run.info.run_id
        self._stack.append(child_id)
        status = "FAILED"
        try:
            yield child_id
            status = "FINISHED"
        finally:
            if self._stack and self._stack[-1] == child_id:
                self._stack.pop()
            self._client.set_terminated(child_id, status=status)

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log (flattened) params in batches of at most 100, values cut to 6000 characters."""
        flat = flatten_dict(params)
        run_id = self._require_run()
        items = [Param(metric_key(k), param_value(v)) for k, v in flat.items()]
        for batch in chunked(items, MAX_PARAMS_PER_BATCH):
            self._client.log_batch(run_id, params=batch)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Log metrics in batches of at most 1000; None and non-finite values are skipped."""
        run_id = self._require_run()
        ts = _now_ms()
        items = []
        for key, value in metrics.items():
            if value is None:
                continue
            v = float(value)
            if math.isfinite(v):
                items.append(Metric(metric_key(key), v, ts, step or 0))
        for batch in chunked(items, MAX_METRICS_PER_BATCH):
            self._client.log_batch(run_id, metrics=batch)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set tags (values as strings, at most 8000 characters) in batches of at most 100."""
        run_id = self._require_run()
        items = [RunTag(str(k), param_value(v, _MAX_TAG_VALUE_LENGTH)) for k, v in tags.items()]
        for batch in chunked(items, MAX_TAGS_PER_BATCH):
            self._client.log_batch(run_id, tags=batch)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Upload a file or a folder's contents under ``artifact_path``."""
        run_id = self._require_run()
        p = Path(path)
        if not p.exists():
            raise TrackingError(f"log_artifact: {str(p)!r} does not exist")
        if p.is_dir():
            self._client.log_artifacts(run_id, str(p), artifact_path)
        else:
            self._client.log_artifact(run_id, str(p), artifact_path)

    def log_dict(self, obj: Any, file_name: str) -> None:
        """Store ``obj`` as ``file_name``: YAML for ``.yaml``/``.yml``, JSON otherwise."""
        run_id = self._require_run()
        plain = _plain(obj)
        if file_name.endswith((".yaml", ".yml")):
            text = yaml.safe_dump(plain, sort_keys=False)
        else:
            text = json.dumps(plain, indent=2)
        self._client.log_text(run_id, text, file_name)

    def log_table(self, df: pd.DataFrame, file_name: str) -> None:
        """Store ``df`` as ``file_name`` (``.csv``, ``.json`` records, or ``.parquet``)."""
        if not isinstance(df, pd.DataFrame):
            raise TrackingError(
                f"log_table: df must be a pandas DataFrame, got {type(df).__name__}"
            )
        run_id = self._require_run()
        name = Path(file_name)
        with tempfile.TemporaryDirectory(prefix="mlearner-table-") as tmp:
            local = Path(tmp) / name.name
            if name.suffix == ".csv":
                df.to_csv(local, index=False)
            elif name.suffix == ".json":
                local.write_text(df.to_json(orient="records", indent=2), encoding="utf-8")
            elif name.suffix == ".parquet":
                df.to_parquet(local, index=False)
            else:
                raise TrackingError(
                    f"log_table: file_name {file_name!r} must end in .csv, .json or .parquet"
                )
            parent = str(name.parent) if str(name.parent) not in ("", ".") else None
            self._client.log_artifact(run_id, str(local), parent)

    def log_input(self, source: str, n_rows: int, schema_hash: str) -> None:
        """Record the input data set (MLflow dataset input) and the tag ``mlearner.data_source``."""
        run_id = self._require_run()
        src = str(source)
        parsed = urlparse(src)
        is_path = parsed.scheme in ("", "file") and ("/" in src or Path(src).suffix != "")
        source_type = "local" if is_path else (parsed.scheme or "table")
        digest = hashlib.sha256(f"{src}|{n_rows}|{schema_hash}".encode()).hexdigest()[:16]
        dataset = Dataset(
            name=(Path(parsed.path).name if is_path else src) or "input",
            digest=digest,
            source_type=source_type,
            source=json.dumps({"uri": src}),
            schema=json.dumps({"schema_hash": schema_hash}),
            profile=json.dumps({"num_rows": int(n_rows)}),
        )
        self._client.log_inputs(run_id, datasets=[DatasetInput(dataset=dataset, tags=[])])
        self.set_tags({TAG_DATA_SOURCE: src})

    def log_subgroup_model(self, tree_model: Any, input_example: pd.DataFrame) -> str:
        """Log the subgroup scoring model as an MLflow pyfunc named ``subgroup_model``.

        Parameters
        ----------
        tree_model : SubgroupModel or profile tree
            A fitted profile tree (``leaf_of``, ``rules``, covariate names) or a
            :class:`~mlearner_dist.scoring.SubgroupModel` wrapping one. A tree that does not
            name its covariates reads the columns of ``input_example``.
        input_example : pandas.DataFrame
            A few rows with the covariates (the first 5 are stored with the model and used for
            its signature).

        Returns
        -------
        str
            ``runs:/<run id>/subgroup_model``, loadable with ``mlflow.pyfunc.load_model``.
        """
        run_id = self._require_run()
        if not isinstance(input_example, pd.DataFrame) or input_example.empty:
            raise TrackingError("input_example must be a non-empty DataFrame of covariates")
        if isinstance(tree_model, SubgroupModel):
            model = tree_model
        else:
            try:
                covariates: list[str] | None = list(tree_covariates(tree_model))
            except MLearnerError:
                # a tree that does not name its inputs reads the example's columns
                covariates = [str(c) for c in input_example.columns]
            model = SubgroupModel(tree_model, covariates=covariates)
        example = input_example[list(model.covariates)].head(5).reset_index(drop=True)
        with warnings.catch_warnings():
            # the output's integer subgroup column never holds missing values
            warnings.filterwarnings("ignore", message=".*Inferred schema contains integer")
            signature = infer_signature(example, model.predict(example))
        with _use_tracking_uri(self.tracking_uri):
            nested = mlflow.active_run() is not None
            with mlflow.start_run(run_id=run_id, nested=nested):
                mlflow.pyfunc.log_model(
                    name=MODEL_NAME,
                    python_model=SubgroupPyfunc(model),
                    signature=signature,
                    input_example=example,
                    pip_requirements=_pip_requirements(),
                )
        # leaving the fluent block marked the run FINISHED; it is still ours to end
        self._client.update_run(run_id, status="RUNNING")
        uri = f"runs:/{run_id}/{MODEL_NAME}"
        self.set_tags({"mlearner.model_uri": uri})
        logger.info("logged subgroup model %s", uri)
        return uri


def _pip_requirements() -> list[str]:
    reqs = []
    for dist in ("mlflow", "pandas", "numpy", "scikit-learn", "cloudpickle", "mlearner-dist"):
        try:
            reqs.append(f"{dist}=={importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return reqs


# -- the pyfunc scoring model ---------------------------------------------------------------------


class SubgroupPyfunc(mlflow.pyfunc.PythonModel):
    """MLflow pyfunc wrapper of a :class:`~mlearner_dist.scoring.SubgroupModel`.

    ``predict`` takes a DataFrame with the covariates and returns a DataFrame with ``subgroup``
    (int64) and ``rule`` (str), one row per input row.
    """

    def __init__(self, model: SubgroupModel) -> None:
        self.model = model

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """Subgroup and rule of every row of ``model_input``."""
        if not isinstance(model_input, pd.DataFrame):
            model_input = pd.DataFrame(model_input)
        return self.model.predict(model_input).reset_index(drop=True)


def _load_model(model_uri: str, tracking_uri: str | None) -> Any:
    try:
        with _use_tracking_uri(tracking_uri):
            return mlflow.pyfunc.load_model(model_uri)
    except (MlflowException, OSError) as exc:
        raise TrackingError(
            f"could not load model {model_uri!r}"
            + (f" from {tracking_uri}" if tracking_uri else "")
            + f": {exc}. Pass the run's model URI (runs:/<run id>/{MODEL_NAME}) and the tracking "
            "URI of its store (--tracking-uri, e.g. sqlite:///<output>/mlflow.db)"
        ) from exc


def score_with_model_uri(
    model_uri: str,
    input_path: str | Path,
    output_path: str | Path,
    *,
    tracking_uri: str | None = None,
) -> int:
    """Score a parquet table with a logged subgroup model (``mlearner score``).

    Parameters
    ----------
    model_uri : str
        E.g. ``runs:/<run id>/subgroup_model`` or ``models:/<id>``.
    input_path : str or Path
        Parquet file or folder of units with the model's covariates.
    output_path : str or Path
        Parquet file written: the input columns plus ``subgroup`` and ``rule``.
    tracking_uri : str, optional
        Tracking store that resolves ``runs:/`` URIs (default: MLflow's current one).

    Returns
    -------
    int
        Number of units scored.

    Raises
    ------
    InputValidationError
        If the input is missing or lacks covariate columns.
    TrackingError
        If the model cannot be loaded.
    """
    src = Path(input_path)
    if not src.exists():
        raise InputValidationError(
            [f"input {str(src)!r} does not exist: pass a parquet file or folder (--input)"]
        )
    model = _load_model(model_uri, tracking_uri)
    df = pd.read_parquet(src)
    needed = model.metadata.get_input_schema()
    if needed is not None:
        missing = [c for c in needed.input_names() if c not in df.columns]
        if missing:
            raise InputValidationError(
                [
                    f"column {c!r} (covariate of the model) is missing from {str(src)!r}"
                    for c in missing
                ]
            )
    try:
        scored = model.predict(df)
    except MlflowException as exc:
        raise InputValidationError(
            [f"the table {str(src)!r} does not match the model's input schema: {exc}"]
        ) from exc
    out = df.drop(columns=[SUBGROUP_COLUMN, RULE_COLUMN], errors="ignore").copy()
    out[SUBGROUP_COLUMN] = scored[SUBGROUP_COLUMN].to_numpy()
    out[RULE_COLUMN] = scored[RULE_COLUMN].to_numpy()
    dst = Path(output_path)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp")
    out.to_parquet(tmp, index=False)
    tmp.replace(dst)
    logger.info("scored %d units with %s into %s", len(out), model_uri, dst)
    return len(out)


def spark_score(spark: Any, model_uri: str, sdf: Any, *, tracking_uri: str | None = None) -> Any:
    """Score a Spark DataFrame with a logged subgroup model (``mlflow.pyfunc.spark_udf``).

    Parameters
    ----------
    spark : pyspark.sql.SparkSession
    model_uri : str
        E.g. ``runs:/<run id>/subgroup_model``.
    sdf : pyspark.sql.DataFrame
        Units with (at least) the model's covariates.
    tracking_uri : str, optional
        Tracking store that resolves ``runs:/`` URIs.

    Returns
    -------
    pyspark.sql.DataFrame
        ``sdf``'s columns plus ``subgroup`` (long) and ``rule`` (string). Lazy: nothing runs until
        an action.
    """
    from pyspark.sql import functions as F

    with _use_tracking_uri(tracking_uri):
        try:
            info = mlflow.models.get_model_info(model_uri)
            udf = mlflow.pyfunc.spark_udf(
                spark,
                model_uri,
                result_type=f"{SUBGROUP_COLUMN} long, {RULE_COLUMN} string",
                env_manager="local",
            )
        except (MlflowException, OSError) as exc:
            raise TrackingError(f"could not load model {model_uri!r} for Spark: {exc}") from exc
    if info.signature is None:
        raise TrackingError(f"model {model_uri!r} has no signature: log it with log_subgroup_model")
    names = info.signature.inputs.input_names()
    missing = [c for c in names if c not in sdf.columns]
    if missing:
        raise InputValidationError(
            [
                f"column {c!r} (covariate of the model) is missing from the Spark table"
                for c in missing
            ]
        )
    scored_col = "__mlearner_scored"
    keep = [c for c in sdf.columns if c not in (SUBGROUP_COLUMN, RULE_COLUMN)]
    return sdf.withColumn(scored_col, udf(F.struct(*[F.col(c) for c in names]))).select(
        *keep,
        F.col(f"{scored_col}.{SUBGROUP_COLUMN}").alias(SUBGROUP_COLUMN),
        F.col(f"{scored_col}.{RULE_COLUMN}").alias(RULE_COLUMN),
    )


# -- reachability ---------------------------------------------------------------------------------


@contextlib.contextmanager
def _env(values: Mapping[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _within(timeout: float, fn: Callable[[], Any]) -> tuple[bool, BaseException | None]:
    """Run ``fn`` in a daemon thread; (finished in time, its exception or None)."""
    box: dict[str, BaseException] = {}

    def target() -> None:
        try:
            fn()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True, name="mlearner-tracking-check")
    thread.start()
    thread.join(timeout)
    return (not thread.is_alive(), box.get("error"))


def _probe_with_client(uri: str, timeout: float) -> None:
    def probe() -> None:
        mlflow.MlflowClient(tracking_uri=uri).search_experiments(max_results=1)

    env = {
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(max(1, math.ceil(timeout))),
    }
    with _env(env):
        finished, error = _within(timeout, probe)
    if not finished:
        raise TrackingError(
            f"MLflow tracking URI {uri!r} did not answer within {timeout:g} s. {_FIX}"
        )
    if error is not None:
        raise TrackingError(
            f"MLflow tracking URI {uri!r} is not usable: {type(error).__name__}: {error}. {_FIX}"
        )


def _probe_http(uri: str, timeout: float) -> None:
    base = uri.rstrip("/")
    try:
        with urllib.request.urlopen(f"{base}/health", timeout=timeout) as resp:
            if resp.status < 400:
                return
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403, 404):
            # a proxy or an authenticating server: ask MLflow itself, with our credentials
            _probe_with_client(uri, timeout)
            return
        raise TrackingError(
            f"MLflow tracking server {uri!r} answered HTTP {exc.code} ({exc.reason}) on /health: "
            f"it is up but failing; check its logs. {_FIX}"
        ) from exc
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingError(
            f"MLflow tracking server {uri!r} cannot be reached ({reason}). Start it (e.g. "
            f"`mlflow server --host 127.0.0.1 --port {urlparse(uri).port or 5000}`), check the "
            f"host and port, or {_FIX.split(' or ', 1)[1]}"
        ) from exc


def _check_sqlite(uri: str) -> None:
    db = _sqlite_path(uri)
    if db is None:
        raise TrackingError(
            f"tracking URI {uri!r} is not a sqlite:///<absolute or relative path> URI. {_FIX}"
        )
    try:
        db.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TrackingError(
            f"cannot create the folder {str(db.parent)!r} for the MLflow database of {uri!r}: "
            f"{exc}. Choose a writable --output or tracking.uri, or tracking.enabled: false"
        ) from exc
    if not os.access(db.parent, os.W_OK):
        raise TrackingError(
            f"the folder {str(db.parent)!r} of the MLflow database {uri!r} is not writable. "
            "Choose a writable --output or tracking.uri, or tracking.enabled: false"
        )
    if db.exists():
        try:
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=2)
            try:
                con.execute("PRAGMA schema_version").fetchone()
            finally:
                con.close()
        except sqlite3.Error as exc:
            raise TrackingError(
                f"{str(db)!r} exists but is not a readable SQLite database ({exc}): move it away "
                "or point tracking.uri elsewhere"
            ) from exc


def check_tracking_reachable(uri: str, *, timeout: float = DEFAULT_CHECK_TIMEOUT) -> None:
    """Fail fast when the MLflow tracking store cannot be used, before any expensive work.

    Parameters
    ----------
    uri : str
        The tracking URI the run will use.
    timeout : float, default 5
        Seconds to wait for a server.

    Raises
    ------
    TrackingError
        Naming the URI, what failed and how to fix it (or to set ``tracking.enabled: false``):
        an HTTP server that does not answer or answers with a server error; a SQLite database
        whose folder cannot be created or written or whose file is not a database; a file store
        without ``MLFLOW_ALLOW_FILE_STORE=true``; any other store MLflow cannot query in time.
    """
    if not isinstance(uri, str) or not uri.strip():
        raise TrackingError(f"tracking URI must be a non-empty string, got {uri!r}. {_FIX}")
    if timeout <= 0:
        raise TrackingError(f"timeout must be positive, got {timeout!r}")
    started = time.monotonic()
    scheme = urlparse(uri).scheme
    if scheme in ("http", "https"):
        _probe_http(uri, timeout)
    elif scheme == "sqlite":
        _check_sqlite(uri)
    elif scheme in ("", "file"):
        if os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() != "true":
            raise TrackingError(
                f"tracking URI {uri!r} is a file store, which MLflow 3 refuses unless "
                "MLFLOW_ALLOW_FILE_STORE=true. Use sqlite:///<folder>/mlflow.db instead (the "
                "default when tracking.uri is empty), or tracking.enabled: false"
            )
        folder = Path(urlparse(uri).path if scheme == "file" else uri)
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK):
            raise TrackingError(f"the MLflow file store {str(folder)!r} is not writable. {_FIX}")
    else:
        _probe_with_client(uri, timeout)
    logger.info("tracking store %s reachable (%.2f s)", uri, time.monotonic() - started)


# -- recording an analysis ------------------------------------------------------------------------


def log_result(tracker: Any, result: Mapping[str, Any], output_dir: str | Path) -> None:
    """Record a finished analysis (``result.json`` and its files) in the tracker's current run.

    Logs the metrics of :func:`mlearner_dist.tracking.result_metrics` (average effects with CIs,
    p_leaf, p_leaf_y, p_leaf_m, threshold, mc_pvalue, declared as 0/1, ``p_y.k<K>.tree<T>`` and
    ``p_m.k<K>.tree<T>``, ``wcss.k<K>``), the ``mlearner.*`` tags, the null p_leaf sample
    (``calibration/null_p_leaf.csv``), the subgroup table (``subgroups/subgroups.csv`` and
    ``.json``), every file in ``<output>/figures/``, ``report.html``, ``result.json``,
    ``profiles.json``, ``calibration.json`` when present, and the resolved configuration as
    ``config.yaml``.

    Parameters
    ----------
    tracker : Tracker
        With a run open.
    result : mapping
        The contents of ``result.json``.
    output_dir : str or Path
        The run's output folder.
    """
    if not isinstance(result, Mapping):
        raise TrackingError(f"result must be the result.json mapping, got {type(result).__name__}")
    out = Path(output_dir)
    if not out.is_dir():
        raise TrackingError(f"output_dir {str(out)!r} is not a folder")
    tracker.log_metrics(result_metrics(result))
    tracker.set_tags(result_tags(result, out))
    null_p = (result.get("calibration") or {}).get("null_p_leaf") or []
    if null_p:
        table = pd.DataFrame({"replicate": np.arange(len(null_p)), "p_leaf": null_p})
        tracker.log_table(table, "calibration/null_p_leaf.csv")
    subgroups = result.get("subgroups") or []
    if subgroups:
        tracker.log_table(subgroup_frame(subgroups), "subgroups/subgroups.csv")
        tracker.log_dict(list(subgroups), "subgroups/subgroups.json")
    figures = out / "figures"
    if figures.is_dir():
        for png in sorted(p for p in figures.iterdir() if p.is_file()):
            tracker.log_artifact(png, "figures")
    for name in ("report.html", "result.json", "profiles.json", "calibration.json"):
        if (out / name).is_file():
            tracker.log_artifact(out / name)
    if result.get("config"):
        tracker.log_dict(result["config"], "config.yaml")


def log_analysis(
    tracking_uri: str,
    cfg: Any,
    result: Mapping[str, Any],
    output_dir: str | Path,
    *,
    tree: Any | None = None,
    example: pd.DataFrame | None = None,
) -> str:
    """Create the MLflow run of a finished analysis and return its id (the report stage).

    The run holds the flattened configuration as params, the input data set, one child run per
    stage (``seconds``, tag ``mlearner.stage``) and per K (``wcss`` and the p-values of its trees),
    everything :func:`log_result` records, and, when ``tree`` and ``example`` are given, the
    subgroup scoring model ``subgroup_model``.

    Parameters
    ----------
    tracking_uri : str
    cfg : Config
        The resolved configuration (``tracking.experiment``, ``tracking.run_name``).
    result : mapping
        The contents of ``result.json``.
    output_dir : str or Path
    tree : profile tree, optional
        The chosen profile tree, logged as the scoring model.
    example : pandas.DataFrame, optional
        A few rows of covariates (signature and input example of the model).

    Returns
    -------
    str
        The MLflow run id.

    Raises
    ------
    TrackingError
        If anything fails; the run is then ended ``FAILED``.
    """
    tracking = getattr(cfg, "tracking", None)
    experiment = getattr(tracking, "experiment", "mlearner") or "mlearner"
    run_name = getattr(tracking, "run_name", "") or f"mlearner-{str(result.get('run_id', ''))[:8]}"
    tracker = MlflowTracker(tracking_uri, experiment)
    config = result.get("config") or {}
    run_id = tracker.start_run(run_name, tags={TAG_OUTPUT_DIR: str(Path(output_dir).resolve())})
    try:
        if config:
            tracker.log_params(config)
        account = result.get("row_account") or {}
        source = (config.get("data") or {}).get("source") or "unknown"
        columns = json.dumps(config.get("columns") or {}, sort_keys=True, default=str)
        tracker.log_input(
            source,
            int(account.get("n_input") or 0),
            hashlib.sha256(columns.encode()).hexdigest()[:16],
        )
        for stage, seconds in (result.get("timings") or {}).items():
            with tracker.child(f"stage {stage}", {TAG_STAGE: stage}):
                tracker.log_metrics({"seconds": seconds})
        wcss = (result.get("clustering") or {}).get("wcss") or {}
        by_k: dict[int, list[Mapping[str, Any]]] = {}
        for conf in result.get("configurations") or []:
            by_k.setdefault(int(conf["k"]), []).append(conf)
        chosen_k = (result.get("chosen") or {}).get("k")
        for k in sorted(set(by_k) | {int(k) for k in wcss}):
            with tracker.child(f"K={k}", {TAG_STAGE: "cluster", TAG_CHOSEN_K: str(chosen_k)}):
                metrics: dict[str, Any] = {"wcss": wcss.get(str(k), wcss.get(k))}
                for conf in by_k.get(k, []):
                    metrics[f"p_y.tree{conf['tree_id']}"] = conf.get("p_y")
                    metrics[f"p_m.tree{conf['tree_id']}"] = conf.get("p_m")
                tracker.log_metrics(metrics)
        log_result(tracker, result, output_dir)
        if tree is not None and example is not None:
            tracker.log_subgroup_model(tree, example)
    except BaseException as exc:
        tracker.end_run("FAILED")
        if isinstance(exc, MLearnerError) or not isinstance(exc, Exception):
            raise
        raise TrackingError(
            f"logging the analysis to MLflow ({tracking_uri}) failed: {type(exc).__name__}: {exc}"
        ) from exc
    tracker.end_run("FINISHED")
    logger.info(
        "MLflow run %s: %s", run_id, "declared" if result.get("declared") else "not declared"
    )
    return run_id


def list_runs(tracking_uri: str, experiment: str) -> pd.DataFrame:
    """The analyses (top-level runs) of an experiment, newest first (``mlearner runs``).

    Returns
    -------
    pandas.DataFrame
        Columns ``run_id``, ``run_name``, ``start_time`` (UTC timestamp), ``data_source``,
        ``n_used``, ``chosen_k``, ``declared`` (bool or None), ``p_leaf``, ``threshold``,
        ``status``; empty (with these columns) when the experiment does not exist.
    """
    if not isinstance(tracking_uri, str) or not tracking_uri:
        raise TrackingError(f"tracking_uri must be a non-empty string, got {tracking_uri!r}")
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    try:
        exp = client.get_experiment_by_name(experiment)
    except MlflowException as exc:
        raise TrackingError(f"cannot read experiments at {tracking_uri}: {exc}. {_FIX}") from exc
    if exp is None:
        return pd.DataFrame(columns=_RUN_COLUMNS)
    rows = []
    token = None
    while True:
        page = client.search_runs(
            [exp.experiment_id],
            order_by=["attributes.start_time DESC"],
            max_results=1000,
            page_token=token,
        )
        for run in page:
            tags = run.data.tags
            if _PARENT_TAG in tags:
                continue
            declared = tags.get(TAG_DECLARED)
            rows.append(
                {
                    "run_id": run.info.run_id,
                    "run_name": run.info.run_name,
                    "start_time": pd.Timestamp(run.info.start_time, unit="ms", tz="UTC"),
                    "data_source": tags.get(TAG_DATA_SOURCE, run.data.params.get("data.source")),
                    "n_used": run.data.metrics.get("n_used"),
                    "chosen_k": int(tags[TAG_CHOSEN_K]) if TAG_CHOSEN_K in tags else None,
                    "declared": None if declared is None else declared == "true",
                    "p_leaf": run.data.metrics.get("p_leaf"),
                    "threshold": run.data.metrics.get("threshold"),
                    "status": run.info.status,
                }
            )
        token = page.token
        if not token:
            break
    return pd.DataFrame(rows, columns=_RUN_COLUMNS)


__all__ = [
    "DEFAULT_CHECK_TIMEOUT",
    "MODEL_NAME",
    "MlflowTracker",
    "SubgroupPyfunc",
    "check_tracking_reachable",
    "default_artifact_location",
    "list_runs",
    "log_analysis",
    "log_result",
    "score_with_model_uri",
    "spark_score",
]
