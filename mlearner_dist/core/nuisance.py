"""Nuisance models of step 1: fit on the training folds, predict on the held-out fold.

This is the DoubleML-style seam: :func:`fit_fold_models` turns a training frame into fitted models
and :func:`predict_nuisances` turns models and any frame into the nuisance columns of the effects
table (``docs/architecture.md``). The in-memory path and the Spark backend call the same two
functions, so their results agree.

Models (t = treatment, m = mediator, x = covariates):

- ``mu_m1``, ``mu_m0``: E[M | T=t, X] per mediator (P(M=1 | T=t, X) for a binary mediator).
- ``mu_y1m``: mu_Y(1, m, x) = E[Y | T=1, M=m, X=x], fitted on the treated with M as a feature.
- ``mu_y1`` = E[Y | T=1, X], ``eta`` = E[mu_Y(1, M, X) | T=0, X] (the nested, cross-world
  regression) and ``mu_y0`` = E[Y | T=0, X] are not fitted one by one: with Z = Y for the treated
  and Z = mu_y1m(M, X) for the controls (honest: ``mu_y1m`` saw only treated rows),
  mu_y1 = m + (1 - e) tau and eta = m - e tau, where m(X) = E[Z | X] and the indirect contrast
  tau(X) = mu_y1 - eta comes from the R-learner; mu_y0 = eta - delta with the direct contrast
  delta(X) = E[Z - Y | T=0, X] regressed among the controls. Effects are contrasts estimated
  directly, so the large baseline variation of Y in X does not enter them (separate arm
  regressions would each carry their own baseline error into NIE and NDE). Without a mediator
  Z = Y and tau is the total effect. For a single binary mediator the exact formulas
  mu_y1 = mu_Y(1,1,x) P(M=1 | T=1,x) + mu_Y(1,0,x) P(M=0 | T=1,x) and eta likewise with
  P(M=1 | T=0,x) replace the R-learner.
- ``propensity``: P(T=1 | X), the known assignment probability when randomised (the treated
  share of the whole data), a classifier when observational. ``propensity_mx``: P(T=1 | M, X),
  from the mediator models with normal residuals for one continuous mediator
  (:func:`gaussian_propensity_mx`, default) or a classifier (``mediator_density: classifier``,
  and always for several mediators), the closed form of Bayes' rule from the mediator models for
  a binary one (:func:`binary_propensity_mx`).
- ``reference`` estimator only: ``mu_y0m`` = E[Y | T=0, M, X], for the paper's plug-in effects.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import Any, Literal

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from mlearner_dist.core.folds import assign_folds, stable_uniform
from mlearner_dist.core.learners import (
    AUTO_CANDIDATES,
    LEARNER_KINDS,
    ConstantModel,
    LearnerChoice,
    auto_params,
    categorical_columns,
    check_learner,
    choose_learner,
    make_learner,
    predict_response,
)
from mlearner_dist.core.roles import Roles
from mlearner_dist.core.strata import assignment_probabilities, stratum_shares
from mlearner_dist.exceptions import ConfigError, InputValidationError

__all__ = [
    "CONSTANT_EFFECT_MODELS",
    "DESIGNS",
    "EFFECT_MODELS",
    "ESTIMATORS",
    "MEDIATOR_KINDS",
    "ConstantModel",
    "FoldModels",
    "LearnerChoice",
    "NuisanceSpec",
    "auto_candidates_of",
    "binary_propensity_mx",
    "choice_key",
    "fit_fold_models",
    "gaussian_propensity_mx",
    "infer_mediator_kind",
    "mediator_column_names",
    "nuisance_columns",
    "predict_nuisances",
    "select_training_rows",
]

logger = logging.getLogger(__name__)

DESIGNS = ("randomised", "observational")
ESTIMATORS = ("nested", "reference")
MEDIATOR_KINDS = ("none", "continuous", "binary")
MEDIATOR_DENSITIES = ("gaussian", "classifier")

#: Up to this many training rows a nuisance model is fitted on one OpenMP thread.
SINGLE_THREAD_MAX_ROWS = 20_000


@dataclass(frozen=True)
class NuisanceSpec:
    """Settings of the nuisance models (the ``effects`` section of the configuration).

    Parameters
    ----------
    learner : str or scikit-learn estimator
        Learner of every nuisance model (see :func:`~mlearner_dist.core.learners.make_learner`):
        a name of :data:`~mlearner_dist.core.learners.LEARNER_KINDS` or an estimator object.
        ``auto`` (the default) chooses per nuisance model among ``auto_candidates`` by
        cross-validated loss, once, on the first training set it is fitted on (see
        :func:`fit_fold_models`).
    learner_params : mapping
        Extra parameters of the learner's estimators (for ``auto``: of the boosting candidate).
    row_budget : int
        Maximum training rows of one model. Above it, each arm keeps its ``row_budget`` units with
        the smallest :func:`~mlearner_dist.core.folds.stable_uniform` draw, and models on both arms
        keep a stratified share of ``row_budget`` rows (logged at INFO).
    random_state : int
        Seed of the learners and of the subsampling draw.
    design : {"randomised", "observational"}
        Randomised: the propensity is the treated share (known assignment). Observational: a
        cross-fitted classifier.
    estimator : {"nested", "reference"}
        ``nested`` (cross-fitted nested regression) or ``reference`` (the paper's in-sample
        plug-in).
    propensity_clip : float
        Propensities are clipped to [clip, 1 - clip] in the doubly robust scores.
    model_outcome, model_mediator, model_propensity : str or estimator, optional
        Learner of the outcome models (``mu_y1m``, the baseline, the contrasts, ``mu_y0m``), of
        the mediator models (``mu_m1``, ``mu_m0``) and of the treatment models (``propensity``,
        ``propensity_mx``); None: ``learner``.
    auto_candidates : tuple of str
        Candidates of ``auto``, simplest first.
    constant_effect_models : {"auto", "allowed", "excluded"}
        Whether ``auto`` may choose the constant model for the effect models
        (:data:`EFFECT_MODELS`: the contrasts tau and delta, whose targets are the effects
        themselves); ``auto``: excluded when randomised, allowed when observational. See
        :func:`auto_candidates_of`.
    max_density_ratio : float
        Truncation of the mediator density ratio f(M | T=0, X) / f(M | T=1, X) in the indirect
        effect's score (see :func:`~mlearner_dist.core.effects.compute_effects`); ``inf``: none.
    mediator_density : {"gaussian", "classifier"}
        How P(T=1 | M, X), hence the density ratio, is obtained for one continuous mediator:
        ``gaussian`` from the mediator models with normal residuals (:func:`gaussian_propensity_mx`;
        better conditioned: it does not ask a classifier to find a weak T signal in M), or
        ``classifier``, a classifier of T on (M, X). Several mediators always use the
        classifier; a binary mediator always the closed form.
    """

    learner: Any = "auto"
    learner_params: Mapping[str, Any] = field(default_factory=dict)
    row_budget: int = 50_000
    random_state: int = 0
    design: str = "randomised"
    estimator: str = "nested"
    propensity_clip: float = 0.01
    model_outcome: Any = None
    model_mediator: Any = None
    model_propensity: Any = None
    auto_candidates: tuple[str, ...] = AUTO_CANDIDATES
    max_density_ratio: float = 10.0
    mediator_density: str = "gaussian"
    constant_effect_models: str = "auto"

    def __post_init__(self) -> None:
        problems = []
        for name in ("learner", "model_outcome", "model_mediator", "model_propensity"):
            value = getattr(self, name)
            if value is None and name != "learner":
                continue
            problem = check_learner(value, name)
            if problem:
                problems.append(problem)
        cands = self.auto_candidates
        if (
            isinstance(cands, str)
            or not cands
            or any(c not in LEARNER_KINDS or c == "auto" for c in cands)
        ):
            problems.append(
                f"auto_candidates={cands!r}: give a list of learner names from "
                f"{[k for k in LEARNER_KINDS if k != 'auto']}"
            )
        if self.constant_effect_models not in CONSTANT_EFFECT_MODELS:
            problems.append(
                f"constant_effect_models={self.constant_effect_models!r}: choose one of "
                f"{list(CONSTANT_EFFECT_MODELS)}"
            )
        if not isinstance(self.learner_params, Mapping):
            problems.append(
                f"learner_params={self.learner_params!r}: give a mapping of parameter names"
            )
        rb = self.row_budget
        if isinstance(rb, bool) or not isinstance(rb, Integral) or rb < 10:
            problems.append(f"row_budget={rb!r}: give an integer >= 10 (rows per model)")
        if isinstance(self.random_state, bool) or not isinstance(self.random_state, Integral):
            problems.append(f"random_state={self.random_state!r}: give an integer")
        if self.design not in DESIGNS:
            problems.append(f"design={self.design!r} is unknown; choose one of {list(DESIGNS)}")
        if self.estimator not in ESTIMATORS:
            problems.append(
                f"estimator={self.estimator!r} is unknown; choose one of {list(ESTIMATORS)}"
            )
        clip = self.propensity_clip
        if isinstance(clip, bool) or not isinstance(clip, Real) or not 0 <= clip < 0.5:
            problems.append(f"propensity_clip={clip!r}: give a number in [0, 0.5)")
        if self.mediator_density not in MEDIATOR_DENSITIES:
            problems.append(
                f"mediator_density={self.mediator_density!r} is unknown; choose one of "
                f"{list(MEDIATOR_DENSITIES)}"
            )
        mdr = self.max_density_ratio
        if isinstance(mdr, bool) or not isinstance(mdr, Real) or not mdr > 1:
            problems.append(f"max_density_ratio={mdr!r}: give a number > 1 (inf: no truncation)")
        if problems:
            raise ConfigError("invalid nuisance settings: " + "; ".join(problems))

    def learner_of(self, group: str) -> Any:
        """The learner of a model group: ``outcome``, ``mediator`` or ``propensity``."""
        override = {
            "outcome": self.model_outcome,
            "mediator": self.model_mediator,
            "propensity": self.model_propensity,
        }[group]
        return self.learner if override is None else override


@dataclass
class FoldModels:
    """The nuisance models fitted on one training set (a fold's complement, or all data).

    Attributes
    ----------
    mediator_kind : {"none", "continuous", "binary"}
    numeric, categorical : list of str
        Covariates as the learners see them; the stratum columns (``roles.strata``) that are not
        covariates are categorical features too.
    mediators : tuple of str
    mu_m1, mu_m0 : dict of str to fitted estimator
        One model per mediator: E[M | T=t, X] (P(M=1 | T=t, X) for a binary mediator).
    mu_y1m : fitted estimator or None
        mu_Y(1, m, x), on the treated with the mediators as features.
    baseline : list of fitted estimators
        m(X) = E[Z | X] on each half of the training rows (averaged when predicting); empty for a
        binary mediator.
    contrast : fitted estimator or None
        tau(X) = E[Z | T=1, X] - E[Z | T=0, X] (R-learner); None for a binary mediator.
    direct : fitted estimator or None
        delta(X) = E[mu_Y(1, M, X) - Y | T=0, X]; None without mediator.
    mu_y0m : fitted estimator or None
        E[Y | T=0, M, X], ``reference`` estimator only.
    propensity : fitted estimator or ConstantModel
        P(T=1 | X): a constant (the assignment probability) unless observational.
    propensity_mx : fitted estimator or None
        P(T=1 | M, X) (continuous mediator; None for a binary one, whose P(T=1 | M, X) follows
        from the mediator models).
    stratum_probabilities : dict of tuple to float
        Randomised design with strata: the known P(T=1) of each stratum (of the columns
        ``strata``); ``propensity`` is then not used for prediction. Empty otherwise.
    strata : tuple of str
        The stratum columns ``stratum_probabilities`` is keyed by.
    mix_share : float
        Treated share of the rows ``baseline`` was fitted on (randomised composition weight).
    observational : bool
        Whether ``propensity`` is a fitted classifier (then it is the composition weight).
    n_train : dict of str to int
        Training rows of each model.
    mediator_sd : (float, float) or None
        Residual standard deviations (sigma_0, sigma_1) of the mediator models when P(T=1 | M, X)
        comes from the Gaussian mediator density, else None.
    choices : dict of str to LearnerChoice
        The ``auto`` learner's choice per model (by :func:`choice_key`): made on this training
        set, or passed in from the first fold.
    """

    mediator_kind: str
    numeric: list[str]
    categorical: list[str]
    mediators: tuple[str, ...]
    mu_m1: dict[str, Any] = field(default_factory=dict)
    mu_m0: dict[str, Any] = field(default_factory=dict)
    mu_y1m: Any = None
    baseline: list[Any] = field(default_factory=list)
    contrast: Any = None
    direct: Any = None
    mu_y0m: Any = None
    propensity: Any = None
    stratum_probabilities: dict[tuple[object, ...], float] = field(default_factory=dict)
    strata: tuple[str, ...] = ()
    propensity_mx: Any = None
    mix_share: float = 0.5
    observational: bool = False
    n_train: dict[str, int] = field(default_factory=dict)
    choices: dict[str, LearnerChoice] = field(default_factory=dict)
    mediator_sd: tuple[float, float] | None = None


def infer_mediator_kind(
    frame: pd.DataFrame, roles: Roles
) -> Literal["none", "continuous", "binary"]:
    """``binary`` for one mediator whose values are all 0 or 1, ``none`` without, else continuous.

    Several mediators are always one joint (``continuous``) mediator. Decide on the whole data, not
    per fold, so every fold uses the same models.

    Parameters
    ----------
    frame : DataFrame
        Holds the mediator columns.
    roles : Roles

    Returns
    -------
    str
    """
    if not roles.has_mediator:
        return "none"
    if len(roles.mediators) == 1:
        values = pd.to_numeric(frame[roles.mediators[0]], errors="coerce").to_numpy(dtype=float)
        if len(values) and np.isin(values, (0.0, 1.0)).all():
            return "binary"
    return "continuous"


def mediator_column_names(roles: Roles) -> list[tuple[str, str, str]]:
    """``(mediator, mu_m1 column, mu_m0 column)`` per mediator (suffixed when several)."""
    if len(roles.mediators) == 1:
        return [(roles.mediators[0], "mu_m1", "mu_m0")]
    return [(m, f"mu_m1__{m}", f"mu_m0__{m}") for m in roles.mediators]


def nuisance_columns(roles: Roles, estimator: str = "nested") -> list[str]:
    """The nuisance columns :func:`predict_nuisances` returns after ``unit_id``, in order.

    Parameters
    ----------
    roles : Roles
    estimator : {"nested", "reference"}
        ``reference`` adds the plug-in predictions ``mu_y1_m1`` = mu_Y(1, m1(x), x),
        ``mu_y1_m0`` = mu_Y(1, m0(x), x) and ``mu_y0_m0`` = mu_Y(0, m0(x), x).

    Returns
    -------
    list of str
    """
    cols = ["mu_y1", "mu_y0"]
    if roles.has_mediator:
        for _, c1, c0 in mediator_column_names(roles):
            cols += [c1, c0]
        cols += ["mu_y1m", "eta"]
    cols.append("propensity")
    if roles.has_mediator:
        cols.append("propensity_mx")
        if estimator == "reference":
            cols += ["mu_y1_m1", "mu_y1_m0", "mu_y0_m0"]
    return cols


def _features(frame: pd.DataFrame, numeric: list[str], categorical: list[str]) -> pd.DataFrame:
    """Numeric columns as float64, categorical ones as strings (same in pandas and Spark)."""
    data = {c: frame[c].to_numpy(dtype=np.float64) for c in numeric}
    data.update({c: frame[c].astype(str).to_numpy(dtype=object) for c in categorical})
    return pd.DataFrame(data, index=frame.index)


def select_training_rows(
    train: pd.DataFrame,
    roles: Roles,
    *,
    row_budget: int,
    seed: int,
    arm_counts: tuple[int, int] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, tuple[int, int]]:
    """Deterministic, stratified training subsets within the row budget.

    Within arm a (T = a) the units are ordered by (u, unit_id) with
    ``u = stable_uniform(unit_id, seed)`` and the first ``min(n_a, row_budget)`` are kept. Models on
    both arms keep the first ``q_a`` of each arm, ``q_1 = round(row_budget n_1 / n)``,
    ``q_0 = row_budget - q_1``, when ``n > row_budget`` (the treated share is preserved). Each
    subset is then sorted by unit_id, so the fit does not depend on the input order. The Spark
    backend collects exactly the same rows (the smallest ``u`` per arm) and passes the full arm
    sizes in ``arm_counts``.

    Parameters
    ----------
    train : DataFrame
        Training rows (all of them, or each arm's smallest-``u`` rows when ``arm_counts`` is given).
    roles : Roles
    row_budget : int
    seed : int
        Seed of the ``stable_uniform`` draw.
    arm_counts : (int, int), optional
        Full numbers of control and treated training units (default: counted in ``train``).

    Returns
    -------
    controls, treated, pooled : DataFrame
        Training rows of the models on T = 0, on T = 1, and on both arms.
    arm_counts : (int, int)
        (n_0, n_1) of the full training set.
    """
    t = train[roles.treatment].to_numpy(dtype=np.float64)
    u = stable_uniform(train[roles.unit_id], seed)
    keyed = train.assign(__u=u)
    local = (int((t == 0).sum()), int((t == 1).sum()))
    counts = local if arm_counts is None else (int(arm_counts[0]), int(arm_counts[1]))
    arms = []
    for a in (0, 1):
        sub = keyed[t == a].sort_values(["__u", roles.unit_id], kind="mergesort")
        keep = min(len(sub), row_budget)
        if counts[a] > row_budget:
            logger.info(
                "row budget: arm T=%d keeps %d of %d training units (row_budget=%d)",
                a,
                keep,
                counts[a],
                row_budget,
            )
        arms.append(sub.iloc[:keep])
    n = counts[0] + counts[1]
    if n > row_budget:
        q1 = round(row_budget * counts[1] / n)
        q1 = min(max(q1, 1), len(arms[1]))
        q0 = min(row_budget - q1, len(arms[0]))
        pooled = pd.concat([arms[0].iloc[:q0], arms[1].iloc[:q1]])
        logger.info(
            "row budget: models on both arms keep %d controls and %d treated of %d units",
            q0,
            q1,
            n,
        )
    else:
        pooled = pd.concat(arms)

    def _order(df: pd.DataFrame) -> pd.DataFrame:
        return df.drop(columns="__u").sort_values(roles.unit_id, kind="mergesort")

    return _order(arms[0]), _order(arms[1]), _order(pooled), counts


#: The model group (for ``model_outcome`` / ``model_mediator`` / ``model_propensity``) of a model.
def _group(key: str) -> str:
    if key.startswith("mu_m"):
        return "mediator"
    if key.startswith("propensity"):
        return "propensity"
    return "outcome"


def choice_key(name: str) -> str:
    """The model a fitted model's choice is shared with: ``baseline_1`` -> ``baseline``."""
    head, _, tail = name.rpartition("_")
    return head if head and tail.isdigit() else name


#: The models whose targets are effects, not nuisances: the indirect (or, without a mediator,
#: total) contrast tau and the direct contrast delta of :func:`fit_fold_models`.
EFFECT_MODELS = ("contrast", "direct")
#: Values of ``NuisanceSpec.constant_effect_models`` (``effects.constant_effect_models``).
CONSTANT_EFFECT_MODELS = ("auto", "allowed", "excluded")


def auto_candidates_of(key: str, spec: NuisanceSpec) -> tuple[str, ...]:
    """The ``auto`` candidates of model ``key``: the effect models may lose the constant.

    For the nuisances (outcome, mediator and treatment models) the constant mean model is a
    candidate like any other: a covariate that does not predict should not be fitted. For the
    effect models (:data:`EFFECT_MODELS`) it is dropped when ``spec.constant_effect_models`` is
    ``excluded``, or ``auto`` in a randomised design.

    Why, when randomised: the effect models' pseudo-outcomes carry the outcome's noise, which
    at n = 1,000-5,000 is 20-60 times the variance of a 0/1 subgroup effect, so the
    cross-validated loss cannot tell a heterogeneous effect from a constant one and the
    one-standard-error rule chose the constant. A constant tau gives every unit the same
    plug-in effect and leaves the embedding, the clustering and the profile (steps 2-4) nothing
    to find: on mediator-slope (n = 5,000, noise sd 1) the decision was declared in 1 of 3
    replicates, on a noise covariate, with the constant allowed and in 3 of 3 on X1 and X2
    without it. Why not when observational: there a varying effect model also follows the
    confounder (the fitted baseline's and propensity's errors), the selection then proposes
    partitions along it, where overlap is poorest and the scores most skewed; on
    confounded-null (n = 1,000, sd 1) the total target was declared in 5 of the first 37
    replicates without the constant against 2 of the same 37 with it (13 of 200 with it, within
    the bound). The Type I error of a randomised design does not rest on the choice: the
    calibration repeats it in every replicate. If every candidate is the constant, it stays.
    """
    cands = tuple(spec.auto_candidates)
    mode = spec.constant_effect_models
    if mode == "auto":
        mode = "allowed" if spec.design == "observational" else "excluded"
    if mode == "allowed" or key not in EFFECT_MODELS:
        return cands
    return tuple(c for c in cands if c != "constant") or cands


def _fit(
    spec: NuisanceSpec,
    name: str,
    task: str,
    X: pd.DataFrame,
    y: np.ndarray,
    numeric: list[str],
    categorical: list[str],
    unit_ids: Any,
    choices: dict[str, LearnerChoice],
    sample_weight: np.ndarray | None = None,
    groups: Any = None,
    linear_columns: tuple[str, ...] = (),
) -> Any:
    if len(y) == 0:
        raise InputValidationError(["a nuisance model has no training rows; use fewer folds"])
    if task == "classification" and len(np.unique(y)) < 2:
        return ConstantModel(float(y[0]))
    if task == "regression" and np.ptp(y) == 0:
        return ConstantModel(float(y[0]))
    if not numeric and not categorical:
        if task == "regression" and sample_weight is not None:
            return ConstantModel(float(np.average(y, weights=sample_weight)))
        return ConstantModel(float(np.mean(y)))
    key = choice_key(name)
    learner = spec.learner_of(_group(key))
    # small fits: OpenMP start-up and contention for shared cores cost more than they save
    # (histogram boosting on 700 rows took 16 s per fold with two busy cores, < 1 s alone)
    limit = len(y) <= SINGLE_THREAD_MAX_ROWS
    with threadpool_limits(limits=1, user_api="openmp") if limit else _no_limit():
        if isinstance(learner, str) and learner == "auto":
            if key not in choices:
                choices[key] = choose_learner(
                    task,
                    X,
                    y,
                    unit_ids=unit_ids,
                    numeric=numeric,
                    categorical=categorical,
                    candidates=auto_candidates_of(key, spec),
                    params=spec.learner_params,
                    sample_weight=sample_weight,
                    random_state=int(spec.random_state),
                    groups=groups,
                    linear_columns=linear_columns,
                )
                logger.info(
                    "auto learner: %s -> %s (cv %s %s)",
                    key,
                    choices[key].chosen,
                    choices[key].metric,
                    {k: round(v, 6) for k, v in choices[key].losses.items()},
                )
            learner = choices[key].chosen
            params = auto_params(learner, spec.learner_params)
        else:
            params = spec.learner_params
        model = make_learner(
            learner,
            task,
            numeric=numeric,
            categorical=categorical,
            params=params,
            random_state=int(spec.random_state),
            linear_columns=linear_columns,
        )
        fit_kw = {} if sample_weight is None else {"model__sample_weight": sample_weight}
        return model.fit(X, y, **fit_kw)


class _no_limit:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _check_probability(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, Real) or not 0.0 < float(value) < 1.0:
        raise ConfigError(f"{name}={value!r}: give the probability of treatment, in (0, 1)")
    return float(value)


def fit_fold_models(
    train: pd.DataFrame,
    roles: Roles,
    spec: NuisanceSpec,
    *,
    mediator_kind: str,
    arm_counts: tuple[int, int] | None = None,
    assignment_probability: float | None = None,
    stratum_probabilities: Mapping[tuple[object, ...], float] | None = None,
    choices: Mapping[str, LearnerChoice] | None = None,
    on_model: Callable[[str, str, int, float], None] | None = None,
) -> FoldModels:
    """Fit every nuisance model on one training set.

    The arm-level outcome predictions come from one baseline and two contrasts rather than from
    separate regressions on each arm, so that their errors cancel in the effects:

    - Z = Y for the treated and Z = mu_Y(1, M, X) (``mu_y1m``, which saw only treated rows) for
      the controls, so E[Z | T=1, X] = mu_y1(X) and E[Z | T=0, X] = eta(X).
    - The indirect contrast tau(X) = mu_y1(X) - eta(X) by the R-learner (Nie and Wager 2021):
      m(X) = E[Z | X] and, when observational, e(X) are fitted on two halves of the training rows
      (a hash of the unit id) and predict the other half; then tau minimises
      sum_i (T_i - e_i)^2 ((Z_i - m_i) / (T_i - e_i) - tau(X_i))^2. Errors of m and e enter
      only at second order.
    - The direct contrast delta(X) = eta(X) - mu_y0(X) = E[Z - Y | T=0, X], one regression among
      the controls, where both Z and Y are observed on the same unit.

    Without a mediator Z = Y and tau is the total effect. With a single binary mediator mu_y1 and
    eta are the exact compositions of ``mu_y1m`` with P(M=1 | T=t, X); the direct contrast is as
    above. :func:`predict_nuisances` composes mu_y1 = m + (1 - e) tau, eta = m - e tau,
    mu_y0 = eta - delta.

    The mediator density ratio of the indirect effect's score, f(M | T=0, X) / f(M | T=1, X),
    comes from P(T=1 | M, X) (``propensity_mx``). For one continuous mediator with
    ``mediator_density="gaussian"`` it is not fitted: the residual sds of the mediator models are
    stored and :func:`predict_nuisances` composes normal densities; with several mediators (or
    ``classifier``) it is a classifier on both arms; for a binary mediator it is the closed form
    of the mediator models (Bayes' rule).

    Learner ``auto`` (for any model group): each model not in ``choices`` is chosen here by
    :func:`~mlearner_dist.core.learners.choose_learner` on this training set and recorded in
    ``FoldModels.choices``; pass those choices to the other folds so the choice is made once per
    nuisance model (the in-memory and Spark paths both decide on fold 0).

    Parameters
    ----------
    train : DataFrame of shape (n_train, ...)
        Training rows with the columns named by ``roles`` (validated: T in {0, 1}, no missing).
    roles : Roles
    spec : NuisanceSpec
    mediator_kind : {"none", "continuous", "binary"}
        From :func:`infer_mediator_kind` on the whole data.
    arm_counts : (int, int), optional
        Full (n_0, n_1) when ``train`` was already cut to the row budget (Spark backend).
    assignment_probability : float, optional
        The known probability of treatment of a randomised design (the treated share of the
        whole data for complete randomisation); the ``propensity`` predicted for every unit.
        Default: the treated share of the training rows. Ignored when observational.
    stratum_probabilities : mapping of tuple to float, optional
        With ``roles.strata`` (randomised design): the known probability of treatment of each
        stratum (its treated share in the whole data, from
        :func:`~mlearner_dist.core.strata.stratum_shares`); the ``propensity`` predicted for a
        unit is its stratum's. Default: the stratum shares of the training rows. Ignored
        without strata or when observational.
    choices : mapping of str to LearnerChoice, optional
        Choices of the ``auto`` learner made on another training set (reused, not re-made).
    on_model : callable, optional
        ``on_model(name, group, n_rows, seconds)`` after each model is fitted (``group`` one of
        ``outcome``, ``mediator``, ``propensity``), e.g. a
        :class:`~mlearner_dist.core.fold_progress.FoldTally` for the progress lines.

    Returns
    -------
    FoldModels

    Raises
    ------
    ConfigError
        ``mediator_kind`` is unknown or does not fit the roles, or ``assignment_probability`` is
        not in (0, 1).
    InputValidationError
        An arm has no training rows.
    """
    if mediator_kind not in MEDIATOR_KINDS:
        raise ConfigError(
            f"mediator_kind={mediator_kind!r} is unknown; choose one of {list(MEDIATOR_KINDS)}"
        )
    if (mediator_kind == "none") == roles.has_mediator:
        raise ConfigError(
            f"mediator_kind={mediator_kind!r} does not fit roles.mediators={list(roles.mediators)}"
        )
    if mediator_kind == "binary" and len(roles.mediators) != 1:
        raise ConfigError("mediator_kind='binary' needs exactly one mediator")
    known = _check_probability("assignment_probability", assignment_probability)
    controls, treated, pooled, counts = select_training_rows(
        train,
        roles,
        row_budget=int(spec.row_budget),
        seed=int(spec.random_state),
        arm_counts=arm_counts,
    )
    if len(controls) == 0 or len(treated) == 0:
        raise InputValidationError(
            [
                f"treatment column {roles.treatment!r}: the training rows hold "
                f"{len(treated)} treated and {len(controls)} controls; both arms are needed "
                "(use fewer folds or more data)"
            ]
        )
    covs = list(roles.covariates)
    # the stratification factors enter every nuisance model as categorical features: the
    # analysis adjusts for the factors of the randomisation (Kahan and Morris 2012), so an
    # outcome that differs by stratum does not leave the stratum in the scores' residuals
    by_design = [s for s in roles.strata if s not in covs]
    categorical = categorical_columns(train, covs) + by_design
    numeric = [c for c in covs if c not in categorical]
    meds = list(roles.mediators)
    fm = FoldModels(mediator_kind, numeric, categorical, tuple(meds))
    fm.choices = dict(choices or {})
    Y, T = roles.outcome, roles.treatment
    observational = spec.design == "observational" and bool(covs)

    def fit(
        name: str,
        task: str,
        rows: pd.DataFrame,
        y: np.ndarray,
        with_m: bool,
        weight: np.ndarray | None = None,
    ) -> Any:
        num = numeric + meds if with_m else numeric
        fm.n_train[name] = len(rows)
        if roles.weight:
            weight = _with_sampling_weights(rows[roles.weight].to_numpy(np.float64), weight)
        started = time.perf_counter()
        model = _fit(
            spec,
            name,
            task,
            _features(rows, num, categorical),
            y,
            num,
            categorical,
            rows[roles.unit_id].to_numpy(),
            fm.choices,
            weight,
            rows[roles.cluster].to_numpy() if roles.cluster else None,
            tuple(meds) if with_m else (),
        )
        if on_model is not None:
            on_model(name, _group(choice_key(name)), len(rows), time.perf_counter() - started)
        return model

    def target(rows: pd.DataFrame, col: str) -> np.ndarray:
        return rows[col].to_numpy(dtype=np.float64)

    m_task = "classification" if mediator_kind == "binary" else "regression"
    for m in meds:
        fm.mu_m1[m] = fit(f"mu_m1__{m}", m_task, treated, target(treated, m), False)
        fm.mu_m0[m] = fit(f"mu_m0__{m}", m_task, controls, target(controls, m), False)
    if meds:
        fm.mu_y1m = fit("mu_y1m", "regression", treated, target(treated, Y), True)
        # honest: mu_y1m never saw a control
        g_controls = predict_response(
            fm.mu_y1m, _features(controls, numeric + meds, categorical), "regression"
        )
        fm.direct = fit("direct", "regression", controls, g_controls - target(controls, Y), False)
        if spec.estimator == "reference":
            fm.mu_y0m = fit("mu_y0m", "regression", controls, target(controls, Y), True)
        gaussian = (
            mediator_kind == "continuous"
            and len(meds) == 1
            and spec.mediator_density == "gaussian"
        )
        if gaussian:
            fm.mediator_sd = (
                _residual_sd(fm, "mu_m0", meds[0], controls),
                _residual_sd(fm, "mu_m1", meds[0], treated),
            )
        elif mediator_kind != "binary":
            fm.propensity_mx = fit(
                "propensity_mx", "classification", pooled, target(pooled, T), True
            )
    fm.observational = observational
    if observational:
        fm.propensity = fit("propensity", "classification", pooled, target(pooled, T), False)
    else:
        share = counts[1] / (counts[0] + counts[1]) if known is None else known
        fm.propensity = ConstantModel(share)
        if roles.strata:
            fm.strata = tuple(roles.strata)
            fm.stratum_probabilities = {
                k: float(_check_probability(f"stratum {k!r} probability", v))
                for k, v in (
                    stratum_probabilities
                    if stratum_probabilities is not None
                    else stratum_shares(train, T, roles.strata)
                ).items()
            }
    if mediator_kind != "binary":
        _fit_contrast(fm, spec, pooled, roles, observational, fit)
    return fm


def _with_sampling_weights(sampling: np.ndarray, weight: np.ndarray | None) -> np.ndarray | None:
    """A model's sample weights with the analysis (sampling) weights of its training rows.

    The sampling weights are rescaled to mean 1 on the rows (so that a learner's regularisation
    sees the same amount of data as without weights) and multiply the model's own weights (the
    R-learner's ``(T - e)^2``). Constant sampling weights are no weights: the model is then
    fitted exactly as without them.
    """
    if sampling.size == 0 or np.ptp(sampling) == 0:
        return weight
    scaled = sampling / float(sampling.mean())
    return scaled if weight is None else weight * scaled


def _residual_sd(fm: FoldModels, which: str, m: str, rows: pd.DataFrame) -> float:
    """Residual sd of a mediator model: its cross-validated MSE when ``auto`` chose it, else the
    training residuals' root mean square (floored at 1e-6 times the mediator's sd, and 1e-12)."""
    model = (fm.mu_m1 if which == "mu_m1" else fm.mu_m0)[m]
    y = rows[m].to_numpy(dtype=np.float64)
    choice = fm.choices.get(f"{which}__{m}")
    if choice is not None and choice.losses:
        mse = choice.losses[choice.chosen]
    else:
        pred = predict_response(model, _features(rows, fm.numeric, fm.categorical), "regression")
        mse = float(np.mean((y - pred) ** 2))
    floor = max(1e-6 * float(np.std(y)), 1e-12)
    return max(float(np.sqrt(mse)), floor)


def gaussian_propensity_mx(
    m: np.ndarray,
    mu1: np.ndarray,
    mu0: np.ndarray,
    sd: tuple[float, float],
    e: np.ndarray,
) -> np.ndarray:
    """P(T=1 | M, X) from normal mediator densities M | T=t, X ~ N(mu_t(X), sigma_t^2).

    With log f_t = -log sigma_t - (m - mu_t)^2 / (2 sigma_t^2),

        P(T=1 | M=m, X) = expit(log(e / (1 - e)) + log f_1 - log f_0),

    so the score's density ratio ((1 - r) / r) (e / (1 - e)) is f_0 / f_1 (before clipping).

    Parameters
    ----------
    m, mu1, mu0, e : ndarray of shape (n,)
        Observed mediator, the mediator models' predictions, P(T=1 | X).
    sd : (sigma_0, sigma_1)

    Returns
    -------
    ndarray of shape (n,)
    """
    s0, s1 = float(sd[0]), float(sd[1])
    log_f1 = -np.log(s1) - 0.5 * ((m - mu1) / s1) ** 2
    log_f0 = -np.log(s0) - 0.5 * ((m - mu0) / s0) ** 2
    e = np.clip(e, 1e-12, 1 - 1e-12)
    logit = np.log(e) - np.log1p(-e) + log_f1 - log_f0
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * logit)), dtype=np.float64)


