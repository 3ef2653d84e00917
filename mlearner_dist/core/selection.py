"""Step 4's choice: profile trees per K, the decision test of each, and the chosen configuration.

One implementation serves the in-memory estimator (:meth:`MLearner.select`), the distributed
pipeline's profile stage and every null replicate of the calibration, so the statistic that is
calibrated is exactly the statistic that is reported.

For each K the candidate trees (a Pareto front of size against cross-validated error) are grown
on the covariates with the cluster labels as the class; one tree per K is chosen *before* any
test (``tree_choice``), so the choice does not favour trees that happen to test well. The chosen
tree of each K is tested; the configuration with the smallest decision p-value wins, and that
smallest p-value is ``p_leaf``. Because ``p_leaf`` is a minimum over K it is not a p-value; the
calibration (:mod:`mlearner_dist.core.calibration`) gives its threshold.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlearner_dist.core.design_variance import Design
from mlearner_dist.core.interaction_test import interaction_pvalue, select_configuration
from mlearner_dist.core.leaf_statistics import LeafStatistics
from mlearner_dist.core.profile_tree import ProfileTree
from mlearner_dist.core.profiles import choose_tree, fit_profile_trees
from mlearner_dist.core.roles import Roles
from mlearner_dist.core.score_selection import (
    choose_by_score,
    score_candidates,
    score_candidates_from_statistics,
)
from mlearner_dist.exceptions import ConfigError, MLearnerError

EFFECTS = ("indirect", "direct", "total")

#: ``pvalues(tree) -> (p_y, p_m)``: the tests of one tree over every unit (p_m None without M).
PValueFn = Callable[[ProfileTree], tuple[float, "float | None"]]
#: ``statistics(trees) -> {K: LeafStatistics}``: the moments of each K's raw tree's leaves over
#: every unit, in one pass (the distributed profile stage computes them on Spark)
StatisticsFn = Callable[[Mapping[int, ProfileTree]], Mapping[int, LeafStatistics]]


def resolve_effect_names(which: Sequence[str], has_mediator: bool) -> tuple[str, ...]:
    """The effects that make up each unit's vector (``auto``: indirect, or total without M)."""
    names = tuple(which)
    if names == ("auto",):
        return ("indirect",) if has_mediator else ("total",)
    if not has_mediator and any(n in ("indirect", "direct") for n in names):
        raise ConfigError("embed.effects asks for indirect/direct effects but there is no mediator")
    return names


def decision_response(has_mediator: bool) -> str:
    """Which test decides: ``"m"`` (the mediator test) with a mediator, else ``"y"``."""
    return "m" if has_mediator else "y"


def decision_target(has_mediator: bool) -> str:
    """The target whose DR score decides: ``indirect`` with a mediator, else ``total``."""
    return "indirect" if has_mediator else "total"


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


def leaf_pvalues(
    frame: pd.DataFrame, roles: Roles, leaf: np.ndarray, method: str
) -> tuple[float, float | None]:
    """``(p_y, p_m)``: the outcome and mediator interaction tests of one partition.

    Parameters
    ----------
    frame : DataFrame, shape (n, ...)
        Units with the columns named by ``roles``.
    leaf : ndarray, shape (n,)
        Leaf of every unit.
    method : {"f", "lr"}
    """
    t = frame[roles.treatment].to_numpy()
    y = frame[roles.outcome].to_numpy(dtype=float)
    p_y = interaction_pvalue(y, t, leaf, method=method)
    return p_y, mediator_pvalue(frame, roles, leaf, method)


def tree_pvalues(frame: pd.DataFrame, roles: Roles, method: str) -> PValueFn:
    """The :data:`PValueFn` that tests a tree on every unit of ``frame``."""
    X = frame[list(roles.covariates)]

    def pvalues(tree: ProfileTree) -> tuple[float, float | None]:
        return leaf_pvalues(frame, roles, tree.leaf_of(X), method)

    return pvalues


def decision_pvalue(frame: pd.DataFrame, roles: Roles, leaf: np.ndarray, method: str) -> float:
    """The decision test of one partition (what a held-out half is tested with)."""
    p_y, p_m = leaf_pvalues(frame, roles, leaf, method)
    return float(p_m if roles.has_mediator else p_y)  # type: ignore[arg-type]


