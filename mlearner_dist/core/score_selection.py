"""The score-dependent part of the selection: leaf merging, DR-score test, choice of configuration.

For ``fidelity: ours`` the decision statistic of a target (``indirect``, or ``total``; without
a mediator only ``total``) is the robust Wald test of equal leaf means of that target's doubly
robust score (:mod:`mlearner_dist.core.score_test`). The selection is split in two:

1. *score-independent*: unit effects -> embedding -> K-means -> one profile tree per K chosen
   before any test (:func:`~mlearner_dist.core.profiles.choose_tree`); these read the unit
   effects and the covariates only;
2. *score-dependent* (:func:`score_candidates`, :func:`choose_by_score`): each K's tree is
   simplified by :func:`~mlearner_dist.core.leaf_merging.merge_leaves` on the target's score,
   the merged partition is tested on the same score, and the configuration with the smallest
   p-value is chosen; its p-value is ``p_leaf``.

The score replicates of :mod:`mlearner_dist.core.score_replicates` re-run step 2 on every
replicate (and may re-run step 1 with the replicate's seed), so the calibrated statistic is the
one the selection minimised, merging included, and the reported subgroups are exactly the
merged partition whose p-value was calibrated.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from mlearner_dist.core.design_variance import Design
from mlearner_dist.core.leaf_merging import merge_leaves, merge_leaves_from_moments
from mlearner_dist.core.leaf_statistics import LeafStatistics
from mlearner_dist.core.profile_tree import ProfileTree
from mlearner_dist.core.score_test import score_pvalue
from mlearner_dist.exceptions import MLearnerError

__all__ = [
    "TARGETS",
    "choose_by_score",
    "score_candidates",
    "score_candidates_from_statistics",
    "score_pleaf",
    "target_score",
]

TARGETS = ("indirect", "total")


def target_score(effects: pd.DataFrame, target: str) -> np.ndarray:
    """The DR score column of a target, checked.

    Parameters
    ----------
    effects : DataFrame
        The effects table.
    target : {"indirect", "total"}

    Returns
    -------
    ndarray, shape (n,)
    """
    if target not in TARGETS:
        raise MLearnerError(f"target={target!r}: choose one of {list(TARGETS)}")
    col = f"score_{target}"
    if col not in effects.columns or effects[col].isna().all():
        raise MLearnerError(
            f"the effects table has no {col!r} values"
            + (": the indirect target needs a mediator" if target == "indirect" else "")
        )
    return effects[col].to_numpy(dtype=float)


def score_candidates(
    trees: Mapping[int, ProfileTree],
    X: pd.DataFrame,
    score: Any,
    *,
    merge_level: float | None = 0.05,
    covariance: str = "HC1",
    raw_leaves: Mapping[int, np.ndarray] | None = None,
    design: Design | None = None,
) -> list[dict[str, Any]]:
    """Merge and test the tree of every K on one score.

    Parameters
    ----------
    trees : mapping of K -> ProfileTree
        The tree chosen for each K before testing.
    X : DataFrame, shape (n, p)
        Covariates of the units, row-aligned with ``score``.
    score : array-like, shape (n,)
        The target's DR score.
    merge_level : float in (0, 1) or None
        Level of the merge tests (:func:`~mlearner_dist.core.leaf_merging.merge_leaves`); None
        tests the raw trees.
    covariance : {"HC1", "HC0"}
    raw_leaves : mapping of K -> ndarray of int, optional
        ``trees[k].leaf_of(X)`` for every K, when the caller has them (the replicates reuse the
        observed ones: the raw trees do not depend on the scores).
    design : Design, optional
        Clusters and weights of the units (the effects table's, row-aligned with ``score``):
        merging and tests use the design-based variance. None: independent, equal units.

    Returns
    -------
    list of dict
        Per K (ascending): ``k``, ``tree_id``, ``raw_n_leaves``, ``n_leaves`` and ``variables``
        (of the tested, merged tree), ``p_score``, ``tree`` (the merged :class:`ProfileTree`)
        and ``leaf`` (its leaf of every unit); drop the last two before writing JSON.
    """
    if not trees:
        raise MLearnerError("trees is empty: one profile tree per K is needed")
    s = np.asarray(score, dtype=float).ravel()
    out = []
    for k in sorted(trees):
        raw = trees[k]
        raw_leaf = raw.leaf_of(X) if raw_leaves is None else np.asarray(raw_leaves[k])
        if merge_level is None:
            tree, leaf = raw, raw_leaf
        else:
            merged = merge_leaves(
                raw,
                X,
                s,
                level=merge_level,
                covariance=covariance,
                raw_leaf=raw_leaf,
                design=design,
            )
            tree, leaf = merged.tree, merged.merged_leaf(raw_leaf)
        p = score_pvalue(s, leaf, covariance=covariance, design=design)
        out.append(_candidate(k, raw, tree, p, leaf=leaf))
    return out


def score_candidates_from_statistics(
    trees: Mapping[int, ProfileTree],
    statistics: Mapping[int, LeafStatistics],
    target: str,
    *,
    merge_level: float | None = 0.05,
    covariance: str = "HC1",
) -> list[dict[str, Any]]:
    """:func:`score_candidates` from each raw tree's leaf moments instead of the unit scores.

    The aggregate form for a driver that does not hold the units: ``statistics[k]`` are the
    moments of ``trees[k]``'s raw leaves over every unit
    (:func:`~mlearner_dist.core.leaf_statistics.tree_statistics`, pooled over partitions).
    Merging (:func:`~mlearner_dist.core.leaf_merging.merge_leaves_from_moments`) and the test
    of the merged partition use the same formulas as :func:`score_candidates`, so the two agree
    up to rounding on the same units (independent, equal units: no design).

    Parameters
    ----------
    trees : mapping of K -> ProfileTree
    statistics : mapping of K -> LeafStatistics
        With moments of the score ``target``.
    target : {"indirect", "total"}
    merge_level : float in (0, 1) or None
    covariance : {"HC1", "HC0"}

    Returns
    -------
    list of dict
        As :func:`score_candidates`, with ``statistics`` (the merged partition's
        :class:`~mlearner_dist.core.leaf_statistics.LeafStatistics`) in place of ``leaf``.
    """
    if not trees:
        raise MLearnerError("trees is empty: one profile tree per K is needed")
    missing = sorted(set(trees) - set(statistics))
    if missing:
        raise MLearnerError(f"no leaf statistics for K = {missing}")
    out = []
    for k in sorted(trees):
        raw, stats = trees[k], statistics[k]
        if merge_level is None:
            tree, merged_stats = raw, stats
        else:
            merged = merge_leaves_from_moments(
                raw, stats.score_moments(target), level=merge_level, covariance=covariance
            )
            tree, merged_stats = merged.tree, stats.relabel(merged.leaf_map)
        p = merged_stats.score_pvalue(target, covariance=covariance)
        out.append(_candidate(k, raw, tree, p, statistics=merged_stats))
    return out


def _candidate(
    k: int, raw: ProfileTree, tree: ProfileTree, p_score: float, **extra: Any
) -> dict[str, Any]:
    """One K's candidate record (the keys both forms of :func:`score_candidates` return)."""
    return {
        "k": int(k),
        "tree_id": int(raw.tree_id),
        "raw_n_leaves": int(raw.n_leaves),
        "n_leaves": int(tree.n_leaves),
        "variables": list(tree.variables),
        "p_score": p_score,
        "tree": tree,
        **extra,
    }


def choose_by_score(candidates: list[dict[str, Any]]) -> dict[str, Any]:
    """The candidate with the smallest ``p_score``; ties to fewer leaves, then smaller K."""
    if not candidates:
        raise MLearnerError("candidates is empty: no configuration was tested")
    return min(candidates, key=lambda c: (c["p_score"], c["n_leaves"], c["k"]))


def score_pleaf(
    trees: Mapping[int, ProfileTree],
    X: pd.DataFrame,
    score: Any,
    *,
    merge_level: float | None = 0.05,
    covariance: str = "HC1",
    raw_leaves: Mapping[int, np.ndarray] | None = None,
    design: Design | None = None,
) -> float:
    """``p_leaf`` of the score-dependent selection: the chosen candidate's ``p_score``."""
    cands = score_candidates(
        trees,
        X,
        score,
        merge_level=merge_level,
        covariance=covariance,
        raw_leaves=raw_leaves,
        design=design,
    )
    return float(choose_by_score(cands)["p_score"])
