"""scikit-learn learners for the nuisance models, with categorical covariates handled inside.

Categorical covariates (object, category or bool dtype) are encoded by the returned pipeline:
ordinal codes with native categorical splits for histogram gradient boosting, ordinal codes for
random forests, one-hot columns for the linear models and for user-supplied estimators. Users
never encode them.

Learners are named (:data:`LEARNER_KINDS`) or given as any scikit-learn estimator object
(:func:`make_learner` clones it). ``auto`` is a discrete Super Learner: among
:data:`AUTO_CANDIDATES` (the constant mean model, ridge / logistic regression on the raw
covariates and on a spline basis, histogram gradient boosting with early stopping) the candidate
with the smallest cross-validated loss is chosen per nuisance model by :func:`choose_learner`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin, clone, is_classifier, is_regressor
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, SplineTransformer, StandardScaler

from mlearner_dist.core.folds import assign_folds, stable_uniform
from mlearner_dist.core.hist_boosting import (
    QuantileBinnedHGBClassifier,
    QuantileBinnedHGBRegressor,
)
from mlearner_dist.core.partially_linear import PartiallyLinearRegressor
from mlearner_dist.exceptions import ConfigError

__all__ = [
    "AUTO_CANDIDATES",
    "LEARNER_KINDS",
    "TASKS",
    "ConstantModel",
    "LearnerChoice",
    "categorical_columns",
    "check_learner",
    "choose_learner",
    "describe_learner",
    "make_learner",
    "predict_response",
]

logger = logging.getLogger(__name__)

LearnerKind = Literal[
    "auto",
    "hist_gradient_boosting",
    "hist_gradient_boosting_early_stopping",
    "random_forest",
    "linear",
    "spline",
    "linear_boosting",
    "partially_linear",
    "constant",
]
#: Every learner name (``effects.learner`` takes one of them).
LEARNER_KINDS: tuple[str, ...] = get_args(LearnerKind)
#: Candidates of the ``auto`` learner, in order of simplicity (ties go to the simpler one).
AUTO_CANDIDATES = (
    "constant",
    "linear",
    "spline",
    "linear_boosting",
    "hist_gradient_boosting_early_stopping",
)
TASKS = ("regression", "classification")


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


class ConstantModel(BaseEstimator):
    """The constant model: one prediction for every row (the mean, or P(y = 1)).

    Used as the ``constant`` learner and candidate of ``auto``, and for a training arm where the
    target never varies.

    Parameters
    ----------
    value : float
        The prediction: the mean for regression, P(y = 1) for classification. :meth:`fit`
        replaces it by the (weighted) mean of the target.
    """

    def __init__(self, value: float = 0.0) -> None:
        self.value = float(value)
        self.classes_ = np.array([0, 1])

    def fit(
        self, X: Any, y: np.ndarray, sample_weight: np.ndarray | None = None
    ) -> ConstantModel:
        """Set ``value`` to the weighted mean of ``y``; shape (n,) in. Returns self."""
        y = np.asarray(y, dtype=np.float64)
        self.value = float(np.average(y, weights=sample_weight)) if len(y) else 0.0
        return self

    def predict(self, X: Any) -> np.ndarray:
        """``value`` for every row; shape (n,)."""
        return np.full(len(X), self.value, dtype=np.float64)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Columns (1 - value, value); shape (n, 2)."""
        p = self.predict(X)
        return np.column_stack([1.0 - p, p])


