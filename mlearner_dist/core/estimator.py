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
from mlearner_dist.core.cross_split import check_resolution
from mlearner_dist.core.design_variance import design_of
from mlearner_dist.core.discovery_half import discovery_half_calibration
from mlearner_dist.core.effect_summaries import (
    average_effects,
    merge_subgroup_effects,
    subgroup_table,
)
from mlearner_dist.core.effects import cross_fit_effects
from mlearner_dist.core.embedding import effect_matrix, embed, unit_keys
from mlearner_dist.core.honest_calibration import (
    CrossSplitHalves,
    cross_split_calibration,
    cross_split_directions,
    cross_split_halves,
    cross_split_stability,
    estimate_subgroups,
    holdout_subgroups,
    split_calibration,
    tested_units,
    winning_direction,
)
from mlearner_dist.core.nuisance import NuisanceSpec
from mlearner_dist.core.profile_tree import ProfileTree
from mlearner_dist.core.roles import Roles
from mlearner_dist.core.score_calibration import (
    SCORE_REPLICATE_STREAM,
    ScoreReplicateBasis,
    score_calibration,
)
from mlearner_dist.core.score_selection import target_score
from mlearner_dist.core.selection import (
    EFFECTS,
    ProfileSettings,
    Selection,
    choose_profile,
    decision_target,
    resolve_effect_names,
    tree_pvalues,
)
from mlearner_dist.core.sensitivity import sensitivity_analysis
from mlearner_dist.core.stability import SeedRun, summarise_stability
from mlearner_dist.core.targets import cross_split_targets, target_records
from mlearner_dist.core.validation import validate_frame
from mlearner_dist.exceptions import ConfigError

logger = logging.getLogger(__name__)