@dataclass(frozen=True)
class ProfileSettings:
    """How candidate trees are grown and the one tree per K is chosen (``profile:`` section)."""

    criteria: tuple[str, ...] = ("gini", "entropy")
    min_split_fractions: tuple[float, ...] = (0.10, 0.15, 0.20)
    complexity: tuple[float, ...] = tuple(float(c) for c in np.logspace(-6, -2, 16))
    cv_folds: int = 10
    tree_choice: str = "one_se"
    max_rows: int | None = 20_000
    merge_leaves: bool = True
    merge_level: float = 0.05
    covariance: str = "HC1"

    @property
    def score_merge_level(self) -> float | None:
        """The merge level the DR-score selection uses (None: no merging)."""
        return float(self.merge_level) if self.merge_leaves else None


@dataclass
class ProfileChoice:
    """Every tested configuration, the trees, and the chosen one with ``p_leaf``.

    Attributes
    ----------
    configurations : list of dict
        One entry per (K, Pareto tree): k, tree_id, n_leaves, variables, cv_error,
        selected_for_test, p_y, p_m (tested trees only; others None).
    trees : dict
        (K, tree_id) -> ProfileTree.
    chosen : dict
        The tested configuration with the smallest decision p-value, plus ``response``.
    p_leaf : float
        The decision statistic: ``p_leaf_m`` with a mediator, else ``p_leaf_y``.
    p_leaf_y, p_leaf_m : float
        The smallest outcome / mediator p-value over the tested configurations (``p_leaf_m`` None
        without a mediator).
    response : str
        Which test decides: ``"m"``/``"y"`` (reference interaction tests) or
        ``"score_indirect"``/``"score_total"`` (the DR-score test of that target).
    raw_trees : dict
        With the DR-score statistic: K -> the tested tree *before* leaf merging (the replicates
        re-run merging from these); ``trees`` then holds the merged trees at the tested keys.
    """

    configurations: list[dict[str, Any]]
    trees: dict[tuple[int, int], ProfileTree]
    chosen: dict[str, Any]
    p_leaf: float
    p_leaf_y: float
    p_leaf_m: float | None
    response: str
    raw_trees: dict[int, ProfileTree] = field(default_factory=dict)

    @property
    def chosen_tree(self) -> ProfileTree:
        """The profile tree of the chosen configuration (merged, with the DR-score statistic)."""
        return self.trees[(int(self.chosen["k"]), int(self.chosen["tree_id"]))]

    def extra_raw_leaves(self, X: pd.DataFrame) -> dict[int, np.ndarray]:
        """Raw leaf of every unit per K (computed once, then cached for the replicates)."""
        cache = getattr(self, "_raw_leaf_cache", None)
        if cache is None or cache[0] != len(X):
            cache = (len(X), {k: t.leaf_of(X) for k, t in self.raw_trees.items()})
            self._raw_leaf_cache = cache
        return cache[1]