def _fit_contrast(
    fm: FoldModels,
    spec: NuisanceSpec,
    pooled: pd.DataFrame,
    roles: Roles,
    observational: bool,
    fit: Any,
) -> None:
    """R-learner of tau(X) = E[Z | T=1, X] - E[Z | T=0, X] on the pooled training rows."""
    t = pooled[roles.treatment].to_numpy(dtype=np.float64)
    z = pooled[roles.outcome].to_numpy(dtype=np.float64).copy()
    numeric, categorical, meds = fm.numeric, fm.categorical, list(fm.mediators)
    if meds:
        ctrl = t == 0
        z[ctrl] = predict_response(
            fm.mu_y1m, _features(pooled[ctrl], numeric + meds, categorical), "regression"
        )
    fm.mix_share = float(t.mean())
    if not numeric and not categorical:
        # no covariates: tau is the difference of the arm means of Z (the OLS slope on T),
        # weighted by the analysis weights when there are any
        if roles.weight:
            w = pooled[roles.weight].to_numpy(dtype=np.float64)
            fm.baseline = [ConstantModel(float(np.average(z, weights=w)))]
            d1 = np.average(z[t == 1], weights=w[t == 1])
            fm.contrast = ConstantModel(float(d1 - np.average(z[t == 0], weights=w[t == 0])))
        else:
            fm.baseline = [ConstantModel(float(z.mean()))]
            fm.contrast = ConstantModel(float(z[t == 1].mean() - z[t == 0].mean()))
        fm.n_train.update(baseline=len(z), contrast=len(z))
        return
    # with clusters the two halves hold whole clusters (no baseline predicts its own cluster)
    half = assign_folds(
        pooled[roles.unit_id],
        2,
        int(spec.random_state),
        purpose="inner",
        clusters=pooled[roles.cluster].to_numpy() if roles.cluster else None,
    )
    m_hat = np.empty(len(z))
    # randomised: the known assignment probability (per stratum with strata, which are then
    # features of the baseline too), else fitted below
    e_hat = (
        assignment_probabilities(pooled, fm.strata, fm.stratum_probabilities)
        if fm.stratum_probabilities and not observational
        else np.full(len(z), fm.mix_share)
    )
    fm.baseline = []
    splits = [(half != h, half == h) for h in (0, 1)]
    if any(not fit_rows.any() or not pred_rows.any() for fit_rows, pred_rows in splits):
        splits = [(np.ones(len(z), dtype=bool), np.ones(len(z), dtype=bool))]
    X = _features(pooled, numeric, categorical)
    for h, (fit_rows, pred_rows) in enumerate(splits):
        part = pooled[fit_rows]
        model = fit(f"baseline_{h}", "regression", part, z[fit_rows], False)
        fm.baseline.append(model)
        m_hat[pred_rows] = predict_response(model, X[pred_rows], "regression")
        if observational:
            prop = fit(f"propensity_{h}", "classification", part, t[fit_rows], False)
            e_hat[pred_rows] = predict_response(prop, X[pred_rows], "classification")
    clip = max(float(spec.propensity_clip), 1e-3)
    e_hat = np.clip(e_hat, clip, 1.0 - clip)
    resid_t = t - e_hat
    fm.contrast = fit("contrast", "regression", pooled, (z - m_hat) / resid_t, False, resid_t**2)


