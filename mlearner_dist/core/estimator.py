"""The in-memory M-learner: every step of the method on a pandas frame.

This is the reference composition of the core functions. The distributed pipeline
(:mod:`mlearner_dist.pipeline`) runs the same steps with Spark and Dask at the edges, and the null
calibration re-runs :meth:`MLearner.select` on each null replicate, so the threshold accounts for
every data-driven choice the selection makes.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlearner_dist.core import calibration as cal
from mlearner_dist.core.clustering import kmeans_for_k
from mlearner_dist.core.effects import cross_fit_effects
from mlearner_dist.core.embedding import effect_matrix, embed
from mlearner_dist.core.interaction_test import interaction_pvalue, select_configuration
from mlearner_dist.core.nuisance import NuisanceSpec
from mlearner_dist.core.profiles import ProfileTree, choose_tree, fit_profile_trees
from mlearner_dist.core.roles import Roles
from mlearner_dist.core.subgroup_effects import (
    adjusted_subgroup_effects,
    unadjusted_subgroup_effects,
)
from mlearner_dist.exceptions import ConfigError

logger = logging.getLogger(__name__)

EFFECTS = ("indirect", "direct", "total")


def resolve_effect_names(which: Sequence[str], has_mediator: bool) -> tuple[str, ...]:
    """The effects that make up each unit's vector (``auto``: indirect, or total without M)."""
    names = tuple(which)
    if names == ("auto",):
        return ("indirect",) if has_mediator else ("total",)
    if not has_mediator and any(n in ("indirect", "direct") for n in names):
        raise ConfigError("embed.effects asks for indirect/direct effects but there is no mediator")
    return names


def mediator_pvalue(
    frame: pd.DataFrame, roles: Roles, leaf: np.ndarray, method: str
) -> float | None:
    """Leaf x treatment interaction p-value with the mediator as the response.

    Several mediators: the smallest per-mediator p-value times their number (Bonferroni), capped at
    one. No mediator: None.
    """
    if not roles.has_mediator:
        return None
    t = frame[roles.treatment].to_numpy()
    ps = [
        interaction_pvalue(frame[m].to_numpy(dtype=float), t, leaf, method=method)
        for m in roles.mediators
    ]
    return float(min(1.0, min(ps) * len(ps)))


@dataclass
class Selection:
    """What one pass of the selection (steps 1 to 4, no calibration) produced."""

    effects: pd.DataFrame
    diagnostics: dict[str, Any]
    embedding: np.ndarray
    embedding_info: dict[str, Any]
    labels: dict[int, np.ndarray]
    wcss: dict[int, float]
    configurations: list[dict[str, Any]]
    trees: dict[tuple[int, int], ProfileTree]
    chosen: dict[str, Any]
    response: str
    p_leaf: float
    p_leaf_y: float
    p_leaf_m: float | None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def chosen_tree(self) -> ProfileTree:
        """The profile tree of the chosen configuration."""
        return self.trees[(int(self.chosen["k"]), int(self.chosen["tree_id"]))]