def choose_profile(
    X_fit: pd.DataFrame,
    labels_fit: dict[int, np.ndarray],
    pvalues: PValueFn | None,
    *,
    has_mediator: bool,
    settings: ProfileSettings,
    random_state: int,
    progress: Callable[[str], None] | None = None,
    score: np.ndarray | None = None,
    target: str | None = None,
    design: Design | None = None,
    statistics: StatisticsFn | None = None,
) -> ProfileChoice:
    """Fit profile trees per K, test the tree chosen for each K, and pick the configuration.

    Parameters
    ----------
    X_fit : DataFrame, shape (n_fit, p)
        Covariates of the units the trees are grown on (all units, or a sample at large n).
    labels_fit : dict of K -> ndarray, shape (n_fit,)
        Cluster labels of those units for each K.
    pvalues : callable or None
        ``pvalues(tree) -> (p_y, p_m)``: the interaction tests over every unit. None with
        ``statistics``.
    has_mediator : bool
    settings : ProfileSettings
    random_state : int
    progress : callable, optional
        Called with a short text before each K.
    score : ndarray, shape (n_fit,), optional
        The target's doubly robust score (``test.statistic: dr_score``), row-aligned with
        ``X_fit`` (so the trees must be grown on every unit). Each K's tree is merged on it
        (:func:`~mlearner_dist.core.leaf_merging.merge_leaves` when ``settings.merge_leaves``),
        the merged partition is tested by the robust Wald test of equal leaf means
        (:mod:`mlearner_dist.core.score_test`), and the smallest such p-value decides; the
        reference tests ``p_y``, ``p_m`` are computed on the same merged partitions and reported.
        None: the reference's decision (``p_m`` with a mediator, else ``p_y``).
    target : {"indirect", "total"}, optional
        Name of the score's target (required with ``score``).
    design : Design, optional
        Clusters and weights of the units, row-aligned with ``score``: merging and the score
        tests use the design-based (weighted, cluster-robust) variance.
    statistics : callable, optional
        :data:`StatisticsFn`: the bounded-driver form. ``X_fit`` and ``labels_fit`` are then a
        sample of the units (the trees are grown on it), and every test and the leaf merging
        use the leaf moments over all units that ``statistics`` returns for the trees chosen
        per K (:mod:`mlearner_dist.core.leaf_statistics`). With ``target`` the DR-score test
        of that target decides, else the reference tests; ``score``, ``pvalues`` and
        ``design`` are not used. The tested trees' ``leaf_sizes`` and ``n_total`` then count
        every unit.

    Returns
    -------
    ProfileChoice
    """
    if statistics is not None and (score is not None or design is not None):
        raise MLearnerError(
            "statistics replaces score and design (the unit arrays): give one or the other"
        )
    if statistics is None and pvalues is None:
        raise MLearnerError("pvalues is None: give the tests (pvalues) or statistics")
    use_score = score is not None or (statistics is not None and target is not None)
    if use_score and target not in ("indirect", "total"):
        raise MLearnerError(f"target={target!r}: give 'indirect' or 'total' with a score")
    if score is not None:
        if target not in ("indirect", "total"):
            raise MLearnerError(f"target={target!r}: give 'indirect' or 'total' with a score")
        score = np.asarray(score, dtype=float).ravel()
        if score.shape[0] != len(X_fit):
            raise MLearnerError(
                f"score has {score.shape[0]} values but X_fit has {len(X_fit)} rows: the DR-score "
                "selection grows and tests the trees on the same units"
            )
    configurations: list[dict[str, Any]] = []
    trees: dict[tuple[int, int], ProfileTree] = {}
    for k, labels in sorted(labels_fit.items()):
        if progress is not None:
            progress(f"profile trees for K={k}")
        front = fit_profile_trees(
            X_fit,
            labels,
            criteria=tuple(settings.criteria),
            min_split_fractions=tuple(settings.min_split_fractions),
            complexity=np.asarray(settings.complexity, dtype=float),
            cv_folds=settings.cv_folds,
            random_state=random_state,
            max_rows=settings.max_rows,
        )
        selected = choose_tree(front, settings.tree_choice)
        for tree in front:
            trees[(k, tree.tree_id)] = tree
            is_sel = tree.tree_id == selected.tree_id
            by_tree = is_sel and not use_score and statistics is None
            p_y, p_m = pvalues(tree) if by_tree else (None, None)  # type: ignore[misc]
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
    raw_trees: dict[int, ProfileTree] = {}
    stats: Mapping[int, LeafStatistics] = {}
    if statistics is not None:
        # one pass over every unit for the tested tree of each K; their sizes count all units
        stats = statistics({c["k"]: trees[(c["k"], c["tree_id"])] for c in tested})
        for conf in tested:
            key = (conf["k"], conf["tree_id"])
            trees[key] = _counted_on_all_units(trees[key], stats[conf["k"]])
    if not use_score:
        response = decision_response(has_mediator)
        if statistics is not None:
            for conf in tested:
                conf["p_y"], conf["p_m"] = stats[conf["k"]].interaction_pvalues()
        chosen = dict(select_configuration(tested, response))
    else:
        response = f"score_{target}"
        raw_trees = {c["k"]: trees[(c["k"], c["tree_id"])] for c in tested}
        if statistics is not None:
            cands = score_candidates_from_statistics(
                raw_trees,
                stats,
                str(target),
                merge_level=settings.score_merge_level,
                covariance=settings.covariance,
            )
        else:
            cands = score_candidates(
                raw_trees,
                X_fit,
                score,
                merge_level=settings.score_merge_level,
                covariance=settings.covariance,
                design=design,
            )
        for cand, conf in zip(cands, tested, strict=True):
            merged = cand["tree"]
            trees[(conf["k"], conf["tree_id"])] = merged
            if statistics is not None:
                p_y, p_m = cand["statistics"].interaction_pvalues()
            else:
                p_y, p_m = pvalues(merged)  # type: ignore[misc]
            conf.update(
                n_leaves=int(merged.n_leaves),
                raw_n_leaves=int(cand["raw_n_leaves"]),
                variables=list(merged.variables),
                p_y=p_y,
                p_m=p_m,
                p_score=float(cand["p_score"]),
            )
        best = choose_by_score(cands)
        chosen = dict(next(c for c in tested if c["k"] == best["k"]))
    chosen["response"] = response
    p_leaf_y = float(min(c["p_y"] for c in tested))
    p_leaf_m = float(min(c["p_m"] for c in tested)) if has_mediator else None
    if not use_score:
        p_leaf = float(p_leaf_m if has_mediator else p_leaf_y)  # type: ignore[arg-type]
    else:
        p_leaf = float(chosen["p_score"])
    return ProfileChoice(
        configurations=configurations,
        trees=trees,
        chosen=chosen,
        p_leaf=p_leaf,
        p_leaf_y=p_leaf_y,
        p_leaf_m=p_leaf_m,
        response=response,
        raw_trees=raw_trees,
    )


