"""The MLflow tracker: :class:`MlflowTracker` implements :class:`mlearner_dist.tracking.Tracker`.

It uses :class:`mlflow.MlflowClient` (explicit run ids, no global active run) and batches params,
metrics and tags to MLflow's limits.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import re
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import mlflow
import mlflow.pyfunc
import pandas as pd
import yaml
from mlflow.data.dataset_source import DatasetSource
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from mlearner_dist.backends.mlflow_model import log_pyfunc_model
from mlearner_dist.backends.mlflow_store import TRACKING_FIX, default_artifact_location, sqlite_path
from mlearner_dist.backends.storage_paths import is_spark_only_input
from mlearner_dist.core.jsonable import to_jsonable
from mlearner_dist.exceptions import MLearnerError, TrackingError
from mlearner_dist.scoring import SubgroupModel, tree_covariates
from mlearner_dist.tracking import (
    MAX_METRICS_PER_BATCH,
    MAX_PARAMS_PER_BATCH,
    MAX_TAGS_PER_BATCH,
    TAG_DATA_SOURCE,
    chunked,
    flatten_dict,
    metric_key,
    param_value,
)

logger = logging.getLogger(__name__)

#: The MLflow tag that links a nested run to its parent.
PARENT_TAG = "mlflow.parentRunId"
_MAX_TAG_VALUE_LENGTH = 8000
_STATUSES = ("FINISHED", "FAILED", "KILLED")


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
                f"tracking_uri must be a non-empty string, got {tracking_uri!r}: " + TRACKING_FIX
            )
        if not isinstance(experiment, str) or not experiment.strip():
            raise TrackingError(f"experiment must be a non-empty name, got {experiment!r}")
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        db = sqlite_path(tracking_uri)
        if db is not None:
            db.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._client = mlflow.MlflowClient(tracking_uri=tracking_uri)
            self.experiment_id = self._get_or_create_experiment()
        except MlflowException as exc:
            raise TrackingError(
                f"MLflow tracking store {tracking_uri!r} refused experiment {experiment!r}: "
                f"{exc}. {TRACKING_FIX}"
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
                f"could not create run {name!r} at {self.tracking_uri}: {exc}. {TRACKING_FIX}"
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
    def child(
        self,
        name: str,
        tags: Mapping[str, Any] | None = None,
        *,
        start_time: int | None = None,
        end_time: int | None = None,
    ) -> Iterator[str]:
        """Open a nested run under the current run for the duration of the block.

        Yields the child's run id; inside the block every ``log_*`` call goes to the child. The
        child ends ``FINISHED``, or ``FAILED`` if the block raises (the error propagates).
        ``start_time`` / ``end_time`` (milliseconds since the epoch) record when the work the
        child describes really ran (a stage that finished before the report); by default the
        block's own times.
        """
        parent = self._require_run()
        str_tags = {k: param_value(v, _MAX_TAG_VALUE_LENGTH) for k, v in (tags or {}).items()}
        str_tags[PARENT_TAG] = parent
        run = self._client.create_run(
            self.experiment_id, run_name=str(name), tags=str_tags, start_time=start_time
        )
        child_id = run.info.run_id
        self._stack.append(child_id)
        status = "FAILED"
        try:
            yield child_id
            status = "FINISHED"
        finally:
            if self._stack and self._stack[-1] == child_id:
                self._stack.pop()
            self._client.set_terminated(child_id, status=status, end_time=end_time)

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
        """Store ``obj`` as ``file_name``: YAML for ``.yaml``/``.yml``, JSON otherwise.

        ``obj`` is converted by :func:`mlearner_dist.core.jsonable.to_jsonable` (NaN -> null), as
        for every JSON file the package writes.
        """
        run_id = self._require_run()
        plain = to_jsonable(obj)
        if file_name.endswith((".yaml", ".yml")):
            text = yaml.safe_dump(plain, sort_keys=False)
        else:
            text = json.dumps(plain, indent=2, allow_nan=False)
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

    def log_input(
        self,
        source: str,
        n_rows: int,
        schema_hash: str,
        *,
        fmt: str = "",
        version: int | None = None,
        context: str = "training",
    ) -> None:
        """Record the input data set (an MLflow dataset input) and the tag ``mlearner.data_source``.

        The dataset's source is one of MLflow's registered source types, so that
        ``mlflow.data.get_source`` restores it: ``delta_table`` (with the version read) for
        Delta, ``spark`` for a catalog table or a path only Spark reads (``dbfs:/``,
        ``/Volumes/``), ``local``/``s3``/``abfss``/... for files, ``code`` for the built-in data.
        The input carries MLflow's context tag (``training``: the nuisance models, trees and
        tests are fitted on it).
        """
        run_id = self._require_run()
        src = str(source)
        digest = hashlib.sha256(f"{src}|{version}|{n_rows}|{schema_hash}".encode()).hexdigest()[:16]
        ds_source = dataset_source(src, fmt, version)
        dataset = Dataset(
            name=src if fmt == "table" else (Path(urlparse(src).path).name or src),
            digest=digest,
            source_type=ds_source._get_source_type(),
            source=ds_source.to_json(),
            schema=json.dumps({"schema_hash": schema_hash}),
            profile=json.dumps({"num_rows": int(n_rows)}),
        )
        tags = [InputTag(key=MLFLOW_DATASET_CONTEXT, value=context)]
        self._client.log_inputs(run_id, datasets=[DatasetInput(dataset=dataset, tags=tags)])
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
            ``models:/<model id>`` (MLflow 3's logged model; also the run's tag
            ``mlearner.model_uri``, with ``mlearner.model_id``), loadable with
            ``mlflow.pyfunc.load_model``.
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
        uri, model_id = log_pyfunc_model(self.tracking_uri, run_id, model, input_example)
        self.set_tags({"mlearner.model_uri": uri, "mlearner.model_id": model_id or ""})
        logger.info("logged subgroup model %s", uri)
        return uri


def dataset_source(source: str, fmt: str = "", version: int | None = None) -> DatasetSource:
    """The MLflow dataset source (a registered type) of ``data.source`` / ``data.format``."""
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.delta_dataset_source import DeltaDatasetSource
    from mlflow.data.spark_dataset_source import SparkDatasetSource

    if fmt == "builtin":
        return CodeDatasetSource(tags={"mlearner.builtin_dataset": source})
    if fmt == "table":
        return SparkDatasetSource(table_name=source)
    if fmt == "delta":
        return DeltaDatasetSource(path=source, delta_table_version=version)
    if is_spark_only_input(source) and not re.match(r"^[a-z0-9]+://", source):
        return SparkDatasetSource(path=source)  # dbfs:/, /Volumes/, /dbfs/: Spark reads them
    try:
        with warnings.catch_warnings():  # "can be interpreted in multiple ways": same class
            warnings.simplefilter("ignore", UserWarning)
            return resolve_dataset_source(source)
    except MlflowException:
        return SparkDatasetSource(path=source)