# MLearner and covariate_matrix live here; the other names are re-exported from their modules
# (core.selection, core.score_calibration, core.honest_calibration, core.effect_summaries).
__all__ = [
    "EFFECTS",
    "SCORE_REPLICATE_STREAM",
    "CrossSplitHalves",
    "MLearner",
    "ScoreReplicateBasis",
    "Selection",
    "average_effects",
    "covariate_matrix",
    "cross_split_calibration",
    "cross_split_directions",
    "cross_split_halves",
    "cross_split_stability",
    "decision_target",
    "holdout_subgroups",
    "merge_subgroup_effects",
    "score_calibration",
    "split_calibration",
    "subgroup_table",
    "tested_units",
    "winning_direction",
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
    max_density_ratio, mediator_density, constant_effect_models, design
        Step 1, the ``effects:`` section (and ``design``); ``learner`` may also be a
        scikit-learn estimator object.
    embed_effects, scaling, exact_max_n, n_landmarks, perplexity, n_iter, kernel_power,
    grid_size, n_jobs
        Step 2, the ``embed:`` section.
    k_values, n_init, max_iter, cluster_on
        Step 3, the ``cluster:`` section (``k_values`` = k_min .. k_max).
    criteria, min_split_fractions, complexity, cv_folds, tree_choice, max_rows, merge_leaves,
    merge_level, test_method, test_statistic, test_covariance, overlap_trim
        Step 4, the ``profile:`` and ``test:`` sections. ``overlap_trim`` (observational designs,
        cross-split calibration): each direction tests the units of its test half whose
        estimated propensity lies in ``[overlap_trim, 1 - overlap_trim]`` (0: all units).
        ``test_statistic="dr_score"`` (ours)
        decides on the robust Wald test of equal leaf means of the target's doubly robust score
        (indirect with a mediator, else total) on leaf-merged trees; ``"interaction"`` on the
        reference's M (or Y) interaction test.
    calibration, alpha, n_replicates, threshold, null_max_n, permutation_max_n, null_replicates,
    multiplier, familywise, honest
        The ``calibration:`` section. Above ``null_max_n`` units the cross-split score
        calibration, above ``permutation_max_n`` the permutation replicates (each a whole
        selection) fall back to the split mode, stated in ``calibration.fallback``.
        ``null_replicates="scores"``: wild-bootstrap replicates of
        the DR scores (:mod:`mlearner_dist.core.score_replicates`; keeps confounding, needs
        ``test_statistic="dr_score"``); with ``honest=True`` (the default) they run in the
        cross-split design of :mod:`mlearner_dist.core.cross_split` (partitions learned on one
        half, tested on the other half's scores, both ways, Bonferroni); ``honest=False``
        calibrates the full-sample selection, which the study showed is anti-conservative.
        ``"permutation"``: the treatment re-randomised and the whole selection re-run.
    n_bootstrap, level, min_subgroup
        Subgroup effects (``subgroups:``, ``validation.min_subgroup``).
    honest_subgroups : bool
        ``subgroups.honest``. With a calibration that would estimate the subgroup effects on
        the units that chose the subgroups (``fixed``, permutation replicates, or
        ``honest=False``): select and calibrate on a hashed half, estimate the reported
        subgroups (of both targets) on the other half
        (:func:`~mlearner_dist.core.discovery_half.discovery_half_calibration`). No effect
        with ``split`` or the cross-split calibration, which hold out already.
    sensitivity, sensitivity_bootstrap, sensitivity_max_rows
        The M-Y confounding sensitivity curves (``sensitivity:`` section; one mediator only).
    stability_seeds, stability_max_n
        Seed stability (``stability:`` section): steps 2 to 4 re-run with this many other seeds
        for t-SNE and K-means when n <= ``stability_max_n`` (0: off).
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
        The decision statistic: the smallest DR-score p-value of the target (``dr_score``) or
        of the mediator / outcome test (``interaction``); in split mode the held-out p-value of
        the discovery tree.
    chosen_ : dict
        The reported configuration (in split mode the one chosen on the discovery half).
    reported_tree_ : ProfileTree
        The partition whose p-value decided; ``subgroups_`` are its leaves.
    targets_ : dict
        ``indirect`` and ``total`` (with a mediator) or ``total``: each target's p_leaf,
        threshold, declared, Monte Carlo p-value, chosen configuration and subgroups; the
        indirect (else total) entry is the top-level decision.
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
    stability_ : dict or None
        Seed stability of the reported partition (:mod:`mlearner_dist.core.stability`); None
        when off, above ``stability_max_n`` or in split mode.
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
        constant_effect_models: str = "auto",
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
        merge_leaves: bool = True,
        merge_level: float = 0.05,
        test_method: str = "f",
        test_statistic: str = "dr_score",
        test_covariance: str = "HC1",
        overlap_trim: float = 0.1,
        calibration: str = "null",
        alpha: float = 0.05,
        n_replicates: int = 99,
        threshold: float = 0.0043,
        null_max_n: int = 150_000,
        permutation_max_n: int = 1_500,
        null_replicates: str = "scores",
        multiplier: str = "rademacher",
        familywise: bool = False,
        honest: bool = True,
        n_bootstrap: int = 1000,
        honest_subgroups: bool = False,
        level: float = 0.95,
        min_subgroup: int = 10,
        sensitivity: bool = True,
        sensitivity_bootstrap: int = 200,
        sensitivity_max_rows: int = 20_000,
        stability_seeds: int = 5,
        stability_max_n: int = 50_000,
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
        self.constant_effect_models = constant_effect_models
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
        self.merge_leaves = merge_leaves
        self.merge_level = merge_level
        self.test_method = test_method
        self.test_statistic = test_statistic
        self.test_covariance = test_covariance
        self.overlap_trim = overlap_trim
        self.calibration = calibration
        self.alpha = alpha
        self.n_replicates = n_replicates
        self.threshold = threshold
        self.null_max_n = null_max_n
        self.permutation_max_n = permutation_max_n
        self.null_replicates = null_replicates
        self.multiplier = multiplier
        self.familywise = familywise
        self.honest = honest
        self.n_bootstrap = n_bootstrap
        self.honest_subgroups = honest_subgroups
        self.level = level
        self.min_subgroup = min_subgroup
        self.sensitivity = sensitivity
        self.sensitivity_bootstrap = sensitivity_bootstrap
        self.sensitivity_max_rows = sensitivity_max_rows
        self.stability_seeds = stability_seeds
        self.stability_max_n = stability_max_n
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
        choice("test_statistic", ("dr_score", "interaction"))
        choice("test_covariance", ("HC1", "HC0"))
        trim = self.overlap_trim
        if isinstance(trim, bool) or not isinstance(trim, (int, float, np.number)) or not (
            0 <= float(trim) < 0.5
        ):
            problems.append(f"overlap_trim={trim!r}: give a number in [0, 0.5) (0: no trimming)")
        choice("null_replicates", ("scores", "permutation"))
        choice("multiplier", ("rademacher", "normal", "mammen"))
        if not isinstance(self.familywise, (bool, np.bool_)):
            problems.append(f"familywise={self.familywise!r}: give true or false")
        if not isinstance(self.honest_subgroups, (bool, np.bool_)):
            problems.append(f"honest_subgroups={self.honest_subgroups!r}: give true or false")
        if not isinstance(self.honest, (bool, np.bool_)):
            problems.append(f"honest={self.honest!r}: give true or false")
        if self.uses_cross_split():
            short = check_resolution(
                self.n_replicates, float(self.alpha), 4 if self.familywise is True else 2
            )
            if (
                short is not None
                and isinstance(self.alpha, float)
                and isinstance(self.n_replicates, (int, np.integer))
            ):
                problems.append(short)
        if not isinstance(self.merge_leaves, (bool, np.bool_)):
            problems.append(f"merge_leaves={self.merge_leaves!r}: give true or false")
        if self.null_replicates == "scores" and self.test_statistic != "dr_score":
            problems.append(
                "null_replicates='scores' needs test_statistic='dr_score' (the replicates act on "
                "the DR scores); use null_replicates='permutation' with the interaction tests"
            )
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
            "permutation_max_n",
            "n_bootstrap",
            "min_subgroup",
            "sensitivity_bootstrap",
            "sensitivity_max_rows",
            "stability_max_n",
        ):
            integer(name, 1)
        integer("stability_seeds", 0)
        integer("random_state", 0)
        unit_interval("alpha")
        unit_interval("level")
        unit_interval("merge_level")
        if not (isinstance(self.threshold, (int, float)) and 0.0 <= self.threshold <= 1.0):
            problems.append(f"threshold={self.threshold!r}: give a p-value threshold in [0, 1]")
        ks = list(self.k_values)
        if not ks or any(isinstance(k, bool) or int(k) != k or k < 2 for k in ks):
            problems.append(f"k_values={self.k_values!r}: give integers >= 2")
        if problems:
            raise ConfigError("invalid MLearner parameters: " + "; ".join(problems))

    def resolved_calibration(self, n: int) -> tuple[str, str | None]:
        """The calibration mode that runs for ``n`` units, and why it is not the configured one.

        ``(mode, fallback)``: ``mode`` is the configured one, or ``"split"`` when a null
        calibration has more units than its limit (:meth:`fallback_limit`); ``fallback`` then
        says so (result.json's ``calibration.fallback``), else None.
        """
        limit = self.fallback_limit()
        if limit is None or n <= limit[1]:
            return str(self.calibration), None
        key, max_n = limit
        return "split", (
            f"calibration.mode null was asked for, but {n} units > "
            f"calibration.{key}={max_n}: the split-sample mode ran instead "
            f"(valid at any n); raise {key} to insist on null replicates"
        )

    def fallback_limit(self) -> tuple[str, int] | None:
        """The size limit of the configured null calibration: ``(key, max_n)`` or None.

        The cross-split score calibration refits both halves in memory (``null_max_n``); the
        permutation replicates re-run the whole selection B times (``permutation_max_n``). The
        full-sample score replicates, ``fixed`` and ``split`` run at any n (None).
        """
        if self.calibration != "null":
            return None
        if self.null_replicates == "permutation":
            return ("permutation_max_n", int(self.permutation_max_n))
        if self.uses_cross_split():
            return ("null_max_n", int(self.null_max_n))
        return None

    def _calibration_holds_out(self, n: int) -> bool:
        """Whether the calibration of ``n`` units estimates the subgroups on held-out units by
        itself: ``split`` (also as the fallback above a limit) or the cross-split."""
        if self.calibration == "split" or self.uses_cross_split():
            return True
        limit = self.fallback_limit()
        return limit is not None and n > limit[1]

    def holds_out_subgroups(self, n: int) -> bool:
        """Whether the reported subgroups of ``n`` units are estimated on held-out units: by the
        calibration itself, or by ``honest_subgroups`` with any other mode."""
        return self._calibration_holds_out(n) or bool(self.honest_subgroups)

    def splits_for_subgroups(self, n: int) -> bool:
        """Whether ``honest_subgroups`` makes the calibration of ``n`` units select on a hashed
        half (:func:`~mlearner_dist.core.discovery_half.discovery_half_calibration`)."""
        return bool(self.honest_subgroups) and not self._calibration_holds_out(n)

    def uses_cross_split(self) -> bool:
        """Whether ``calibration="null"`` runs the honest cross-split score calibration."""
        return bool(
            self.calibration == "null" and self.null_replicates == "scores" and self.honest is True
        )

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
            constant_effect_models=self.constant_effect_models,
            mediator_density=self.mediator_density,
            model_outcome=self.model_outcome,
            model_mediator=self.model_mediator,
            model_propensity=self.model_propensity,
        )

    def embedding_settings(self, random_state: int | None = None) -> dict[str, Any]:
        """The t-SNE and landmark settings as :func:`~mlearner_dist.core.embedding.embed` and
        the Dask backend's ``dask_embed`` take them (``random_state`` overrides the model's)."""
        return {
            "exact_max_n": self.exact_max_n,
            "n_landmarks": self.n_landmarks,
            "perplexity": self.perplexity,
            "n_iter": self.n_iter,
            "kernel_power": self.kernel_power,
            "grid_size": self.grid_size,
            "random_state": self.random_state if random_state is None else int(random_state),
            "n_jobs": self.n_jobs,
        }

    def profile_settings(self) -> ProfileSettings:
        """How candidate profile trees are grown and chosen."""
        return ProfileSettings(
            criteria=tuple(self.criteria),
            min_split_fractions=tuple(float(f) for f in self.min_split_fractions),
            complexity=tuple(float(c) for c in self.complexity),
            cv_folds=int(self.cv_folds),
            tree_choice=self.tree_choice,
            max_rows=self.max_rows,
            merge_leaves=bool(self.merge_leaves),
            merge_level=float(self.merge_level),
            covariance=self.test_covariance,
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
        strata: Iterable[Any] | pd.DataFrame | None = None,
        cluster: Iterable[Any] | None = None,
        weight: Iterable[float] | None = None,
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
        strata : array-like (n,) or DataFrame (n, k), optional
            Randomisation stratum of every unit (one or several columns): the treatment was
            randomised within strata (``columns.strata``).
        cluster : array-like, shape (n,), optional
            Randomisation cluster of every unit: whole clusters were randomised
            (``columns.cluster``); folds, halves, replicates and every variance go by cluster.
        weight : array-like, shape (n,), optional
            Analysis (sampling) weight of every unit, positive and finite (``columns.weight``).
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
        strata_cols: tuple[str, ...] = ()
        if strata is not None:
            st = pd.DataFrame(strata).reset_index(drop=True)
            strata_cols = tuple(f"__S{i}" for i in range(st.shape[1]))
            for name, col in zip(strata_cols, st.columns, strict=True):
                frame[name] = st[col].to_numpy()
        if cluster is not None:
            frame["__C"] = list(cluster)
        if weight is not None:
            frame["__W"] = np.asarray(list(weight), dtype=float)
        roles = Roles(
            "__id",
            "__T",
            "__Y",
            mediators,
            covariates,
            strata=strata_cols,
            cluster="__C" if cluster is not None else None,
            weight="__W" if weight is not None else None,
        )
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
        if (roles.cluster or roles.weight) and self.test_statistic != "dr_score":
            raise ConfigError(
                f"columns.cluster/columns.weight with test.statistic={self.test_statistic!r}: the "
                "reference's interaction tests assume independent, equally weighted units; use "
                "test.statistic: dr_score (the default, cluster-robust and weighted) or leave "
                "columns.cluster and columns.weight empty"
            )
        frame, account = validate_frame(
            frame, roles, min_treated=2, min_control=2, n_folds=self.n_folds
        )
        frame = frame.sort_values(roles.unit_id, kind="stable").reset_index(drop=True)
        self.row_account_ = account.to_dict()
        self.roles_ = roles
        self._cross_split_halves = None
        started = time.perf_counter()
        sel = self.select(frame, roles)
        self.selection_seconds_ = time.perf_counter() - started
        self.selection_ = sel
        self.effects_ = sel.effects
        self.p_leaf_ = sel.p_leaf
        self.calibration_ = self.calibrate(
            frame,
            roles,
            sel.p_leaf,
            map_fn=map_fn,
            selection=ScoreReplicateBasis.of(sel),
            seconds_per_replicate=self.selection_seconds_,
            parallel=int(getattr(map_fn, "n_workers", 1)),
        )
        self.threshold_ = float(self.calibration_["threshold"])
        if self.calibration_.get("discovery_tree") is not None:
            # split and cross-split: report exactly what was tested: the discovery tree, its
            # held-out p-value, and subgroup effects estimated on the held-out half
            self.p_leaf_ = float(self.calibration_["p_decision"])
            self.chosen_ = dict(self.calibration_["chosen_on_discovery"])
            self.reported_tree_ = ProfileTree.from_dict(self.calibration_["discovery_tree"])
            self.subgroups_ = list(self.calibration_["subgroups"])
        else:
            self.chosen_ = dict(sel.chosen)
            self.reported_tree_ = sel.chosen_tree
            leaf = sel.chosen_tree.leaf_of(frame[list(roles.covariates)])
            self.subgroups_ = estimate_subgroups(
                self,
                frame,
                roles,
                sel.effects,
                leaf,
                sel.chosen_tree.rules,
                estimated_on="same_units",
            )
        self.declared_ = bool(self.p_leaf_ < self.threshold_)
        self.average_effects_ = average_effects(sel.effects, level=self.level)
        self.sensitivity_ = self.sensitivity_curves(frame, roles, self.reported_tree_)
        self.stability_ = None
        if self.calibration_.get("discovery_tree") is None:
            self.stability_ = self.seed_stability(
                frame, roles, sel.effects, self.reported_tree_, self.threshold_
            )
        elif self.calibration_.get("honest"):
            self.stability_ = cross_split_stability(
                self, frame, roles, self.reported_tree_, map_fn=map_fn
            )
        self.targets_ = self._targets(frame, roles, sel, map_fn=map_fn)
        return self

    def sensitivity_curves(
        self, frame: pd.DataFrame, roles: Roles, reported: Any
    ) -> dict[str, Any] | None:
        """ACME(rho) for the whole sample and every leaf of the reported partition.

        :func:`mlearner_dist.core.sensitivity.sensitivity_analysis` with this estimator's
        settings; None when ``sensitivity`` is off or there is not exactly one mediator.
        """
        if not self.sensitivity or len(roles.mediators) != 1:
            return None
        return sensitivity_analysis(
            frame,
            reported.leaf_of(frame[list(roles.covariates)]),
            reported.rules,
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

    def seed_stability(
        self,
        frame: pd.DataFrame,
        roles: Roles,
        effects: pd.DataFrame,
        reported: Any,
        threshold: float,
    ) -> dict[str, Any] | None:
        """Steps 2 to 4 re-run with ``stability_seeds`` other seeds on the same unit effects.

        Parameters
        ----------
        frame : DataFrame
            Validated units, row-aligned with ``effects``.
        roles : Roles
        effects : DataFrame
            The analysis's effects table (held fixed).
        reported : ProfileTree
            The reported (chosen, merged) partition.
        threshold : float
            The analysis's threshold.

        Returns
        -------
        dict or None
            :func:`mlearner_dist.core.stability.summarise_stability`, or None when off or when
            ``len(frame) > stability_max_n``.
        """
        if self.stability_seeds < 1 or len(frame) > self.stability_max_n:
            return None
        X = frame[list(roles.covariates)]
        target = decision_target(roles.has_mediator)
        names = resolve_effect_names(self.embed_effects, roles.has_mediator)
        runs = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for i in range(self.stability_seeds):
                seed = self.random_state + 7919 * (i + 1)
                s = self.select_target(frame, roles, effects, target, names=names, seed=seed)
                tree = s.chosen_tree
                runs.append(
                    SeedRun(
                        seed=seed,
                        p_leaf=s.p_leaf,
                        leaf=tree.leaf_of(X),
                        rules=tuple(tree.rules.values()),
                        variables=tuple(tree.variables),
                    )
                )
        return summarise_stability(
            reported.leaf_of(X), list(reported.rules.values()), threshold, runs
        )

    def _targets(
        self, frame: pd.DataFrame, roles: Roles, sel: Selection, *, map_fn: cal.MapFn | None
    ) -> dict[str, Any]:
        """Both targets side by side (:func:`mlearner_dist.core.targets.target_records`)."""
        return target_records(self, frame, roles, sel, map_fn=map_fn)

    def cross_split_targets(
        self,
        frame: pd.DataFrame,
        roles: Roles,
        calibration: dict[str, Any],
        *,
        map_fn: cal.MapFn | None = None,
    ) -> dict[str, Any]:
        """Both targets in the cross-split calibration (the total one on the same halves).

        :func:`mlearner_dist.core.targets.cross_split_targets` with this estimator; ``calibration``
        is the decision target's cross-split record (:func:`cross_split_calibration`).
        """
        return cross_split_targets(self, frame, roles, calibration, map_fn=map_fn)

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
        names = resolve_effect_names(self.embed_effects, roles.has_mediator)
        return self.select_target(
            frame,
            roles,
            effects,
            decision_target(roles.has_mediator),
            names=names,
            seed=rs,
            diagnostics=diagnostics,
        )

    def select_target(
        self,
        frame: pd.DataFrame,
        roles: Roles,
        effects: pd.DataFrame,
        target: str,
        *,
        names: Sequence[str] | None = None,
        seed: int | None = None,
        diagnostics: dict[str, Any] | None = None,
    ) -> Selection:
        """Steps 2 to 4 for one target on given effects: embedding, K-means, trees, tests.

        Parameters
        ----------
        frame : DataFrame
            Validated units, row-aligned with ``effects``.
        roles : Roles
        effects : DataFrame
            The effects table.
        target : {"indirect", "total"}
            Whose DR score decides (``test_statistic="dr_score"``).
        names : sequence of str, optional
            The effects embedded (default: the target alone).
        seed : int, optional
        diagnostics : dict, optional
            Carried into the returned :class:`Selection`.
        """
        rs = self.random_state if seed is None else int(seed)
        ids = frame[roles.unit_id].to_numpy()
        keys = unit_keys(ids, rs)
        names = tuple(names) if names is not None else (target,)
        if self.cluster_on == "covariates":
            # the reference's baseline: K-means straight on the standardised covariates
            Y2 = covariate_matrix(frame[list(roles.covariates)])
            info: dict[str, Any] = {"path": "none: K-means on covariates (baseline)"}
        else:
            Y2, info = embed(
                effect_matrix(effects, names, self.scaling),
                keys=keys,
                **self.embedding_settings(rs),
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
            score=target_score(effects, target) if self.test_statistic == "dr_score" else None,
            target=target,
            design=design_of(effects),
        )
        return Selection(
            effects=effects,
            diagnostics=diagnostics or {},
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
        selection: Any = None,
        seconds_per_replicate: float | None = None,
        parallel: int = 1,
        discovery_half: bool = True,
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
        selection : Selection or ScoreReplicateBasis, optional
            The observed selection; needed by score replicates (``null_replicates="scores"``),
            which re-run its score-dependent steps on replicate scores.
        seconds_per_replicate : float, optional
            Expected cost of one null replicate (the observed selection's time): the projected
            calibration time is logged before the replicates start.
        parallel : int
            Replicates running at once (``map_fn``'s workers).
        discovery_half : bool
            With ``honest_subgroups`` (:meth:`splits_for_subgroups`): run the selection and
            this calibration on a hashed half and estimate the subgroups on the other
            (:func:`~mlearner_dist.core.discovery_half.discovery_half_calibration`, which
            calls this method with ``discovery_half=False`` on its half). ``p_leaf`` and
            ``selection`` are then not used.

        Returns
        -------
        dict
            The calibration record of result.json. When ``null`` was asked for but the data have
            more units than its limit (:meth:`fallback_limit`), the split mode runs and
            ``fallback`` says why.
        """
        self.check_params()
        if discovery_half and self.splits_for_subgroups(len(frame)):
            return discovery_half_calibration(self, frame, roles, map_fn=map_fn)
        mode, fallback = self.resolved_calibration(len(frame))
        if mode == "fixed":
            return cal.fixed_calibration(self.threshold, self.alpha)
        if fallback is not None:
            logger.warning("calibration: %s", fallback)
        if mode == "null" and self.uses_cross_split():
            return cross_split_calibration(
                self, frame, roles, target=decision_target(roles.has_mediator), map_fn=map_fn
            )
        if mode == "null" and self.null_replicates == "scores":
            if selection is None:
                raise ConfigError(
                    "score replicates need the observed selection (effects and raw trees): "
                    "call calibrate(..., selection=...)"
                )
            return score_calibration(self, frame, roles, selection, p_leaf, map_fn=map_fn)
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