def _counted_on_all_units(tree: ProfileTree, stats: LeafStatistics) -> ProfileTree:
    """``tree`` with ``leaf_sizes`` and ``n_total`` from the moments over every unit."""
    sizes = {int(k): 0 for k in tree.rules}
    sizes.update(stats.leaf_sizes())
    n_total = int(sum(sizes.values()))
    return dataclasses.replace(
        tree, leaf_sizes=sizes, n_total=n_total, sampled=tree.n_fit < n_total
    )


def rerun_score_choice(
    choice: ProfileChoice,
    X: pd.DataFrame,
    score: np.ndarray,
    settings: ProfileSettings,
    design: Design | None = None,
) -> float:
    """``p_leaf`` of the DR-score selection re-run on another score vector (a null replicate).

    The raw trees do not depend on the scores, so only leaf merging, the tests and the choice
    over K are re-run: exactly the steps of :func:`choose_profile` that read the score (with the
    same ``design``).
    """
    if not choice.raw_trees:
        raise MLearnerError(
            "this profile choice was not made on DR scores (test.statistic: interaction): score "
            "replicates need test.statistic: dr_score"
        )
    cands = score_candidates(
        choice.raw_trees,
        X,
        score,
        merge_level=settings.score_merge_level,
        covariance=settings.covariance,
        raw_leaves=choice.extra_raw_leaves(X),
        design=design,
    )
    return float(choose_by_score(cands)["p_score"])


def profiles_document(choice: ProfileChoice) -> dict[str, Any]:
    """``profiles.json``: every configuration with its leaves, the choice and ``p_leaf``."""
    profiles = []
    for c in choice.configurations:
        tree = choice.trees[(c["k"], c["tree_id"])]
        d = dict(c)
        d["params"] = tree.to_dict().get("params", {})
        d["leaves"] = [
            {"leaf": int(lf), "rule": tree.rules[lf], "n": int(n)}
            for lf, n in sorted(tree.leaf_sizes.items())
        ]
        profiles.append(d)
    return {
        "configurations": profiles,
        "chosen": choice.chosen,
        "statistic": choice.response,
        "p_leaf_y": choice.p_leaf_y,
        "p_leaf_m": choice.p_leaf_m,
        "p_leaf": choice.p_leaf,
        "raw_trees": {str(k): t.to_dict() for k, t in sorted(choice.raw_trees.items())},
    }


@dataclass
class Selection:
    """What one pass of the selection (steps 1 to 4, no calibration) produced."""

    effects: pd.DataFrame
    diagnostics: dict[str, Any]
    embedding: np.ndarray
    embedding_info: dict[str, Any]
    labels: dict[int, np.ndarray]
    wcss: dict[int, float]
    profile: ProfileChoice
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def configurations(self) -> list[dict[str, Any]]:
        """Every (K, tree) configuration with its p-values."""
        return self.profile.configurations

    @property
    def trees(self) -> dict[tuple[int, int], ProfileTree]:
        """(K, tree_id) -> ProfileTree."""
        return self.profile.trees

    @property
    def chosen(self) -> dict[str, Any]:
        """The chosen configuration."""
        return self.profile.chosen

    @property
    def response(self) -> str:
        """``"m"`` or ``"y"``: which test decides."""
        return self.profile.response

    @property
    def p_leaf(self) -> float:
        """The decision statistic of the chosen configuration."""
        return self.profile.p_leaf

    @property
    def p_leaf_y(self) -> float:
        """The smallest outcome-test p-value over the tested configurations."""
        return self.profile.p_leaf_y

    @property
    def p_leaf_m(self) -> float | None:
        """The smallest mediator-test p-value (None without a mediator)."""
        return self.profile.p_leaf_m

    @property
    def chosen_tree(self) -> ProfileTree:
        """The profile tree of the chosen configuration."""
        return self.profile.chosen_tree


__all__ = [
    "EFFECTS",
    "ProfileChoice",
    "ProfileSettings",
    "Selection",
    "choose_profile",
    "decision_pvalue",
    "decision_response",
    "decision_target",
    "leaf_pvalues",
    "mediator_pvalue",
    "profiles_document",
    "rerun_score_choice",
    "resolve_effect_names",
    "tree_pvalues",
]
