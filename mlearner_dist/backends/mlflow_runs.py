"""The MLflow run of a finished analysis (the report stage) and the list of past analyses.

:func:`log_result` / :func:`log_analysis` record a finished ``result.json``; :func:`list_runs`
lists analyses for ``mlearner runs``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException

from mlearner_dist.backends.mlflow_store import TRACKING_FIX
from mlearner_dist.backends.mlflow_tracker import PARENT_TAG, MlflowTracker
from mlearner_dist.core.jsonable import to_jsonable
from mlearner_dist.exceptions import MLearnerError, TrackingError
from mlearner_dist.stages import manifest_path
from mlearner_dist.tracking import (
    TAG_CHOSEN_K,
    TAG_DATA_SOURCE,
    TAG_DECLARED,
    TAG_OUTPUT_DIR,
    TAG_STAGE,
    result_metrics,
    result_tags,
    subgroup_frame,
)

logger = logging.getLogger(__name__)

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


def _stage_times(
    output_dir: str | Path, stage: str, seconds: float
) -> tuple[int | None, int | None]:
    """(start, end) of a finished stage in ms since the epoch, from its manifest's finish time.

    The report stage is still running when the run is logged: (None, None), i.e. now.
    """
    path = manifest_path(Path(output_dir), stage)
    try:
        finished = json.loads(path.read_text()).get("finished") or ""
        end = datetime.fromisoformat(finished)
    except (OSError, ValueError, AttributeError):
        return None, None
    if end.tzinfo is None:
        end = end.replace(tzinfo=timezone.utc)
    end_ms = int(end.timestamp() * 1000)
    return end_ms - round(float(seconds) * 1000), end_ms


def model_fields(tracking_uri: str, run_id: str) -> dict[str, str | None]:
    """``mlflow_model_uri`` and ``mlflow_model_id`` of the run's subgroup model, for result.json.

    The URI is MLflow 3's ``models:/<model_id>``; both are None when no model was logged.
    """
    tags = mlflow.MlflowClient(tracking_uri=tracking_uri).get_run(run_id).data.tags
    return {
        "mlflow_model_uri": tags.get("mlearner.model_uri") or None,
        "mlflow_model_id": tags.get("mlearner.model_id") or None,
    }


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
        data = config.get("data") or {}
        source = data.get("source") or "unknown"
        columns = json.dumps(to_jsonable(config.get("columns") or {}), sort_keys=True)
        tracker.log_input(
            source,
            int(account.get("n_input") or 0),
            hashlib.sha256(columns.encode()).hexdigest()[:16],
            fmt=str(data.get("format") or ""),
            version=(result.get("source") or {}).get("version"),
        )
        if (result.get("source") or {}).get("version") is not None:
            tracker.set_tags({"mlearner.data_version": result["source"]["version"]})
        for stage, seconds in (result.get("timings") or {}).items():
            start, end = _stage_times(output_dir, stage, seconds)
            with tracker.child(
                f"stage {stage}", {TAG_STAGE: stage}, start_time=start, end_time=end
            ):
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
        raise TrackingError(
            f"cannot read experiments at {tracking_uri}: {exc}. {TRACKING_FIX}"
        ) from exc
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
            if PARENT_TAG in tags:
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
