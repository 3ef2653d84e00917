"""MLflow for mlearner-dist: one import point for the modules that hold one concept each.

- :mod:`~mlearner_dist.backends.mlflow_tracker`: :class:`MlflowTracker`, the
  :class:`mlearner_dist.tracking.Tracker` on :class:`mlflow.MlflowClient` (explicit run ids,
  batches within MLflow's limits, datasets with registered source types and their context);
- :mod:`~mlearner_dist.backends.mlflow_model`: the pyfunc scoring model ``subgroup_model``
  (logged with this package as ``code_paths``, addressed as ``models:/<model_id>``) and scoring
  with it (:func:`score_with_model_uri`, :func:`spark_score`);
- :mod:`~mlearner_dist.backends.mlflow_probes`: :func:`check_tracking_reachable`, failing fast
  before expensive work;
- :mod:`~mlearner_dist.backends.mlflow_runs`: the run of a finished analysis
  (:func:`log_result`, :func:`log_analysis`, :func:`model_fields`) and :func:`list_runs`;
- :mod:`~mlearner_dist.backends.mlflow_store`: where a store keeps runs and artifacts.

The embedded default store is ``sqlite:///<output>/mlflow.db`` with artifacts in
``<output>/mlartifacts`` (MLflow 3 refuses a ``./mlruns`` file store unless
``MLFLOW_ALLOW_FILE_STORE=true``).
"""

from __future__ import annotations

from mlearner_dist.backends.mlflow_model import (
    MODEL_NAME,
    SubgroupPyfunc,
    log_pyfunc_model,
    score_with_model_uri,
    spark_score,
)
from mlearner_dist.backends.mlflow_probes import DEFAULT_CHECK_TIMEOUT, check_tracking_reachable
from mlearner_dist.backends.mlflow_runs import list_runs, log_analysis, log_result, model_fields
from mlearner_dist.backends.mlflow_store import default_artifact_location
from mlearner_dist.backends.mlflow_tracker import MlflowTracker, dataset_source

__all__ = [
    "DEFAULT_CHECK_TIMEOUT",
    "MODEL_NAME",
    "MlflowTracker",
    "SubgroupPyfunc",
    "check_tracking_reachable",
    "dataset_source",
    "default_artifact_location",
    "list_runs",
    "log_analysis",
    "log_pyfunc_model",
    "log_result",
    "model_fields",
    "score_with_model_uri",
    "spark_score",
]
