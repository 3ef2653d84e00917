"""Simplify a profile tree so that every remaining split changes the effect.

A profile tree is grown to reproduce cluster labels, so some of its splits separate clusters that
the effect does not distinguish (noise covariates, or a second cut of the same level). Leaf
merging removes them bottom-up, on the doubly robust scores of the effect being profiled:

1. Visit the internal nodes in post-order (children before parents).
2. At a node whose two children are both leaves (originally, or after merging), test equality of
   the children's mean scores with the robust Wald test of :mod:`mlearner_dist.core.score_test`
   on the two leaves (for two leaves ``W = (m_a - m_b)^2 / (v_a + v_b)``, the square of a Welch
   z statistic, ``p = P(chi2_1 > W)``).
3. If ``p >= level`` (no evidence that the split changes the effect), replace the node by a leaf
   holding both children's units. The parent may then become mergeable in turn.

A split survives only when its two sides differ at the stated level, or when one side is itself
split further by a surviving split (sibling merging keeps a tree, so every subgroup keeps a
readable conjunctive rule; a noise split *above* real splits is kept, as its two sides are not
leaves). The merged partition is coarser than the raw one and every leaf's rule is the path to it.

The simplification uses the scores, so it is part of the selection: a calibration that re-runs
the selection on null replicates must re-run it on each replicate's scores (it does, when it calls
the same selection function), and the reported subgroups are exactly the merged partition whose
p-value is calibrated. The raw tree is kept beside the merged one for reference.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlearner_dist.core.design_variance import Design, design_wald_test
from mlearner_dist.core.profile_tree import ProfileTree, TreeNode, rule_text
from mlearner_dist.core.score_test import COVARIANCES, pvalue_from_moments
from mlearner_dist.exceptions import InputValidationError, MLearnerError

__all__ = ["MergeResult", "merge_leaves", "merge_leaves_from_moments"]


@dataclass(frozen=True)
class MergeResult:
    """A profile tree simplified by :func:`merge_leaves`.

    Attributes
    ----------
    tree : ProfileTree
        The merged tree: same ``tree_id``, ``covariates`` and CV figures as the raw tree (those
        describe the raw tree's fit to the cluster labels), ``params`` with ``merge_level`` and
        ``raw_n_leaves`` added, leaves renumbered left to right, rules and sizes of the merged
        leaves, ``variables`` of the surviving splits.
    raw_tree : ProfileTree
        The tree as grown.
    leaf_map : dict of int to int
        Raw leaf id -> merged leaf id.
    tests : list of dict
        One entry per tested node, in the order visited: ``variable`` of the split, ``n_left``,
        ``n_right``, ``mean_left``, ``mean_right``, ``pvalue`` and ``merged``.
    level : float
        The level of each merge test.
    """

    tree: ProfileTree
    raw_tree: ProfileTree
    leaf_map: dict[int, int]
    tests: list[dict[str, Any]]
    level: float

    def merged_leaf(self, raw_leaf: np.ndarray) -> np.ndarray:
        """Merged leaf ids from raw leaf ids (``raw_tree.leaf_of(X)``), shape preserved."""
        raw_leaf = np.asarray(raw_leaf, dtype=np.int64)
        lookup = np.zeros(max(self.leaf_map) + 1, dtype=np.int64)
        for k, v in self.leaf_map.items():
            lookup[k] = v
        return lookup[raw_leaf]

    @property
    def n_merged(self) -> int:
        """How many splits were removed."""
        return sum(1 for t in self.tests if t["merged"])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description: merged and raw trees, the leaf map and the tests."""
        return {
            "level": float(self.level),
            "n_merged": int(self.n_merged),
            "tree": self.tree.to_dict(),
            "raw_tree": self.raw_tree.to_dict(),
            "leaf_map": {str(k): int(v) for k, v in self.leaf_map.items()},
            "tests": [dict(t) for t in self.tests],
        }


def merge_leaves(
    tree: ProfileTree,
    X: pd.DataFrame,
    score: Any,
    *,
    level: float = 0.05,
    covariance: str = "HC1",
    min_leaf_n: int = 2,
    raw_leaf: np.ndarray | None = None,
    design: Design | None = None,
) -> MergeResult:
    """Merge sibling leaves whose mean scores do not differ at ``level``, bottom-up.

    Parameters
    ----------
    tree : ProfileTree
        A profile tree (from :func:`~mlearner_dist.core.profiles.fit_profile_trees`).
    X : DataFrame, shape (n, p)
        Covariates of the units whose scores are given (every column the tree splits on).
    score : array-like, shape (n,)
        The doubly robust score of the profiled effect (e.g. the effects table's
        ``score_indirect``), row-aligned with ``X``.
    level : float in (0, 1), default 0.05
        A split is kept when the test of equal means of its two sides has ``p < level``.
        ``level`` close to 1 keeps almost every split; small values merge more.
    covariance : {"HC1", "HC0"}
        The robust variance of :func:`~mlearner_dist.core.score_test.score_test_from_aggregates`.
    min_leaf_n : int, default 2
        A side with fewer units is merged into its sibling (no variance to test with).
    raw_leaf : ndarray of int, shape (n,), optional
        ``tree.leaf_of(X)`` when the caller has it (replicates reuse it); computed otherwise.
    design : Design, optional
        Clusters and weights of the units: each merge test is then the design-based Wald test
        of the two sides (:func:`~mlearner_dist.core.design_variance.design_wald_test`, weighted
        means, cluster-robust covariance) and the recorded means are weighted. None: the
        unit formula from per-leaf moments.

    Returns
    -------
    MergeResult

    Raises
    ------
    MLearnerError
        ``tree`` is not a ProfileTree, ``level`` outside (0, 1).
    InputValidationError
        ``score`` not aligned with ``X`` or not finite; a covariate the tree uses is missing.
    """
    if not isinstance(tree, ProfileTree):
        raise MLearnerError(f"tree must be a ProfileTree, got {type(tree).__name__}")
    if (
        isinstance(level, bool)
        or not isinstance(level, (int, float, np.floating))
        or not 0.0 < float(level) < 1.0
    ):
        raise MLearnerError(f"level={level!r}: give the merge test's level in (0, 1), e.g. 0.05")
    s = np.asarray(score, dtype=float).ravel()
    if not isinstance(X, pd.DataFrame):
        raise MLearnerError(f"X must be a pandas DataFrame, got {type(X).__name__}")
    problems = []
    if s.shape[0] != len(X):
        problems.append(f"score has {s.shape[0]} values but X has {len(X)} rows: align them")
    elif not np.isfinite(s).all():
        problems.append(f"score has {int((~np.isfinite(s)).sum())} missing/non-finite values")
    if covariance not in COVARIANCES:
        problems.append(f"covariance={covariance!r}: choose one of {list(COVARIANCES)}")
    if problems:
        raise InputValidationError(problems)
    if raw_leaf is None:
        raw_leaf = tree.leaf_of(X)
    raw_leaf = np.asarray(raw_leaf, dtype=np.int64)
    # per raw leaf: count, mean, centred sum of squares (merged by Chan's formula)
    size = max(int(tree.n_leaves), int(raw_leaf.max()) + 1)
    cnt = np.bincount(raw_leaf, minlength=size).astype(float)
    mean = np.divide(
        np.bincount(raw_leaf, weights=s, minlength=size), cnt, out=np.zeros(size), where=cnt > 0
    )
    m2 = np.bincount(raw_leaf, weights=(s - mean[raw_leaf]) ** 2, minlength=size)
    moments = {lf: (float(cnt[lf]), float(mean[lf]), float(m2[lf])) for lf in range(size)}
    side_test = None
    if design is not None:
        design.check_length(s.shape[0])

        def side_test(left: list[int], right: list[int]) -> tuple[float, float, float]:
            in_a = np.isin(raw_leaf, left)
            idx = in_a | np.isin(raw_leaf, right)
            means, p = design_wald_test(
                s[idx], (~in_a[idx]).astype(np.int64), design.take(idx), covariance=covariance
            )
            return float(means[0]), float(means[1]), float(p)

    return _merge(tree, moments, level, covariance, min_leaf_n, side_test)


def merge_leaves_from_moments(
    tree: ProfileTree,
    moments: Mapping[int, Sequence[float]],
    *,
    level: float = 0.05,
    covariance: str = "HC1",
    min_leaf_n: int = 2,
) -> MergeResult:
    """:func:`merge_leaves` from the score's moments per raw leaf instead of the unit scores.

    The unit (independent, equal units) form of the merging needs only each raw leaf's count,
    mean and centred sum of squares, so Spark or Dask partitions can supply them
    (:mod:`mlearner_dist.core.leaf_statistics`) and the driver never holds the units. Given the
    moments of the same units, the result equals ``merge_leaves(tree, X, score)``.

    Parameters
    ----------
    tree : ProfileTree
    moments : mapping of raw leaf id -> (n, mean, m2)
        A raw leaf absent from the mapping holds no unit.
    level, covariance, min_leaf_n
        As in :func:`merge_leaves`.

    Returns
    -------
    MergeResult
    """
    if not isinstance(tree, ProfileTree):
        raise MLearnerError(f"tree must be a ProfileTree, got {type(tree).__name__}")
    if isinstance(level, bool) or not 0.0 < float(level) < 1.0:
        raise MLearnerError(f"level={level!r}: give the merge test's level in (0, 1), e.g. 0.05")
    if covariance not in COVARIANCES:
        raise MLearnerError(f"covariance={covariance!r}: choose one of {list(COVARIANCES)}")
    stats = {int(k): (float(v[0]), float(v[1]), float(v[2])) for k, v in moments.items()}
    return _merge(tree, stats, float(level), covariance, min_leaf_n, None)


def _merge(
    tree: ProfileTree,
    stats_of: Mapping[int, tuple[float, float, float]],
    level: float,
    covariance: str,
    min_leaf_n: int,
    side_test: Callable[[list[int], list[int]], tuple[float, float, float]] | None,
) -> MergeResult:
    """The bottom-up merging (module docstring) on per-raw-leaf ``(n, mean, m2)``.

    ``side_test(left_leaves, right_leaves) -> (mean_left, mean_right, p)`` replaces the unit
    formula (the design-based test needs the units).
    """
    nodes = tree.nodes
    # node index -> aggregate of the units below it, when that subtree is (now) a single leaf
    collapsed: dict[int, tuple[float, float, float]] = {}
    is_leaf_now: dict[int, bool] = {}
    tests: list[dict[str, Any]] = []
    below: dict[int, list[int]] = {}  # node -> raw leaves under it (for the design tests)

    def visit(i: int) -> None:
        nd = nodes[i]
        if nd.is_leaf:
            collapsed[i] = stats_of.get(nd.leaf, (0.0, 0.0, 0.0))
            is_leaf_now[i] = True
            below[i] = [nd.leaf]
            return
        visit(nd.left)
        visit(nd.right)
        below[i] = below[nd.left] + below[nd.right]
        if not (is_leaf_now[nd.left] and is_leaf_now[nd.right]):
            is_leaf_now[i] = False
            return
        a, b = collapsed[nd.left], collapsed[nd.right]
        mean_a, mean_b = a[1], b[1]
        if a[0] < min_leaf_n or b[0] < min_leaf_n:
            p = 1.0  # an (almost) empty side: nothing to distinguish
        elif side_test is not None:
            mean_a, mean_b, p = side_test(below[nd.left], below[nd.right])
        else:
            p = pvalue_from_moments(
                np.array([a[0], b[0]]),
                np.array([a[1], b[1]]),
                np.array([a[2], b[2]]),
                covariance=covariance,
            )
        merged = bool(p >= level)
        tests.append(
            {
                "variable": nd.var,
                "n_left": int(a[0]),
                "n_right": int(b[0]),
                "mean_left": _finite(mean_a),
                "mean_right": _finite(mean_b),
                "pvalue": float(p),
                "merged": merged,
            }
        )
        is_leaf_now[i] = merged
        if merged:
            collapsed[i] = _combine(a, b)

    visit(0)
    new_nodes, rules, raw_to_new = _rebuild(tree, is_leaf_now)
    leaf_map = {int(k): int(v) for k, v in raw_to_new.items()}
    sizes = {lf: 0 for lf in rules}
    for raw, (n_raw, _, _) in stats_of.items():
        if raw in leaf_map:
            sizes[leaf_map[raw]] += int(n_raw)
    used = sorted({nd.var for nd in new_nodes if nd.var is not None})
    merged_tree = dataclasses.replace(
        tree,
        params={**tree.params, "merge_level": float(level), "raw_n_leaves": int(tree.n_leaves)},
        n_leaves=len(rules),
        variables=used,
        rules=rules,
        leaf_sizes=sizes,
        nodes=new_nodes,
        levels={k: v for k, v in tree.levels.items() if k in used},
    )
    return MergeResult(merged_tree, tree, leaf_map, tests, float(level))


# ---------------------------------------------------------------------------------------------
def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _combine(
    a: tuple[float, float, float], b: tuple[float, float, float]
) -> tuple[float, float, float]:
    n = a[0] + b[0]
    if n == 0:
        return (0.0, 0.0, 0.0)
    d = b[1] - a[1]
    return (n, a[1] + d * b[0] / n, a[2] + b[2] + d * d * a[0] * b[0] / n)


def _rebuild(
    tree: ProfileTree, is_leaf_now: dict[int, bool]
) -> tuple[tuple[TreeNode, ...], dict[int, str], dict[int, int]]:
    """The pruned node list (pre-order), rules of the new leaves, raw leaf -> new leaf."""
    nodes = tree.nodes
    out: list[TreeNode | None] = []
    rules: dict[int, str] = {}
    raw_to_new: dict[int, int] = {}
    counter = 0

    def raw_leaves(i: int) -> list[int]:
        nd = nodes[i]
        return [nd.leaf] if nd.is_leaf else raw_leaves(nd.left) + raw_leaves(nd.right)

    def visit(i: int, conds: list[tuple[str, str, Any]]) -> int:
        nonlocal counter
        nd = nodes[i]
        pos = len(out)
        out.append(None)
        if is_leaf_now[i]:
            out[pos] = TreeNode(leaf=counter, n_fit=nd.n_fit)
            rules[counter] = rule_text(conds, tree.levels)
            for lf in raw_leaves(i):
                raw_to_new[lf] = counter
            counter += 1
            return pos
        assert nd.var is not None
        if nd.kind == "numeric":
            cond_l: tuple[str, str, Any] = (nd.var, "le", nd.threshold)
            cond_r: tuple[str, str, Any] = (nd.var, "gt", nd.threshold)
        else:
            known = frozenset(tree.levels[nd.var])
            cond_l = (nd.var, "in", nd.left_levels)
            cond_r = (nd.var, "in", known - nd.left_levels)
        li = visit(nd.left, [*conds, cond_l])
        ri = visit(nd.right, [*conds, cond_r])
        out[pos] = dataclasses.replace(nd, left=li, right=ri)
        return pos

    visit(0, [])
    return tuple(n for n in out if n is not None), rules, raw_to_new
