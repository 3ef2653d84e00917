"""The in-memory M-learner: every step of the method on a pandas frame.

This is the reference composition of the core functions. The distributed pipeline
(:mod:`mlearner_dist.pipeline`) runs the same steps with Spark and Dask at the edges, and the null
calibration re-runs :meth:`MLearner.select` on each null replicate, so the threshold accounts for
every data-driven choice the selection makes.
"""

from __future__ import annotations

import functools
import logging
import time
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from mlearner_dist.core import calibration as cal
from mlearner_dist.core.clustering import kmeans_for_k
from mlearner_dist.core.effects import cross_fit_effects
from mlearner_dist.core.embedding import effect_matrix, embed, unit_keys
from mlearner_dist.core.nuisance import NuisanceSpec
from mlearner_dist.core.roles import Roles
from mlearner_dist.core.selection import (
    EFFECTS,
    ProfileSettings,
    Selection,
    choose_profile,
    decision_pvalue,
    resolve_effect_names,
    tree_pvalues,
)
from mlearner_dist.core.sensitivity import sensitivity_analysis
from mlearner_dist.core.subgroup_effects import (
    adjusted_subgroup_effects,
    proportion_mediated,
    unadjusted_subgroup_effects,
)
from mlearner_dist.core.validation import validate_frame
from mlearner_dist.exceptions import ConfigError

logger = logging.getLogger(__name__)

__all__ = [
    "EFFECTS",
    "MLearner",
    "Selection",
    "average_effects",
    "covariate_matrix",
    "merge_subgroup_effects",
    "split_calibration",
    "subgroup_table",
]