def binary_propensity_mx(
    m: np.ndarray, p1: np.ndarray, p0: np.ndarray, e: np.ndarray
) -> np.ndarray:
    """P(T=1 | M, X) for a binary mediator, from the mediator models by Bayes' rule.

    With p_t = P(M=1 | T=t, X) and e = P(T=1 | X), the probability of the observed m under arm
    t is q_t = p_t^m (1 - p_t)^(1 - m), and

        P(T=1 | M=m, X) = e q_1 / (e q_1 + (1 - e) q_0),

    so the score's density ratio (1 - r) / r * e / (1 - e) is exactly q_0 / q_1. Where both
    q_t are 0 (a degenerate mediator model) the result is e (ratio 1).

    Parameters
    ----------
    m : ndarray of shape (n,)
        Observed mediator, 0 or 1.
    p1, p0, e : ndarray of shape (n,)

    Returns
    -------
    ndarray of shape (n,)
    """
    q1 = np.where(m == 1.0, p1, 1.0 - p1)
    q0 = np.where(m == 1.0, p0, 1.0 - p0)
    num = e * q1
    den = num + (1.0 - e) * q0
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(den > 0, num / np.where(den > 0, den, 1.0), e)
    return np.asarray(r, dtype=np.float64)


def predict_nuisances(models: FoldModels, frame: pd.DataFrame, roles: Roles) -> pd.DataFrame:
    """Nuisance predictions for every row of ``frame`` from one set of fitted models.

    Parameters
    ----------
    models : FoldModels
        From :func:`fit_fold_models` (on rows that exclude ``frame`` when cross-fitting).
    frame : DataFrame of shape (n, ...)
        Rows to predict, with the columns named by ``roles``.
    roles : Roles

    Returns
    -------
    DataFrame of shape (n, 1 + n_nuisance)
        ``unit_id`` then :func:`nuisance_columns` (the reference plug-in columns when the models
        include ``mu_y0m``), float64, in the row order of ``frame``.
    """
    num, cat, meds = models.numeric, models.categorical, list(models.mediators)
    missing = [c for c in (roles.unit_id, *num, *cat, *meds) if c not in frame.columns]
    if missing:
        raise InputValidationError(
            [f"column {c!r} is needed for prediction but absent" for c in missing]
        )
    X = _features(frame, num, cat)
    out: dict[str, Any] = {"unit_id": frame[roles.unit_id].to_numpy()}

    def pred(model: Any, data: pd.DataFrame, task: str = "regression") -> np.ndarray:
        return predict_response(model, data, task)

    m_task = "classification" if models.mediator_kind == "binary" else "regression"
    m1 = {m: pred(models.mu_m1[m], X, m_task) for m in meds}
    m0 = {m: pred(models.mu_m0[m], X, m_task) for m in meds}
    if models.stratum_probabilities and not models.observational:
        propensity = assignment_probabilities(
            frame, models.strata, models.stratum_probabilities
        )
    else:
        propensity = pred(models.propensity, X, "classification")
    if models.mediator_kind == "binary":
        m = meds[0]
        at1 = _features(frame.assign(**{m: 1.0}), num + meds, cat)
        at0 = _features(frame.assign(**{m: 0.0}), num + meds, cat)
        mu11, mu10 = pred(models.mu_y1m, at1), pred(models.mu_y1m, at0)
        mu_y1 = mu11 * m1[m] + mu10 * (1.0 - m1[m])
        eta = mu11 * m0[m] + mu10 * (1.0 - m0[m])
    else:
        # the arm mix the baseline was fitted on: e(X) when observational, the stratum's
        # assignment probability with strata (features of the baseline), else the pooled share
        mix = (
            propensity
            if models.observational or models.stratum_probabilities
            else models.mix_share
        )
        base = np.mean([pred(b, X) for b in models.baseline], axis=0)
        tau = pred(models.contrast, X)
        mu_y1 = base + (1.0 - mix) * tau
        eta = base - mix * tau
    out["mu_y1"] = mu_y1
    out["mu_y0"] = eta - pred(models.direct, X) if meds else eta
    if meds:
        for m, c1, c0 in mediator_column_names(roles):
            out[c1], out[c0] = m1[m], m0[m]
        XM = _features(frame, num + meds, cat)
        out["mu_y1m"] = pred(models.mu_y1m, XM)
        out["eta"] = eta
    out["propensity"] = propensity
    if meds and models.mediator_kind == "binary":
        out["propensity_mx"] = binary_propensity_mx(
            frame[meds[0]].to_numpy(dtype=np.float64), m1[meds[0]], m0[meds[0]], propensity
        )
    elif meds and models.mediator_sd is not None:
        out["propensity_mx"] = gaussian_propensity_mx(
            frame[meds[0]].to_numpy(dtype=np.float64),
            m1[meds[0]],
            m0[meds[0]],
            models.mediator_sd,
            propensity,
        )
    elif meds:
        out["propensity_mx"] = pred(models.propensity_mx, XM, "classification")
    if meds and models.mu_y0m is not None:
        plug1 = _features(frame.assign(**m1), num + meds, cat)
        plug0 = _features(frame.assign(**m0), num + meds, cat)
        out["mu_y1_m1"] = pred(models.mu_y1m, plug1)
        out["mu_y1_m0"] = pred(models.mu_y1m, plug0)
        out["mu_y0_m0"] = pred(models.mu_y0m, plug0)
    return pd.DataFrame(out)
