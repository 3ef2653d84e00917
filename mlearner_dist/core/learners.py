"""scikit-learn learners for the nuisance models, with categorical covariates handled inside.

Categorical covariates (object, category or bool dtype) are encoded by the returned pipeline:
ordinal codes with native categorical splits for histogram gradient boosting, ordinal codes for
random forests, one-hot columns for the linear models. Users never encode them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from mlearner_dist.exceptions import ConfigError

__all__ = ["LEARNER_KINDS", "TASKS", "categorical_columns", "make_learner", "predict_response"]

logger = logging.getLogger(__name__)

LEARNER_KINDS = ("hist_gradient_boosting", "random_forest", "linear")
TASKS = ("regression", "classification")

LearnerKind = Literal["hist_gradient_boosting", "random_forest", "linear"]
Task = Literal["regression", "classification"]

# Histogram gradient boosting bins categorical features into at most 255 bins (one for missing).
_MAX_HGB_CATEGORIES = 254


def categorical_columns(frame: pd.DataFrame, columns: Sequence[str]) -> list[str]:
    """The columns among ``columns`` that are categorical (object, category or bool dtype).

    Parameters
    ----------
    frame : DataFrame
        Holds the columns.
    columns : sequence of str
        Candidate covariate names.

    Returns
    -------
    list of str
        The categorical ones, in the given order.
    """
    out = []
    for c in columns:
        dt = frame[c].dtype
        if (
            pd.api.types.is_object_dtype(dt)
            or isinstance(dt, pd.CategoricalDtype)
            or pd.api.types.is_bool_dtype(dt)
            or pd.api.types.is_string_dtype(dt)
        ):
            out.append(c)
    return out


def _base_estimators(kind: str, random_state: int) -> tuple[BaseEstimator, BaseEstimator]:
    """(regressor, classifier) with our defaults for ``kind``."""
    if kind == "hist_gradient_boosting":
        common = {
            "max_iter": 100,
            "learning_rate": 0.1,
            "early_stopping": False,
            "random_state": random_state,
        }
        return HistGradientBoostingRegressor(**common), HistGradientBoostingClassifier(**common)
    if kind == "random_forest":
        common = {
            "n_estimators": 100,
            "min_samples_leaf": 5,
            "n_jobs": 1,
            "random_state": random_state,
        }
        return RandomForestRegressor(**common), RandomForestClassifier(**common)
    return (
        RidgeCV(alphas=np.logspace(-3, 3, 13)),
        LogisticRegression(C=1.0, max_iter=2000),
    )


def _split_params(
    kind: str, params: Mapping[str, Any], reg: BaseEstimator, clf: BaseEstimator
) -> tuple[dict[str, Any], dict[str, Any]]:
    reg_ok, clf_ok = set(reg.get_params()), set(clf.get_params())
    unknown = sorted(k for k in params if k not in reg_ok and k not in clf_ok)
    if unknown:
        valid = sorted(reg_ok | clf_ok)
        raise ConfigError(
            f"learner_params {unknown} are not parameters of the {kind!r} learners "
            f"({type(reg).__name__}, {type(clf).__name__}); valid names: {valid}"
        )
    return (
        {k: v for k, v in params.items() if k in reg_ok},
        {k: v for k, v in params.items() if k in clf_ok},
    )


def make_learner(
    kind: str,
    task: str,
    *,
    numeric: Sequence[str],
    categorical: Sequence[str],
    params: Mapping[str, Any] | None = None,
    random_state: int = 0,
) -> Pipeline:
    """An unfitted scikit-learn pipeline for one nuisance model.

    Parameters
    ----------
    kind : {"hist_gradient_boosting", "random_forest", "linear"}
        ``hist_gradient_boosting`` (default of the package): 100 rounds, learning rate 0.1, no
        early stopping (deterministic), native categorical splits. ``random_forest``: 100 trees,
        minimum leaf size 5. ``linear``: standardised numeric columns and one-hot categoricals
        into RidgeCV (alphas 1e-3..1e3) or LogisticRegression (C = 1).
    task : {"regression", "classification"}
        Classification models are used through :func:`predict_response`, which returns P(y = 1).
    numeric : sequence of str
        Numeric feature columns (used as float).
    categorical : sequence of str
        Categorical feature columns (object, category or bool), encoded inside the pipeline.
    params : mapping, optional
        Parameters of the final estimator (for example ``{"max_iter": 200}``). Each key must be a
        parameter of the regressor or the classifier of ``kind``; a key is given to whichever of
        the two accepts it, so one mapping serves both tasks.
    random_state : int
        Seed of the estimator (when it has one).

    Returns
    -------
    sklearn.pipeline.Pipeline
        Steps ``encode`` (a ColumnTransformer taking a DataFrame with the named columns) and
        ``model``.

    Raises
    ------
    ConfigError
        Unknown ``kind`` or ``task``, no feature column, or a parameter neither estimator knows.
    """
    if kind not in LEARNER_KINDS:
        raise ConfigError(
            f"learner kind {kind!r} is unknown; choose one of {list(LEARNER_KINDS)} "
            "(effects.learner)"
        )
    if task not in TASKS:
        raise ConfigError(f"task {task!r} is unknown; choose one of {list(TASKS)}")
    numeric, categorical = list(numeric), list(categorical)
    overlap = sorted(set(numeric) & set(categorical))
    if overlap:
        raise ConfigError(f"columns {overlap} are listed as both numeric and categorical")
    if not numeric and not categorical:
        raise ConfigError("make_learner needs at least one feature column (numeric or categorical)")
    reg, clf = _base_estimators(kind, random_state)
    # copy sequences: RidgeCV writes into a one-element ``alphas`` (a tuple from a frozen config
    # fails, a list would be changed in the caller's hands)
    given = {
        k: list(v) if isinstance(v, list | tuple | np.ndarray) else v
        for k, v in dict(params or {}).items()
    }
    reg_params, clf_params = _split_params(kind, given, reg, clf)
    model = reg if task == "regression" else clf
    model.set_params(**(reg_params if task == "regression" else clf_params))

    transformers: list[tuple[str, Any, list[str]]] = []
    if kind == "linear":
        if categorical:
            transformers.append(
                (
                    "categorical",
                    OneHotEncoder(handle_unknown="ignore", sparse_output=False, dtype=np.float64),
                    categorical,
                )
            )
        if numeric:
            transformers.append(("numeric", StandardScaler(), numeric))
    else:
        if categorical:
            transformers.append(
                (
                    "categorical",
                    OrdinalEncoder(
                        handle_unknown="use_encoded_value",
                        unknown_value=np.nan,
                        encoded_missing_value=np.nan,
                        max_categories=_MAX_HGB_CATEGORIES,
                        dtype=np.float64,
                    ),
                    categorical,
                )
            )
        if numeric:
            transformers.append(("numeric", "passthrough", numeric))
        if kind == "hist_gradient_boosting":
            # the ColumnTransformer puts the categorical block first
            mask = [True] * len(categorical) + [False] * len(numeric)
            model.set_params(categorical_features=mask if categorical else None)
    encode = ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=False)
    return Pipeline([("encode", encode), ("model", model)])


def predict_response(model: Any, X: pd.DataFrame, task: str) -> np.ndarray:
    """Predictions of a fitted nuisance model: E[y | x] for regression, P(y = 1 | x) otherwise.

    Parameters
    ----------
    model : fitted estimator
        From :func:`make_learner` (or any estimator with ``predict`` / ``predict_proba``).
    X : DataFrame of shape (n, p)
    task : {"regression", "classification"}

    Returns
    -------
    ndarray of shape (n,), float64
    """
    if task == "regression":
        return np.asarray(model.predict(X), dtype=np.float64).ravel()
    proba = model.predict_proba(X)
    classes = list(model.classes_)
    if 1 not in classes:
        raise ConfigError(
            f"the classifier was fitted on classes {classes}; a 0/1 target with class 1 is needed"
        )
    return np.asarray(proba[:, classes.index(1)], dtype=np.float64)