class MLearner(BaseEstimator):
    """The M-learner on an in-memory pandas frame.

    A scikit-learn estimator: ``get_params`` / ``set_params`` / ``clone`` work, ``__init__`` only
    stores its arguments, every argument is checked by ``fit`` before any work, and fitted state
    ends in ``_``. Parameters mirror the configuration sections and default to the values of
    ``conf/base.yaml`` (a test keeps them equal); :func:`mlearner_dist.config.estimator_params`
    turns a configuration into these keyword arguments.

    Parameters
    ----------
    n_folds, learner, learner_params, estimator, row_budget, propensity_clip, auto_candidates,
    max_density_ratio, mediator_density, design
        Step 1, the ``effects:`` section (and ``design``); ``learner`` may also be a
        scikit-learn estimator object.
    embed_effects, scaling, exact_max_n, n_landmarks, perplexity, n_iter, kernel_power,
    grid_size, n_jobs
        Step 2, the ``embed:`` section.
    k_values, n_init, max_iter, cluster_on
        Step 3, the ``cluster:`` section (``k_values`` = k_min .. k_max).
    criteria, min_split_fractions, complexity, cv_folds, tree_choice, max_rows, test_method
        Step 4, the ``profile:`` and ``test:`` sections.
    calibration, alpha, n_replicates, threshold, null_max_n
        The ``calibration:`` section.
    n_bootstrap, level, min_subgroup
        Subgroup effects (``subgroups:``, ``validation.min_subgroup``).
    sensitivity, sensitivity_bootstrap, sensitivity_max_rows
        The M-Y confounding sensitivity curves (``sensitivity:`` section; one mediator only).
    random_state : int
        One seed for folds, learners, t-SNE, K-means, trees and null replicates.

    Attributes
    ----------
    effects_ : DataFrame
        Per-unit indirect, direct, total effects, nuisance predictions and scores, one row per
        unit in unit-id order.
    selection_ : Selection
        Embedding, clusters, profile trees, p-values and the chosen configuration.
    p_leaf_ : float
        The decision statistic (the mediator test with a mediator, else the outcome test).
    threshold_ : float
        Calibrated threshold; heterogeneity is declared when ``p_leaf_ < threshold_``.
    declared_ : bool
    calibration_ : dict
        Mode, alpha, replicates, the null p_leaf sample and the Monte Carlo p-value.
    subgroups_ : list of dict
        Rule, n, adjusted and unadjusted effects with intervals, per leaf of the chosen tree.
    average_effects_ : dict
    sensitivity_ : dict or None
        ACME as a function of the M-Y error correlation, whole sample and per subgroup
        (:mod:`mlearner_dist.core.sensitivity`); None without exactly one mediator.
    """

    def __init__(
        self,
        *,
        n_folds: int = 5,
        learner: Any = "auto",
        learner_params: dict[str, Any] | None = None,
        estimator: str = "nested",
        row_budget: int = 50_000,
        propensity_clip: float = 0.01,
        auto_candidates: Sequence[str] = (
            "constant",
            "linear",
            "spline",
            "linear_boosting",
            "hist_gradient_boosting_early_stopping",
        ),
        max_density_ratio: float = 10.0,
        mediator_density: str = "gaussian",
        model_outcome: Any = None,
        model_mediator: Any = None,
        model_propensity: Any = None,
        design: str = "randomised",
        embed_effects: Sequence[str] = ("auto",),
        scaling: str = "standardize",
        exact_max_n: int = 5000,
        n_landmarks: int = 2000,
        perplexity: float = 30.0,
        n_iter: int = 750,
        kernel_power: int = 2,
        grid_size: int = 2000,
        n_jobs: int = 1,
        k_values: Sequence[int] = (2, 3, 4, 5),
        n_init: int = 10,
        max_iter: int = 50,
        cluster_on: str = "effects",
        criteria: Sequence[str] = ("gini", "entropy"),
        min_split_fractions: Sequence[float] = (0.10, 0.15, 0.20),
        complexity: Sequence[float] = tuple(float(c) for c in np.logspace(-6, -2, 16)),
        cv_folds: int = 5,
        tree_choice: str = "one_se",
        max_rows: int | None = 20_000,
        test_method: str = "f",
        calibration: str = "null",
        alpha: float = 0.05,
        n_replicates: int = 19,
        threshold: float = 0.0043,
        null_max_n: int = 50_000,
        n_bootstrap: int = 1000,
        level: float = 0.95,
        min_subgroup: int = 10,
        sensitivity: bool = True,
        sensitivity_bootstrap: int = 200,
        sensitivity_max_rows: int = 20_000,
        random_state: int = 2025,
    ) -> None:
        self.n_folds = n_folds
        self.learner = learner
        self.learner_params = learner_params
        self.estimator = estimator
        self.row_budget = row_budget
        self.propensity_clip = propensity_clip
        self.auto_candidates = auto_candidates
        self.max_density_ratio = max_density_ratio
        self.mediator_density = mediator_density
        self.model_outcome = model_outcome
        self.model_mediator = model_mediator
        self.model_propensity = model_propensity
        self.design = design
        self.embed_effects = embed_effects
        self.scaling = scaling
        self.exact_max_n = exact_max_n
        self.n_landmarks = n_landmarks
        self.perplexity = perplexity
        self.n_iter = n_iter
        self.kernel_power = kernel_power
        self.grid_size = grid_size
        self.n_jobs = n_jobs
        self.k_values = k_values
        self.n_init = n_init
        self.max_iter = max_iter
        self.cluster_on = cluster_on
        self.criteria = criteria
        self.min_split_fractions = min_split_fractions
        self.complexity = complexity
        self.cv_folds = cv_folds
        self.tree_choice = tree_choice
        self.max_rows = max_rows
        self.test_method = test_method
        self.calibration = calibration
        self.alpha = alpha
        self.n_replicates = n_replicates
        self.threshold = threshold
        self.null_max_n = null_max_n
        self.n_bootstrap = n_bootstrap
        self.level = level
        self.min_subgroup = min_subgroup
        self.sensitivity = sensitivity
        self.sensitivity_bootstrap = sensitivity_bootstrap
        self.sensitivity_max_rows = sensitivity_max_rows
        self.random_state = random_state

    # -- parameters ---------------------------------------------------------------------------
    def check_params(self) -> None:
        """Raise :class:`ConfigError` listing every invalid parameter (called before any work)."""
        problems: list[str] = []

        def choice(name: str, allowed: Sequence[Any]) -> None:
            v = getattr(self, name)
            if v not in allowed:
                problems.append(f"{name}={v!r}: choose one of {list(allowed)}")

        def integer(name: str, low: int) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
                problems.append(f"{name}={v!r}: give an integer >= {low}")

        def unit_interval(name: str) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 < v < 1.0:
                problems.append(f"{name}={v!r}: give a number strictly between 0 and 1")

        choice("calibration", cal.CALIBRATION_MODES)
        choice("estimator", ("nested", "reference"))
        choice("design", ("randomised", "observational"))
        choice("scaling", ("standardize", "none"))
        choice("kernel_power", (2, 4))
        choice("cluster_on", ("effects", "covariates"))
        choice("tree_choice", ("one_se", "first_pareto"))
        choice("test_method", ("f", "lr"))
        for name in ("n_folds", "cv_folds"):
            integer(name, 2)
        for name in (
            "row_budget",
            "exact_max_n",
            "n_landmarks",
            "n_iter",
            "grid_size",
            "n_jobs",
            "n_init",
            "max_iter",
            "n_replicates",
            "null_max_n",
            "n_bootstrap",
            "min_subgroup",
            "sensitivity_bootstrap",
            "sensitivity_max_rows",
        ):
            integer(name, 1)
        integer("random_state", 0)
        unit_interval("alpha")
        unit_interval("level")
        if not (isinstance(self.threshold, (int, float)) and 0.0 <= self.threshold <= 1.0):
            problems.append(f"threshold={self.threshold!r}: give a p-value threshold in [0, 1]")
        ks = list(self.k_values)
        if not ks or any(isinstance(k, bool) or int(k) != k or k < 2 for k in ks):
            problems.append(f"k_values={self.k_values!r}: give integers >= 2")
        if problems:
            raise ConfigError("invalid MLearner parameters: " + "; ".join(problems))

    def nuisance_spec(self, random_state: int | None = None) -> NuisanceSpec:
        """The nuisance-model settings as the effects step takes them."""
        return NuisanceSpec(
            learner=self.learner,
            learner_params=dict(self.learner_params or {}),
            row_budget=self.row_budget,
            random_state=self.random_state if random_state is None else int(random_state),
            design=self.design,
            estimator=self.estimator,
            propensity_clip=self.propensity_clip,
            auto_candidates=tuple(self.auto_candidates),
            max_density_ratio=self.max_density_ratio,
            mediator_density=self.mediator_density,
            model_outcome=self.model_outcome,
            model_mediator=self.model_mediator,
            model_propensity=self.model_propensity,
        )

    def profile_settings(self) -> ProfileSettings:
        """How candidate profile trees are grown and chosen."""
        return ProfileSettings(
            criteria=tuple(self.criteria),
            min_split_fractions=tuple(float(f) for f in self.min_split_fractions),
            complexity=tuple(float(c) for c in self.complexity),
            cv_folds=int(self.cv_folds),
            tree_choice=self.tree_choice,
            max_rows=self.max_rows,
        )

    # -- fitting --------------------------------------------------------------------------
    def fit(
        self,
        X: pd.DataFrame,
        *,
        treatment: Iterable[float],
        outcome: Iterable[float],
        mediator: Iterable[float] | pd.DataFrame | None = None,
        unit_id: Iterable[Any] | None = None,
        map_fn: cal.MapFn | None = None,
    ) -> MLearner:
        """Fit on covariates ``X`` with the roles given by keyword.

        Parameters
        ----------
        X : DataFrame, shape (n, p)
            Covariates (numeric and categorical).
        treatment, outcome : array-like, shape (n,)
        mediator : array-like (n,) or DataFrame (n, q), optional
            One or several mediators; None studies the total effect only.
        unit_id : array-like, shape (n,), optional
            Unit identifiers (default 0..n-1); folds are a hash of them.
        map_fn : callable, optional
            ``map_fn(func, items) -> list`` used to run null replicates in parallel (e.g.
            :func:`mlearner_dist.backends.dask_cluster.dask_map`); default runs them one after
            another.

        Returns
        -------
        self
        """
        self.check_params()
        frame = X.reset_index(drop=True).copy()
        covariates = tuple(str(c) for c in frame.columns)
        frame["__T"] = np.asarray(list(treatment), dtype=float)
        frame["__Y"] = np.asarray(list(outcome), dtype=float)
        mediators: tuple[str, ...] = ()
        if mediator is not None:
            med = pd.DataFrame(mediator).reset_index(drop=True)
            mediators = tuple(f"__M{i}" for i in range(med.shape[1]))
            for name, col in zip(mediators, med.columns, strict=True):
                frame[name] = med[col].to_numpy(dtype=float)
        frame["__id"] = np.arange(len(frame)) if unit_id is None else list(unit_id)
        roles = Roles("__id", "__T", "__Y", mediators, covariates)
        return self.fit_frame(frame, roles, map_fn=map_fn)

    def fit_frame(
        self,
        frame: pd.DataFrame,
        roles: Roles,
        *,
        map_fn: cal.MapFn | None = None,
    ) -> MLearner:
        """Fit on a frame whose columns are named by ``roles``.

        The frame is validated (every problem reported at once, before any work) and ordered by
        unit id, so the result does not depend on the order of the rows.
        """
        self.check_params()
        frame, account = validate_frame(
            frame, roles, min_treated=2, min_control=2, n_folds=self.n_folds
        )
        frame = frame.sort_values(roles.unit_id, kind="stable").reset_index(drop=True)
        self.row_account_ = account.to_dict()
        self.roles_ = roles
        started = time.perf_counter()
        sel = self.select(frame, roles)
        self.selection_seconds_ = time.perf_counter() - started
        self.selection_ = sel
        self.effects_ = sel.effects
        self.p_leaf_ = sel.p_leaf
        self.calibration_ = self.calibrate(
            frame, roles, sel.p_leaf, map_fn=map_fn,
            seconds_per_replicate=self.selection_seconds_,
            parallel=int(getattr(map_fn, "n_workers", 1)),
        )
        self.threshold_ = float(self.calibration_["threshold"])
        decision_p = self.calibration_.get("p_decision", sel.p_leaf)
        self.declared_ = bool(decision_p < self.threshold_)
        leaf = sel.chosen_tree.leaf_of(frame[list(roles.covariates)])
        self.subgroups_ = subgroup_table(
            frame,
            roles,
            sel.effects,
            leaf,
            sel.chosen_tree.rules,
            n_bootstrap=self.n_bootstrap,
            level=self.level,
            min_size=self.min_subgroup,
            random_state=self.random_state,
        )
        self.average_effects_ = average_effects(sel.effects, level=self.level)
        self.sensitivity_ = None
        if self.sensitivity and len(roles.mediators) == 1:
            self.sensitivity_ = sensitivity_analysis(
                frame,
                leaf,
                sel.chosen_tree.rules,
                treatment=roles.treatment,
                mediator=roles.mediators[0],
                outcome=roles.outcome,
                covariates=roles.covariates,
                min_size=max(30, self.min_subgroup),
                n_bootstrap=self.sensitivity_bootstrap,
                max_rows=self.sensitivity_max_rows,
                level=self.level,
                random_state=self.random_state,
            )
        return self

    def select(self, frame: pd.DataFrame, roles: Roles, *, seed: int | None = None) -> Selection:
        """Steps 1 to 4 without calibration: effects, embedding, K-means, trees, tests, choice.

        Parameters
        ----------
        frame : DataFrame
            Validated units.
        roles : Roles
        seed : int, optional
            Overrides ``random_state`` (null replicates use their own seeds).
        """
        rs = self.random_state if seed is None else int(seed)
        effects, diagnostics = cross_fit_effects(
            frame, roles, self.nuisance_spec(rs), n_folds=self.n_folds, seed=rs
        )
        ids = frame[roles.unit_id].to_numpy()
        effects = effects.set_index("unit_id").loc[ids].reset_index()
        keys = unit_keys(ids, rs)
        names = resolve_effect_names(self.embed_effects, roles.has_mediator)
        if self.cluster_on == "covariates":
            # the reference's baseline: K-means straight on the standardised covariates
            Y2 = covariate_matrix(frame[list(roles.covariates)])
            info: dict[str, Any] = {"path": "none: K-means on covariates (baseline)"}
        else:
            Y2, info = embed(
                effect_matrix(effects, names, self.scaling),
                exact_max_n=self.exact_max_n,
                n_landmarks=self.n_landmarks,
                perplexity=self.perplexity,
                n_iter=self.n_iter,
                kernel_power=self.kernel_power,
                grid_size=self.grid_size,
                random_state=rs,
                n_jobs=self.n_jobs,
                keys=keys,
            )
        km = kmeans_for_k(
            Y2,
            list(self.k_values),
            n_init=self.n_init,
            max_iter=self.max_iter,
            random_state=rs,
            sample_order=keys,
        )
        labels = {k: km[k][0] for k in km}
        wcss = {k: float(km[k][2]) for k in km}
        profile = choose_profile(
            frame[list(roles.covariates)],
            labels,
            tree_pvalues(frame, roles, self.test_method),
            has_mediator=roles.has_mediator,
            settings=self.profile_settings(),
            random_state=rs,
        )
        return Selection(
            effects=effects,
            diagnostics=diagnostics,
            embedding=Y2,
            embedding_info=info,
            labels=labels,
            wcss=wcss,
            profile=profile,
        )

    def null_p_leaf(self, frame: pd.DataFrame, roles: Roles, replicate: int) -> float:
        """p_leaf of the whole selection re-run on null replicate number ``replicate``.

        The replicate's data and seeds depend only on ``random_state`` and ``replicate``.
        """
        rng = np.random.default_rng([self.random_state, replicate])
        shift_m, shift_y = cal.average_shifts(frame, roles)
        null = cal.make_null_replicate(
            frame, roles, rng=rng, shift_mediator=shift_m, shift_outcome=shift_y
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sel = self.select(null, roles, seed=self.random_state + 1000 + replicate)
        return sel.p_leaf

    def calibrate(
        self,
        frame: pd.DataFrame,
        roles: Roles,
        p_leaf: float,
        *,
        map_fn: cal.MapFn | None = None,
        seconds_per_replicate: float | None = None,
        parallel: int = 1,
    ) -> dict[str, Any]:
        """The threshold for ``p_leaf`` by the configured mode (fixed, null or split).

        Parameters
        ----------
        frame : DataFrame
            The validated units, ordered by unit id (unused by ``fixed``).
        roles : Roles
        p_leaf : float
            The observed decision statistic.
        map_fn : callable, optional
            How null replicates are run (:data:`mlearner_dist.core.calibration.MapFn`).
        seconds_per_replicate : float, optional
            Expected cost of one null replicate (the observed selection's time): the projected
            calibration time is logged before the replicates start.
        parallel : int
            Replicates running at once (``map_fn``'s workers).

        Returns
        -------
        dict
            The calibration record of result.json. When ``null`` was asked for but
            ``len(frame) > null_max_n``, the split mode runs and ``fallback`` says why.
        """
        self.check_params()
        mode = self.calibration
        if mode == "fixed":
            return cal.fixed_calibration(self.threshold, self.alpha)
        fallback = None
        if mode == "null" and len(frame) > self.null_max_n:
            fallback = (
                f"calibration.mode null was asked for, but {len(frame)} units > "
                f"calibration.null_max_n={self.null_max_n}: the split-sample mode ran instead "
                "(valid at any n); raise null_max_n to insist on null replicates"
            )
            logger.warning("calibration: %s", fallback)
            mode = "split"
        if mode == "null":
            return cal.null_calibration(
                functools.partial(self.null_p_leaf, frame, roles),
                self.n_replicates,
                self.alpha,
                p_leaf,
                map_fn=map_fn,
                seconds_per_replicate=seconds_per_replicate,
                parallel=parallel,
            )
        doc = split_calibration(self, frame, roles)
        if fallback is not None:
            doc["requested_mode"] = "null"
            doc["fallback"] = fallback
        return doc

    # -- reporting ------------------------------------------------------------------------
    def summary(self) -> pd.DataFrame:
        """One row per subgroup: rule, n and adjusted effects with intervals."""
        rows = []
        for s in self.subgroups_:
            row = {"leaf": s["leaf"], "rule": s["rule"], "n": s["n"]}
            for name in (*EFFECTS, "prop_mediated"):
                e = s.get(name)
                if e:
                    row[name] = e["estimate"]
                    row[f"{name}_ci"] = (e["ci_low"], e["ci_high"])
            rows.append(row)
        return pd.DataFrame(rows)


def covariate_matrix(X: pd.DataFrame) -> np.ndarray:
    """Standardised numeric covariates and one-hot categoricals, shape (n, p')."""
    dummies = pd.get_dummies(X, drop_first=False, dtype=float)
    values = dummies.to_numpy(dtype=float)
    sd = values.std(axis=0)
    sd[sd == 0] = 1.0
    return (values - values.mean(axis=0)) / sd


def split_calibration(model: MLearner, frame: pd.DataFrame, roles: Roles) -> dict[str, Any]:
    """Discover on one half, test the chosen configuration once on the other half.

    The held-out half played no part in any choice, so its interaction p-value is a valid p-value
    and ``p < alpha`` holds the Type I error at alpha.
    """
    mask = cal.split_sample(frame[roles.unit_id].to_numpy(), model.random_state)
    discover, holdout = frame[mask].reset_index(drop=True), frame[~mask].reset_index(drop=True)
    sel = model.select(discover, roles)
    tree = sel.chosen_tree
    leaf = tree.leaf_of(holdout[list(roles.covariates)])
    p = decision_pvalue(holdout, roles, leaf, model.test_method)
    return {
        "mode": "split",
        "alpha": model.alpha,
        "threshold": float(model.alpha),
        "n_replicates": 0,
        "null_p_leaf": [],
        "mc_pvalue": None,
        "p_decision": float(p),
        "n_discovery": int(mask.sum()),
        "n_holdout": int((~mask).sum()),
        "chosen_on_discovery": {"k": sel.chosen["k"], "tree_id": sel.chosen["tree_id"]},
        "how": (
            f"discovery on {int(mask.sum())} units, the chosen profile tested once on the other "
            f"{int((~mask).sum())}; declared when that p-value < alpha={model.alpha}"
        ),
    }


def _ci(est: float, lo: float, hi: float) -> dict[str, float]:
    return {"estimate": float(est), "ci_low": float(lo), "ci_high": float(hi)}


def average_effects(effects: pd.DataFrame, *, level: float = 0.95) -> dict[str, Any]:
    """Average indirect, direct and total effects with normal CIs from the DR scores."""
    from scipy.stats import norm

    z = float(norm.ppf(0.5 + level / 2))
    out: dict[str, Any] = {}
    n = len(effects)
    for name in EFFECTS:
        col = f"score_{name}"
        if col not in effects or effects[col].isna().all():
            out[name] = None
            continue
        s = effects[col].to_numpy(dtype=float)
        m, se = s.mean(), s.std(ddof=1) / np.sqrt(n)
        out[name] = _ci(m, m - z * se, m + z * se)
    if out.get("indirect") and out.get("total"):
        # the one rule of every proportion mediated (whole sample and subgroups)
        pm = proportion_mediated(
            effects["score_indirect"].to_numpy(dtype=float),
            effects["score_total"].to_numpy(dtype=float),
            level=level,
        )
        if pm["note"]:
            out["prop_mediated"] = {
                "estimate": None,
                "ci_low": None,
                "ci_high": None,
                "note": pm["note"],
            }
        else:
            out["prop_mediated"] = _ci(pm["estimate"], pm["ci_low"], pm["ci_high"])
    else:
        out["prop_mediated"] = None
    return out


def subgroup_table(
    frame: pd.DataFrame,
    roles: Roles,
    effects: pd.DataFrame,
    leaf: np.ndarray,
    rules: dict[int, str],
    *,
    n_bootstrap: int,
    level: float,
    min_size: int,
    random_state: int,
) -> list[dict[str, Any]]:
    """Per-leaf adjusted (DR scores) and unadjusted (reference) effects with intervals.

    ``effects`` must be aligned row by row with ``frame``.
    """
    adjusted = adjusted_subgroup_effects(effects, leaf, level=level)
    unadjusted = unadjusted_subgroup_effects(
        frame,
        roles,
        leaf,
        n_bootstrap=n_bootstrap,
        level=level,
        random_state=random_state,
        min_size=min_size,
    )
    return merge_subgroup_effects(adjusted, unadjusted, rules, leaf, roles.has_mediator)


def merge_subgroup_effects(
    adjusted: pd.DataFrame,
    unadjusted: pd.DataFrame,
    rules: dict[int, str],
    leaf: np.ndarray,
    has_mediator: bool,
) -> list[dict[str, Any]]:
    """Join the adjusted and unadjusted per-leaf tables into result.json's ``subgroups`` list."""
    names = (*EFFECTS, "prop_mediated")
    out = []
    for lf in sorted(rules):
        n = int((leaf == lf).sum())
        entry: dict[str, Any] = {"leaf": int(lf), "rule": rules[lf], "n": n}
        adj = adjusted[adjusted["leaf"] == lf]
        una = unadjusted[unadjusted["leaf"] == lf]
        entry["unadjusted"] = {}
        for name in names:
            wanted = has_mediator or name == "total"
            entry[name] = _row_ci(adj, name) if wanted else None
            entry["unadjusted"][name] = _row_ci(una, name) if wanted else None
        notes = [
            str(x)
            for table in (adj, una)
            for x in table.get("note", pd.Series(dtype=str)).dropna()
            if str(x)
        ]
        notes = list(dict.fromkeys(notes))
        if notes:
            entry["note"] = "; ".join(notes)
        out.append(entry)
    return out


def _row_ci(table: pd.DataFrame, name: str) -> dict[str, float] | None:
    if table.empty or f"{name}" not in table:
        return None
    r = table.iloc[0]
    return _ci(r[name], r[f"{name}_ci_low"], r[f"{name}_ci_high"])
