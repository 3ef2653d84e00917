"""The subgroup scoring model as an MLflow pyfunc, and scoring with it.

:class:`SubgroupPyfunc` wraps :class:`mlearner_dist.scoring.SubgroupModel`; it is logged as
``subgroup_model`` with this package as ``code_paths`` (so its environment installs from the
model's own requirements, without an index serving mlearner-dist) and applied by
:func:`score_with_model_uri` (pandas, parquet in and out) and :func:`spark_score`
(``mlflow.pyfunc.spark_udf``).
"""

from __future__ import annotations

import importlib.metadata
import logging
import warnings
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature

from mlearner_dist.backends.mlflow_store import use_tracking_uri
from mlearner_dist.exceptions import InputValidationError, TrackingError
from mlearner_dist.scoring import RULE_COLUMN, SUBGROUP_COLUMN, SubgroupModel

logger = logging.getLogger(__name__)

#: Artifact path (and ``name=``) of the logged subgroup scoring model.
MODEL_NAME = "subgroup_model"
#: Packages the scoring model imports (besides this package, which travels as ``code_paths``).
_MODEL_REQUIREMENTS = ("mlflow", "pandas", "numpy", "scipy", "scikit-learn", "cloudpickle")


def _pip_requirements() -> list[str]:
    """The scoring model's requirements, pinned to the versions it was logged with.

    mlearner-dist itself is not among them: no package index serves it, so the package is logged
    with the model (``code_paths``) and the model's environment installs from a public index.
    """
    reqs = []
    for dist in _MODEL_REQUIREMENTS:
        try:
            reqs.append(f"{dist}=={importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return reqs


def _package_dir() -> str:
    import mlearner_dist

    return str(Path(mlearner_dist.__file__).resolve().parent)


def log_pyfunc_model(
    tracking_uri: str, run_id: str, model: SubgroupModel, example: pd.DataFrame
) -> tuple[str, str | None]:
    """Log ``model`` as the pyfunc ``subgroup_model`` of the open run ``run_id``.

    Parameters
    ----------
    tracking_uri : str
    run_id : str
        A run that is open (RUNNING); it is left RUNNING.
    model : SubgroupModel
    example : pandas.DataFrame
        A few rows of covariates: the signature and input example of the model.

    Returns
    -------
    model_uri : str
        MLflow 3's ``models:/<model_id>`` (``runs:/<run>/subgroup_model`` with an MLflow 2 store).
    model_id : str or None
        The logged model's id (None before MLflow 3).
    """
    example = example[list(model.covariates)].head(5).reset_index(drop=True)
    with warnings.catch_warnings():
        # the output's integer subgroup column never holds missing values
        warnings.filterwarnings("ignore", message=".*Inferred schema contains integer")
        signature = infer_signature(example, model.predict(example))
    with use_tracking_uri(tracking_uri):
        nested = mlflow.active_run() is not None
        with mlflow.start_run(run_id=run_id, nested=nested):
            info = mlflow.pyfunc.log_model(
                name=MODEL_NAME,
                python_model=SubgroupPyfunc(model),
                signature=signature,
                input_example=example,
                pip_requirements=_pip_requirements(),
                code_paths=[_package_dir()],
            )
    # leaving the fluent block marked the run FINISHED; it is still the caller's to end
    mlflow.MlflowClient(tracking_uri=tracking_uri).update_run(run_id, status="RUNNING")
    model_id = getattr(info, "model_id", None)
    uri = info.model_uri if model_id else f"runs:/{run_id}/{MODEL_NAME}"
    return uri, model_id


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
        with use_tracking_uri(tracking_uri):
            return mlflow.pyfunc.load_model(model_uri)
    except (MlflowException, OSError) as exc:
        raise TrackingError(
            f"could not load model {model_uri!r}"
            + (f" from {tracking_uri}" if tracking_uri else "")
            + f": {exc}. Pass the model's URI (models:/<model id> from result.json, or "
            f"runs:/<run id>/{MODEL_NAME}) and the tracking "
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
        ``models:/<model id>`` (result.json's ``mlflow_model_uri``) or
        ``runs:/<run id>/subgroup_model``.
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

    with use_tracking_uri(tracking_uri):
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