def profile_and_test(
    X_fit: pd.DataFrame,
    labels_fit: dict[int, np.ndarray],
    pvalues: Callable[[ProfileTree], tuple[float, float | None]],
    *,
    has_mediator: bool,
    criteria: Sequence[str],
    min_split_fractions: Sequence[float],
    complexity: Sequence[float],
    cv_folds: int,
    tree_choice: str,
    max_rows: int | None,
    random_state: int,
    progress: Callable[[str], None] | None = None,
) -> tuple[list[dict[str, Any]], dict[tuple[int, int], ProfileTree], dict[str, Any]]:
    """Fit profile trees per K, test the tree chosen for each K, and pick the configuration.

    Parameters
    ----------
    X_fit : DataFrame, shape (n_fit, p)
        Covariates of the units the trees are grown on (all units, or a sample at large n).
    labels_fit : dict of K -> ndarray, shape (n_fit,)
        Cluster labels of those units for each K.
    pvalues : callable
        ``pvalues(tree) -> (p_y, p_m)``: the interaction tests over every unit (p_m None without a
        mediator). Keeping this a callable lets the distributed path test from aggregates.
    tree_choice : {"one_se", "first_pareto"}
        How the one tree per K is chosen *before* testing (so the choice does not favour size).

    Returns
    -------
    configurations : list of dict
        One entry per (K, Pareto tree): k, tree_id, n_leaves, variables, cv_error,
        selected_for_test, p_y, p_m (tested trees only; others None).
    trees : dict
        (K, tree_id) -> ProfileTree.
    chosen : dict
        The configuration with the smallest p-value for the decision response.
    """
    configurations: list[dict[str, Any]] = []
    trees: dict[tuple[int, int], ProfileTree] = {}
    for k, labels in sorted(labels_fit.items()):
        if progress is not None:
            progress(f"profile trees for K={k}")
        front = fit_profile_trees(
            X_fit,
            labels,
            criteria=tuple(criteria),
            min_split_fractions=tuple(min_split_fractions),
            complexity=np.asarray(complexity, dtype=float),
            cv_folds=cv_folds,
            random_state=random_state,
            max_rows=max_rows,
        )
        selected = choose_tree(front, tree_choice)
        for tree in front:
            trees[(k, tree.tree_id)] = tree
            is_sel = tree.tree_id == selected.tree_id
            p_y, p_m = pvalues(tree) if is_sel else (None, None)
            configurations.append(
                {
                    "k": int(k),
                    "tree_id": int(tree.tree_id),
                    "n_leaves": int(tree.n_leaves),
                    "variables": list(tree.variables),
                    "cv_error": float(tree.cv_error),
                    "selected_for_test": bool(is_sel),
                    "p_y": p_y,
                    "p_m": p_m,
                }
            )
    tested = [c for c in configurations if c["selected_for_test"]]
    response = "m" if has_mediator else "y"
    chosen = dict(select_configuration(tested, response))
    chosen["response"] = response
    return configurations, trees, chosen