class LinearBoostingRegressor(RegressorMixin, BaseEstimator):
    """Ridge regression, then gradient boosting with early stopping on its residuals.

    f(x) = x' beta_ridge + g(x), beta_ridge from RidgeCV (alphas 1e-3..1e3), g histogram gradient
    boosting (as ``hist_gradient_boosting_early_stopping``) fitted to y - x' beta_ridge. The
    trees then spend no splits on a linear trend (a mediator's slope in the outcome model) and
    model only what is left (interactions, thresholds).

    Parameters
    ----------
    random_state : int
    max_iter, learning_rate, min_samples_leaf : boosting settings.
    """

    def __init__(
        self,
        random_state: int = 0,
        max_iter: int = 500,
        learning_rate: float = 0.1,
        min_samples_leaf: int = 20,
    ) -> None:
        self.random_state = random_state
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.min_samples_leaf = min_samples_leaf

    def fit(
        self, X: Any, y: np.ndarray, sample_weight: np.ndarray | None = None
    ) -> LinearBoostingRegressor:
        """Fit the ridge, then the boosting on its residuals. Returns self."""
        y = np.asarray(y, dtype=np.float64)
        self.linear_ = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(
            X, y, sample_weight=sample_weight
        )
        resid = y - self.linear_.predict(X)
        self.boost_ = QuantileBinnedHGBRegressor(
            max_iter=self.max_iter,
            learning_rate=self.learning_rate,
            min_samples_leaf=self.min_samples_leaf,
            early_stopping=True,
            validation_fraction=0.1,
            n_iter_no_change=10,
            scoring="loss",
            random_state=self.random_state,
        ).fit(X, resid, sample_weight=sample_weight)
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Ridge plus boosting prediction; shape (n,)."""
        return self.linear_.predict(X) + self.boost_.predict(X)


def _base_estimators(kind: str, random_state: int) -> tuple[Any, Any]:
    """(regressor, classifier) with our defaults for ``kind``."""
    if kind == "linear_boosting":
        # classification: the boosting alone (histogram boosting takes no linear offset)
        _, clf = _base_estimators("hist_gradient_boosting_early_stopping", random_state)
        return LinearBoostingRegressor(random_state=random_state), clf
    if kind in ("hist_gradient_boosting", "hist_gradient_boosting_early_stopping"):
        common: dict[str, Any] = {
            "max_iter": 100,
            "learning_rate": 0.1,
            "early_stopping": False,
            "random_state": random_state,
        }
        if kind == "hist_gradient_boosting_early_stopping":
            # up to 500 rounds; stop after 10 rounds without improvement of the loss on a 10%
            # validation split (drawn with random_state, so deterministic)
            common.update(
                max_iter=500,
                early_stopping=True,
                validation_fraction=0.1,
                n_iter_no_change=10,
                scoring="loss",
                min_samples_leaf=20,
            )
        return QuantileBinnedHGBRegressor(**common), QuantileBinnedHGBClassifier(**common)
    if kind == "random_forest":
        common = {
            "n_estimators": 100,
            "min_samples_leaf": 5,
            "n_jobs": 1,
            "random_state": random_state,
        }
        return RandomForestRegressor(**common), RandomForestClassifier(**common)
    if kind == "constant":
        return ConstantModel(), ConstantModel()
    return (
        RidgeCV(alphas=np.logspace(-3, 3, 13)),
        LogisticRegression(C=1.0, max_iter=2000),
    )


def _split_params(
    kind: str, params: Mapping[str, Any], reg: Any, clf: Any
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


def check_learner(learner: Any, where: str = "effects.learner") -> str | None:
    """Why ``learner`` cannot be used (None: it can).

    A learner is a name of :data:`LEARNER_KINDS` or a scikit-learn estimator object (anything
    with ``fit`` and ``predict``; classifiers also need ``predict_proba``).
    """
    if isinstance(learner, str):
        if learner in LEARNER_KINDS:
            return None
        return f"{where}={learner!r} is unknown; choose one of {list(LEARNER_KINDS)}"
    if hasattr(learner, "fit") and hasattr(learner, "predict"):
        return None
    return (
        f"{where}={learner!r} is neither a learner name ({list(LEARNER_KINDS)}) nor an estimator "
        "with fit and predict"
    )


def describe_learner(learner: Any) -> str:
    """A short name for diagnostics: the learner name, or the estimator's class name."""
    return learner if isinstance(learner, str) else type(learner).__name__


