"""Weakest-link (minimal cost-complexity) pruning of a grown scikit-learn tree.

:func:`collapse_alphas` gives every node of a grown ``DecisionTreeClassifier.tree_`` the pruning
level ``ccp_alpha`` at which it becomes a leaf, so one grown tree yields every pruned tree;
:func:`stop_nodes` sends rows to their node in the tree pruned at a level and
:func:`distinct_alphas` lists the levels. :func:`mlearner_dist.core.profiles.fit_profile_trees`
prunes its trees and their cross-validation trees with these (see that module's docstring for
rpart's ``cp`` and the CV pruning).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["collapse_alphas", "distinct_alphas", "stop_nodes"]


def collapse_alphas(tree: Any) -> np.ndarray:
    """For every node, the smallest ``ccp_alpha`` at which it is a leaf of the pruned tree.

    Reimplements scikit-learn's ``_cost_complexity_prune`` (weakest link, first argmin on ties);
    the running maximum of the effective alphas makes the sequence monotone, which gives the same
    pruned tree as scikit-learn's stopping rule for every ``ccp_alpha``. Leaves of the grown tree
    get 0; nodes never pruned before the root get the root's alpha.
    """
    left, right = tree.children_left, tree.children_right
    n_nodes = tree.node_count
    w = tree.weighted_n_node_samples
    r_node = w * tree.impurity / w[0]
    parent = np.full(n_nodes, -1)
    for i in range(n_nodes):
        if left[i] >= 0:
            parent[left[i]] = i
            parent[right[i]] = i
    is_leaf_now = left < 0
    alive = np.ones(n_nodes, dtype=bool)
    collapse = np.where(is_leaf_now, 0.0, np.inf)
    running = 0.0
    while not is_leaf_now[0]:
        r_branch = np.where(is_leaf_now & alive, r_node, 0.0)
        n_leaves = (is_leaf_now & alive).astype(float)
        for i in range(n_nodes - 1, 0, -1):  # children have larger ids than their parent
            if alive[i]:
                r_branch[parent[i]] += r_branch[i]
                n_leaves[parent[i]] += n_leaves[i]
        cand = np.flatnonzero(alive & ~is_leaf_now)
        g = (r_node[cand] - r_branch[cand]) / (n_leaves[cand] - 1)
        pick = int(cand[int(np.argmin(g))])
        running = max(running, float(g.min()))
        collapse[pick] = running
        is_leaf_now[pick] = True
        stack = [int(left[pick]), int(right[pick])]
        while stack:
            j = stack.pop()
            alive[j] = False
            if left[j] >= 0:
                stack.extend((int(left[j]), int(right[j])))
    return collapse


def stop_nodes(tree: Any, X: Any, collapse: np.ndarray, alpha: float) -> np.ndarray:
    """Node where each row stops in the tree pruned at ``alpha`` (shape (n,)).

    ``X`` is the rows' features, or their ``tree.decision_path`` computed once and reused for
    every ``alpha`` (the path through the grown tree does not depend on the pruning level).
    """
    path = X if hasattr(X, "indptr") else tree.decision_path(np.asarray(X, dtype=np.float32))
    stop = (tree.children_left < 0) | (collapse <= alpha)
    flags = stop[path.indices]
    # node ids increase along a root-to-leaf path (depth-first builder): first flagged node
    ids = np.where(flags, path.indices, np.iinfo(np.int64).max)
    return np.minimum.reduceat(ids, path.indptr[:-1])


def distinct_alphas(collapse: np.ndarray, left: np.ndarray) -> np.ndarray:
    """The distinct pruning levels of a grown tree: 0 and every inner node's finite alpha, sorted.

    ``collapse`` is :func:`collapse_alphas` of the tree, ``left`` its ``children_left``.
    """
    inner = collapse[left >= 0]
    return np.unique(np.concatenate([[0.0], inner[np.isfinite(inner)]]))