class MLearner:
    """The M-learner on an in-memory pandas frame.

    Parameters mirror the configuration sections (see ``conf/base.yaml``); every parameter has the
    documented default. ``fit`` runs steps 1 to 4 and the calibration; results are in the
    attributes ending in ``_``.

    Attributes
    ----------
    effects_ : DataFrame
        Per-unit indirect, direct, total effects, nuisance predictions and scores.
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
    """

    def __init__(
        self,
        *,
        n_folds: int = 5,
        learner: str = "hist_gradient_boosting",
        learner_params: dict[str, Any] | None = None,
        estimator: str = "nested",
        row_budget: int = 200_000,
        propensity_clip: float = 0.01,
        design: str = "randomised",
        embed_effects: Sequence[str] = ("auto",),
        scaling: str = "standardize",
        exact_max_n: int = 5000,
        n_landmarks: int = 5000,
        perplexity: float = 30.0,
        n_iter: int = 2000,
        kernel_power: int = 2,
        grid_size: int = 20_000,
        n_jobs: int = 2,
        k_values: Sequence[int] = (2, 3, 4, 5),
        n_init: int = 10,
        max_iter: int = 50,
        cluster_on: str = "effects",
        criteria: Sequence[str] = ("gini", "entropy"),
        min_split_fractions: Sequence[float] = (0.10, 0.15, 0.20),
        complexity: Sequence[float] = tuple(np.logspace(-6, -2, 16)),
        cv_folds: int = 10,
        tree_choice: str = "one_se",
        max_rows: int | None = 20_000,
        test_method: str = "f",
        calibration: str = "null",
        alpha: float = 0.05,
        n_replicates: int = 19,
        threshold: float = 0.0043,
        n_bootstrap: int = 1000,
        level: float = 0.95,
        min_subgroup: int = 10,
        random_state: int = 2025,
    ) -> None:
        self.n_folds = n_folds
        self.learner = learner
        self.learner_params = learner_params
        self.estimator = estimator
        self.row_budget = row_budget
        self.propensity_clip = propensity_clip
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
        self.n_bootstrap = n_bootstrap
        self.level = level
        self.min_subgroup = min_subgroup
        self.random_state = random_state

    # -- construction from the configuration -------------------------------------------------
    @classmethod
    def from_config(cls, cfg: Any) -> MLearner:
        """Build from a :class:`mlearner_dist.config.Config`."""
        p = cfg.profile
        return cls(
            n_folds=cfg.effects.n_folds,
            learner=cfg.effects.learner,
            learner_params=dict(cfg.effects.learner_params),
            estimator=cfg.effects.estimator,
            row_budget=cfg.effects.row_budget,
            propensity_clip=cfg.effects.propensity_clip,
            design=cfg.design,
            embed_effects=cfg.embed.effects,
            scaling=cfg.embed.scaling,
            exact_max_n=cfg.embed.exact_max_n,
            n_landmarks=cfg.embed.n_landmarks,
            perplexity=cfg.embed.perplexity,
            n_iter=cfg.embed.n_iter,
            kernel_power=cfg.embed.kernel_power,
            grid_size=cfg.embed.grid_size,
            n_jobs=cfg.embed.n_jobs,
            k_values=tuple(range(cfg.cluster.k_min, cfg.cluster.k_max + 1)),
            n_init=cfg.cluster.n_init,
            max_iter=cfg.cluster.max_iter,
            cluster_on=cfg.cluster.space,
            criteria=p.criteria,
            min_split_fractions=p.min_split_fractions,
            complexity=tuple(
                np.logspace(np.log10(p.complexity_min), np.log10(p.complexity_max), p.n_complexity)
            ),
            cv_folds=p.cv_folds,
            tree_choice=p.tree_choice,
            max_rows=p.max_rows,
            test_method=cfg.test.method,
            calibration=cfg.calibration.mode,
            alpha=cfg.calibration.alpha,
            n_replicates=cfg.calibration.n_replicates,
            threshold=cfg.calibration.threshold,
            n_bootstrap=cfg.subgroups.n_bootstrap,
            level=cfg.subgroups.level,
            min_subgroup=cfg.validation.min_subgroup,
            random_state=cfg.random_state,
        )

    def nuisance_spec(self) -> NuisanceSpec:
        """The nuisance-model settings as the effects step takes them."""
        return NuisanceSpec(
            learner=self.learner,
            learner_params=dict(self.learner_params or {}),
            row_budget=self.row_budget,
            random_state=self.random_state,
            design=self.design,
            estimator=self.estimator,
            propensity_clip=self.propensity_clip,
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
        map_fn: Callable[..., list[Any]] | None = None,
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
            ``map_fn(func, items) -> list`` used to run null replicates in parallel (e.g. a Dask
            client's map + gather); default runs them one after another.

        Returns
        -------
        self
        """
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
        map_fn: Callable[..., list[Any]] | None = None,
    ) -> MLearner:
        """Fit on a frame whose columns are named by ``roles`` (validated beforehand)."""
        from mlearner_dist.validation import validate_frame

        frame, account = validate_frame(
            frame, roles, min_treated=2, min_control=2, n_folds=self.n_folds
        )
        self.row_account_ = account.to_dict()
        self.roles_ = roles
        sel = self.select(frame, roles)
        self.selection_ = sel
        self.effects_ = sel.effects
        self.p_leaf_ = sel.p_leaf
        self.calibration_ = self.calibrate(frame, roles, sel, map_fn=map_fn)
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
        rs = self.random_state if seed is None else seed
        spec = self.nuisance_spec()
        if seed is not None:
            spec = NuisanceSpec(**{**spec.__dict__, "random_state": rs})
        effects, diagnostics = cross_fit_effects(frame, roles, spec, n_folds=self.n_folds, seed=rs)
        effects = effects.set_index("unit_id").loc[frame[roles.unit_id].to_numpy()].reset_index()
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
            )
        km = kmeans_for_k(
            Y2, list(self.k_values), n_init=self.n_init, max_iter=self.max_iter, random_state=rs
        )
        labels = {k: km[k][0] for k in km}
        wcss = {k: float(km[k][2]) for k in km}
        X = frame[list(roles.covariates)]
        t = frame[roles.treatment].to_numpy()
        y = frame[roles.outcome].to_numpy(dtype=float)

        def pvalues(tree: ProfileTree) -> tuple[float, float | None]:
            leaf = tree.leaf_of(X)
            p_y = interaction_pvalue(y, t, leaf, method=self.test_method)
            return p_y, mediator_pvalue(frame, roles, leaf, self.test_method)

        configurations, trees, chosen = profile_and_test(
            X,
            labels,
            pvalues,
            has_mediator=roles.has_mediator,
            criteria=self.criteria,
            min_split_fractions=self.min_split_fractions,
            complexity=self.complexity,
            cv_folds=self.cv_folds,
            tree_choice=self.tree_choice,
            max_rows=self.max_rows,
            random_state=rs,
        )
        tested = [c for c in configurations if c["selected_for_test"]]
        p_leaf_y = float(min(c["p_y"] for c in tested))
        p_leaf_m = float(min(c["p_m"] for c in tested)) if roles.has_mediator else None
        p_leaf = p_leaf_m if roles.has_mediator else p_leaf_y
        return Selection(
            effects=effects,
            diagnostics=diagnostics,
            embedding=Y2,
            embedding_info=info,
            labels=labels,
            wcss=wcss,
            configurations=configurations,
            trees=trees,
            chosen=chosen,
            response=chosen["response"],
            p_leaf=float(p_leaf),
            p_leaf_y=p_leaf_y,
            p_leaf_m=p_leaf_m,
        )

    def null_p_leaf(self, frame: pd.DataFrame, roles: Roles, replicate: int) -> float:
        """p_leaf of the whole selection re-run on null replicate number ``replicate``."""
        rng = np.random.default_rng([self.random_state, replicate])
        shift_m, shift_y = _average_shifts(frame, roles)
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
        sel: Selection,
        *,
        map_fn: Callable[..., list[Any]] | None = None,
    ) -> dict[str, Any]:
        """The threshold for ``p_leaf``, by the configured mode (fixed, null or split)."""
        if self.calibration == "fixed":
            return {
                "mode": "fixed",
                "alpha": self.alpha,
                "threshold": float(self.threshold),
                "n_replicates": 0,
                "null_p_leaf": [],
                "mc_pvalue": None,
                "how": f"fixed threshold {self.threshold} from the configuration (the reference's "
                "value comes from its simulated null scenarios)",
            }
        if self.calibration == "null":
            reps = list(range(self.n_replicates))
            if map_fn is None:
                null_p = [self.null_p_leaf(frame, roles, r) for r in reps]
            else:
                null_p = list(map_fn(lambda r: self.null_p_leaf(frame, roles, r), reps))
            null_p = [float(p) for p in null_p]
            thr = cal.null_threshold(null_p, self.alpha)
            return {
                "mode": "null",
                "alpha": self.alpha,
                "threshold": float(thr),
                "n_replicates": len(null_p),
                "null_p_leaf": null_p,
                "mc_pvalue": float(cal.monte_carlo_pvalue(sel.p_leaf, null_p)),
                "how": (
                    f"the whole selection (effects, embedding, K-means, trees, tests) re-run on "
                    f"{len(null_p)} null replicates of these data (treatment re-randomised, "
                    f"constant effect); threshold = the alpha={self.alpha} quantile of their "
                    "p_leaf values"
                ),
            }
        if self.calibration == "split":
            return split_calibration(self, frame, roles)
        raise ConfigError(f"calibration={self.calibration!r}: choose fixed, null or split")

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


def _average_shifts(frame: pd.DataFrame, roles: Roles) -> tuple[np.ndarray | None, float]:
    t = frame[roles.treatment].to_numpy() == 1
    shift_y = float(frame.loc[t, roles.outcome].mean() - frame.loc[~t, roles.outcome].mean())
    if not roles.has_mediator:
        return None, shift_y
    shift_m = np.array(
        [frame.loc[t, m].mean() - frame.loc[~t, m].mean() for m in roles.mediators], dtype=float
    )
    return shift_m, shift_y


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
    t = holdout[roles.treatment].to_numpy()
    if roles.has_mediator:
        p = mediator_pvalue(holdout, roles, leaf, model.test_method)
    else:
        p = interaction_pvalue(
            holdout[roles.outcome].to_numpy(dtype=float), t, leaf, method=model.test_method
        )
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
        si, st = effects["score_indirect"].to_numpy(), effects["score_total"].to_numpy()
        mi, mt = si.mean(), st.mean()
        ratio = mi / mt if mt != 0 else np.nan
        infl = (si - mi - ratio * (st - mt)) / mt if mt != 0 else np.full(n, np.nan)
        se = infl.std(ddof=1) / np.sqrt(n)
        out["prop_mediated"] = _ci(ratio, ratio - z * se, ratio + z * se)
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