def _encoder(
    kind: str, numeric: list[str], categorical: list[str], *, spline_knots: int = 5
) -> ColumnTransformer:
    transformers: list[tuple[str, Any, list[str]]] = []
    if kind in ("linear", "spline", "estimator", "linear_boosting"):
        if categorical:
            transformers.append(
                (
                    "categorical",
                    OneHotEncoder(handle_unknown="ignore", sparse_output=False, dtype=np.float64),
                    categorical,
                )
            )
        if numeric:
            if kind == "spline":
                # cubic B-splines with knots at quantiles; linear extrapolation beyond them
                basis: Any = Pipeline(
                    [
                        (
                            "basis",
                            SplineTransformer(
                                n_knots=spline_knots,
                                degree=3,
                                knots="quantile",
                                extrapolation="linear",
                            ),
                        ),
                        ("scale", StandardScaler()),
                    ]
                )
            elif kind in ("linear", "linear_boosting"):
                basis = StandardScaler()
            else:
                basis = "passthrough"
            transformers.append(("numeric", basis, numeric))
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
    return ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=False)


def make_learner(
    kind: Any,
    task: str,
    *,
    numeric: Sequence[str],
    categorical: Sequence[str],
    params: Mapping[str, Any] | None = None,
    random_state: int = 0,
    linear_columns: Sequence[str] = (),
) -> Pipeline:
    """An unfitted scikit-learn pipeline for one nuisance model.

    Parameters
    ----------
    kind : str or scikit-learn estimator
        A name of :data:`LEARNER_KINDS` other than ``auto`` (which :func:`choose_learner`
        resolves to one of its candidates first), or an estimator object, which is cloned (a
        regressor for regression tasks; a classifier with ``predict_proba`` for classification).

        - ``hist_gradient_boosting``: 100 rounds, learning rate 0.1, no early stopping, native
          categorical splits (the package's default before ``auto``).
        - ``hist_gradient_boosting_early_stopping``: up to 500 rounds, learning rate 0.1,
          minimum leaf size 20, stopped after 10 rounds without improvement of the loss on a 10%
          validation split.
        - ``random_forest``: 100 trees, minimum leaf size 5.
        - ``linear``: standardised numeric columns and one-hot categoricals into RidgeCV
          (alphas 1e-3..1e3) or LogisticRegression (C = 1).
        - ``spline``: as ``linear`` on a cubic B-spline basis of every numeric column (5 knots
          at quantiles, an additive model).
        - ``linear_boosting``: :class:`LinearBoostingRegressor` (ridge, then boosting with early
          stopping on its residuals) on the ``linear`` encoding; for classification the same as
          ``hist_gradient_boosting_early_stopping``.
        - ``partially_linear``: for a regression with ``linear_columns`` among ``numeric`` (the
          outcome model given the mediator), :class:`~mlearner_dist.core.partially_linear.
          PartiallyLinearRegressor`: linear in those columns with a slope from cross-fitted
          residuals, ``linear_boosting`` in the others; without linear columns, or for
          classification, the same as ``linear_boosting``.
        - ``constant``: the mean (P(y = 1)) of the training target.
        - an estimator: one-hot categoricals and raw numeric columns into a clone of it.
    task : {"regression", "classification"}
        Classification models are used through :func:`predict_response`, which returns P(y = 1).
    numeric : sequence of str
        Numeric feature columns (used as float).
    categorical : sequence of str
        Categorical feature columns (object, category or bool), encoded inside the pipeline.
    params : mapping, optional
        Parameters of the final estimator (for example ``{"max_iter": 200}``). Each key must be a
        parameter of the regressor or the classifier of ``kind``; a key is given to whichever of
        the two accepts it, so one mapping serves both tasks. Ignored by ``constant``; for an
        estimator object, set through ``set_params``.
    random_state : int
        Seed of the estimator (when it has one).
    linear_columns : sequence of str, optional
        The columns ``partially_linear`` takes linearly (the mediators); ignored by the others.

    Returns
    -------
    sklearn.pipeline.Pipeline
        Steps ``encode`` (a ColumnTransformer taking a DataFrame with the named columns) and
        ``model``.

    Raises
    ------
    ConfigError
        Unknown ``kind`` or ``task``, no feature column, a parameter neither estimator knows, or
        an estimator of the wrong type for the task.
    """
    if isinstance(kind, str) and (kind not in LEARNER_KINDS or kind == "auto"):
        hint = (
            "; resolve 'auto' with choose_learner first"
            if kind == "auto"
            else " (effects.learner)"
        )
        raise ConfigError(
            f"learner kind {kind!r} is unknown; choose one of "
            f"{[k for k in LEARNER_KINDS if k != 'auto']}{hint}"
        )
    problem = check_learner(kind, "learner")
    if problem:
        raise ConfigError(problem)
    if task not in TASKS:
        raise ConfigError(f"task {task!r} is unknown; choose one of {list(TASKS)}")
    numeric, categorical = list(numeric), list(categorical)
    overlap = sorted(set(numeric) & set(categorical))
    if overlap:
        raise ConfigError(f"columns {overlap} are listed as both numeric and categorical")
    if not numeric and not categorical:
        raise ConfigError("make_learner needs at least one feature column (numeric or categorical)")
    # copy sequences: RidgeCV writes into a one-element ``alphas`` (a tuple from a frozen config
    # fails, a list would be changed in the caller's hands)
    given = {
        k: list(v) if isinstance(v, list | tuple | np.ndarray) else v
        for k, v in dict(params or {}).items()
    }
    if not isinstance(kind, str):
        model = clone(kind)
        if task == "classification" and (
            not hasattr(model, "predict_proba") or is_regressor(model)
        ):
            raise ConfigError(
                f"learner {type(model).__name__} is used for a classification nuisance model "
                "(propensity, binary mediator) and needs predict_proba; give a classifier"
            )
        if task == "regression" and is_classifier(model):
            raise ConfigError(
                f"learner {type(model).__name__} is a classifier but the nuisance model is a "
                "regression; give a regressor"
            )
        if given:
            model.set_params(**given)
        encode = _encoder("estimator", numeric, categorical)
        return Pipeline([("encode", encode), ("model", model)])
    if kind == "partially_linear":
        return _partially_linear(task, numeric, categorical, given, random_state, linear_columns)
    reg, clf = _base_estimators(kind, random_state)
    model = reg if task == "regression" else clf
    if kind != "constant":
        reg_params, clf_params = _split_params(kind, given, reg, clf)
        model.set_params(**(reg_params if task == "regression" else clf_params))
    if kind == "linear_boosting" and task == "classification":
        kind = "hist_gradient_boosting_early_stopping"
    if kind.startswith("hist_gradient_boosting"):
        # the ColumnTransformer puts the categorical block first
        mask = [True] * len(categorical) + [False] * len(numeric)
        model.set_params(categorical_features=mask if categorical else None)
    encode = _encoder(kind, numeric, categorical)
    return Pipeline([("encode", encode), ("model", model)])


def _partially_linear(
    task: str,
    numeric: list[str],
    categorical: list[str],
    params: dict[str, Any],
    random_state: int,
    linear_columns: Sequence[str],
) -> Pipeline:
    """The ``partially_linear`` pipeline: identity encoding, then the partially linear model."""
    linear = [c for c in linear_columns if c in numeric]
    if task != "regression" or not linear:
        return make_learner(
            "linear_boosting",
            task,
            numeric=numeric,
            categorical=categorical,
            params=params,
            random_state=random_state,
        )
    others = [c for c in numeric if c not in linear]
    if others or categorical:
        component: Any = make_learner(
            "linear_boosting",
            "regression",
            numeric=others,
            categorical=categorical,
            params=params,
            random_state=random_state,
        )
    else:
        component = Pipeline([("encode", "passthrough"), ("model", ConstantModel())])
    model = PartiallyLinearRegressor(linear, component, n_folds=2, random_state=random_state)
    return Pipeline([("encode", "passthrough"), ("model", model)])


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


def auto_params(learner: str, params: Mapping[str, Any]) -> dict[str, Any] | None:
    """The part of ``learner_params`` an ``auto`` candidate takes: all of it for the boosting
    candidates, ``max_iter`` and ``learning_rate`` for ``linear_boosting`` and
    ``partially_linear``, none otherwise."""
    if learner.startswith("hist_gradient_boosting"):
        return dict(params)
    if learner in ("linear_boosting", "partially_linear"):
        return {k: v for k, v in params.items() if k in ("max_iter", "learning_rate")}
    return None


#: Rows of the subsample on which ``auto`` compares its candidates (larger training sets are cut).
SELECT_MAX_ROWS = 20_000
_LOG_EPS = 1e-6


def selection_folds(n_rows: int) -> int:
    """Inner cross-validation folds V of :func:`choose_learner` on ``n_rows`` rows.

    V = 3 up to 10,000 rows, else 2. With 5 folds up to 2,000 rows (the rule before
    2026-12-01) the choice cost 2.5x the time of cross-fitting one boosting learner at
    n = 1,000; with 3 it costs 1.4x and chose the same learners on simple-all and complex-all
    but one (a model whose candidates' losses were within one standard error).
    """
    return 3 if n_rows <= 10_000 else 2


@dataclass(frozen=True)
class LearnerChoice:
    """The outcome of :func:`choose_learner` for one nuisance model.

    Attributes
    ----------
    chosen : str
        The candidate chosen by the one-standard-error rule (see :func:`choose_learner`).
    losses : dict of str to float
        Mean held-out loss of every candidate (weighted mean squared error for regression, log
        loss for classification).
    metric : {"mse", "log_loss"}
    n_rows : int
        Rows the candidates were compared on.
    n_folds : int
        Inner cross-validation folds.
    """

    chosen: str
    losses: dict[str, float] = field(default_factory=dict)
    metric: str = "mse"
    n_rows: int = 0
    n_folds: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (losses to 6 significant digits)."""
        return {
            "chosen": self.chosen,
            "metric": self.metric,
            "cv_loss": {k: float(f"{v:.6g}") for k, v in self.losses.items()},
            "n_rows": self.n_rows,
            "n_folds": self.n_folds,
        }


def _unit_loss(task: str, y: np.ndarray, p: np.ndarray) -> np.ndarray:
    if task == "regression":
        return (y - p) ** 2
    p = np.clip(p, _LOG_EPS, 1.0 - _LOG_EPS)
    return -(y * np.log(p) + (1.0 - y) * np.log1p(-p))


def _loss(task: str, y: np.ndarray, p: np.ndarray, w: np.ndarray | None) -> float:
    if task == "regression":
        return float(np.average((y - p) ** 2, weights=w))
    p = np.clip(p, _LOG_EPS, 1.0 - _LOG_EPS)
    return float(np.average(-(y * np.log(p) + (1.0 - y) * np.log1p(-p)), weights=w))


def choose_learner(
    task: str,
    X: pd.DataFrame,
    y: np.ndarray,
    *,
    unit_ids: Sequence[Any],
    numeric: Sequence[str],
    categorical: Sequence[str],
    candidates: Sequence[str] = AUTO_CANDIDATES,
    params: Mapping[str, Any] | None = None,
    sample_weight: np.ndarray | None = None,
    random_state: int = 0,
    max_rows: int = SELECT_MAX_ROWS,
    groups: Sequence[Any] | None = None,
    linear_columns: Sequence[str] = (),
) -> LearnerChoice:
    """Discrete Super Learner: the candidate with the smallest cross-validated loss.

    The rows (at most ``max_rows``: those with the smallest ``stable_uniform(unit_id,
    random_state)``, so the subsample does not depend on the row order or the engine) are split
    by a hash of the unit id into V folds (:func:`selection_folds`: 3 up to 10,000 rows, else 2;
    the cost stays near one extra fit per candidate). Each candidate is
    fitted on V - 1 folds and scored on the held-out one; the loss is

        regression:      sum_i w_i (y_i - f(x_i))^2 / sum_i w_i
        classification:  -sum_i w_i (y_i log p(x_i) + (1 - y_i) log(1 - p(x_i))) / sum_i w_i

    (p clipped to [1e-6, 1 - 1e-6]), averaged over the held-out rows of all folds. The chosen
    candidate is the simplest (earliest in ``candidates``) whose loss exceeds the smallest loss
    by at most one standard error of the paired per-row loss differences (the one-standard-error
    rule; it keeps a flexible learner from winning on noise), else the one with the smallest
    loss. The constant candidate is the weighted mean, so a model that predicts worse than the
    mean out of sample is not chosen.

    Parameters
    ----------
    task : {"regression", "classification"}
    X : DataFrame of shape (n, p)
        Feature columns ``numeric`` + ``categorical``.
    y : ndarray of shape (n,)
    unit_ids : sequence of shape (n,)
        Unit ids of the rows (for the subsample and the inner folds).
    numeric, categorical : sequence of str
    candidates : sequence of str
        Learner names (not ``auto``), simplest first.
    params : mapping, optional
        Extra parameters of the boosting candidates only (the flexible ones).
    sample_weight : ndarray of shape (n,), optional
        Weights of the fit and of the loss (the R-learner's contrast).
    random_state : int
    max_rows : int
    groups : sequence of shape (n,), optional
        Cluster label of every row (a cluster-randomised trial): the inner folds then hold
        whole clusters (:func:`~mlearner_dist.core.folds.assign_folds` with ``clusters``), so no
        candidate is scored on a cluster it was trained on.
    linear_columns : sequence of str, optional
        The mediator columns of an outcome model given the mediator (for ``partially_linear``;
        that candidate is dropped from a model without them, where it is ``linear_boosting``).

    Returns
    -------
    LearnerChoice
    """
    cands = [c for c in candidates if c != "auto"]
    bad = [c for c in cands if c not in LEARNER_KINDS]
    if task == "classification":
        # linear_boosting and partially_linear are boosting alone for classification: do not
        # fit them twice
        cands = [c for c in cands if c not in ("linear_boosting", "partially_linear")] or cands
    if not any(c in list(numeric) for c in linear_columns):
        # without a mediator column partially_linear is linear_boosting: do not fit it twice
        cands = [c for c in cands if c != "partially_linear"] or cands
    if bad or not cands:
        raise ConfigError(
            f"auto candidates {list(candidates)}: give learner names from "
            f"{[k for k in LEARNER_KINDS if k != 'auto']} (effects.auto_candidates)"
        )
    y = np.asarray(y, dtype=np.float64)
    ids = list(unit_ids)
    n = len(y)
    rows = np.arange(n)
    if n > max_rows:
        u = stable_uniform(ids, random_state)
        rows = np.sort(np.argsort(u, kind="stable")[:max_rows])
    n_sel = len(rows)
    v = selection_folds(n_sel)
    inner = assign_folds(
        [ids[i] for i in rows],
        v,
        random_state,
        purpose="select",
        clusters=None if groups is None else np.asarray(list(groups), dtype=object)[rows],
    )
    Xs = X.iloc[rows]
    ys = y[rows]
    ws = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)[rows]
    usable = [
        k
        for k in range(v)
        if (inner == k).any()
        and (inner != k).sum() >= 2
        and (task == "regression" or len(np.unique(ys[inner != k])) == 2)
    ]
    if not usable:
        return LearnerChoice(cands[0], {}, "mse" if task == "regression" else "log_loss", n_sel, 0)
    losses: dict[str, float] = {}
    unit_loss: dict[str, np.ndarray] = {}
    for cand in cands:
        pred = np.empty(n_sel)
        held = np.zeros(n_sel, dtype=bool)
        for k in usable:
            tr, te = inner != k, inner == k
            cp = auto_params(cand, params or {})
            model = make_learner(
                cand,
                task,
                numeric=numeric,
                categorical=categorical,
                params=cp,
                random_state=random_state,
                linear_columns=linear_columns,
            )
            kw = {} if ws is None else {"model__sample_weight": ws[tr]}
            model.fit(Xs[tr], ys[tr], **kw)
            pred[te] = predict_response(model, Xs[te], task)
            held |= te
        unit_loss[cand] = _unit_loss(task, ys[held], pred[held])
        losses[cand] = _loss(task, ys[held], pred[held], None if ws is None else ws[held])
    best = min(cands, key=lambda c: (losses[c], cands.index(c)))
    wh = np.ones(int(held.sum())) if ws is None else ws[held]
    chosen = best
    for cand in cands[: cands.index(best)]:
        # one-standard-error rule on the paired held-out loss differences
        d = unit_loss[cand] - unit_loss[best]
        mean_d = float(np.average(d, weights=wh))
        se_d = float(np.sqrt(np.average((d - mean_d) ** 2, weights=wh) / max(len(d) - 1, 1)))
        if mean_d <= se_d:
            chosen = cand
            break
    metric = "mse" if task == "regression" else "log_loss"
    return LearnerChoice(chosen, losses, metric, n_sel, len(usable))
