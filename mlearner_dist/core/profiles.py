"""Profile trees: classification trees of cluster labels on the covariates (step 4a).

The reference grows ``rpart`` trees of the K-means label on the covariates over a grid
(split criterion, minimum split size, complexity ``cp``), prunes each by 10-fold cross-validation,
drops trees that induce the same partition, and keeps the trees on the Pareto front of size against
cross-validated error. The leaves are the subgroups; the path to a leaf is its rule in words.

This module does the same with scikit-learn's CART and its minimal cost-complexity pruning:

* **cp to ccp_alpha.** rpart keeps a split only when it lowers the tree's overall risk by at least
  ``cp`` times the root node's risk. scikit-learn prunes with ``ccp_alpha`` in absolute units of the
  weighted impurity ``R(T) = sum_leaves (n_t / n) i(t)``, whose value at the root is ``i(root)``.
  So the grid value ``cp`` maps to ``ccp_alpha = cp * i(root)``: a split must pay for itself by a
  fraction ``cp`` of the root impurity, as in rpart (with the impurity, gini or entropy, in place of
  rpart's misclassification risk; the scale of the criterion cancels).
* **minimum split.** ``min_samples_split = ceil(f * n_fit)`` for a fraction ``f`` of the fitted
  units, and ``min_samples_leaf = round(min_samples_split / 3)``, rpart's default ``minbucket``.
  Cross-validation folds use the same counts, as rpart does.
* **pruning by CV.** The tree is grown without pruning, its weakest-link pruning sequence
  ``0 = a_0 < a_1 < ... < a_S`` computed (scikit-learn's ``_cost_complexity_prune`` algorithm,
  reimplemented in :mod:`mlearner_dist.core.tree_pruning` so that one grown tree gives every
  pruned tree), and each candidate subtree ``j`` scored by the misclassification rate of 10-fold
  CV trees pruned at the geometric mid-point ``sqrt(a_j a_{j+1})`` of its interval (rpart's
  convention). For a grid value ``cp`` the candidates
  are the subtrees with ``a_j >= cp * i(root)``; the one with the smallest CV error is kept (ties to
  the smaller tree, as rpart's ``which.min`` over its cp table). ``cv_error`` is the absolute CV
  misclassification rate and ``cv_error_se`` its standard error over units (rpart reports the same
  divided by the root error).
* **categorical covariates** (object, category, string or bool dtype). With two classes the levels
  are ordered by the proportion of the second class and coded 0, 1, ...; for two classes the best
  split of a categorical into two sets is among these ordered splits (Breiman et al. 1984) for gini
  and entropy. With more classes (or more than two levels) the levels are one-hot encoded. Splits
  are translated back into level sets ("occp in {sales, clerical}"). The ordering is computed once
  on the fitted units (rpart re-orders in each node), a documented simplification. Levels not seen
  when fitting follow the larger child at each split (logged); numeric covariates must not be
  missing.
* **numeric thresholds.** Each threshold is replaced by the shortest decimal that separates the
  same fitted units (e.g. 0.0131 -> 0.013, 33.5 -> 33 for an integer covariate), so the rule text
  and :meth:`ProfileTree.leaf_of` agree exactly on every unit, fitted or new.

The fitted tree, :class:`~mlearner_dist.core.profile_tree.ProfileTree` (plain Python/numpy data,
no scikit-learn object: it pickles small and scores new units without the training data), and
its rule text live in :mod:`mlearner_dist.core.profile_tree`; this module grows and chooses
trees, and re-exports ``ProfileTree``, ``TreeNode`` and ``rule_text``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, overload

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold
from sklearn.tree import DecisionTreeClassifier

from mlearner_dist.core.profile_tree import ProfileTree, TreeNode, format_threshold, rule_text
from mlearner_dist.core.tree_pruning import collapse_alphas, distinct_alphas, stop_nodes
from mlearner_dist.exceptions import InputValidationError, MLearnerError

logger = logging.getLogger(__name__)

TREE_CHOICES = ("one_se", "first_pareto", "all")
#: rpart's cp grid of the reference: 16 values from 1e-6 to 1e-2, log-spaced.
DEFAULT_COMPLEXITY: tuple[float, ...] = tuple(float(c) for c in np.logspace(-6, -2, 16))
_CRITERIA = ("gini", "entropy", "log_loss")

#: Former private name, kept so that trees pickled before the rename (``trees.pkl``) still load.
_Node = TreeNode


# ---------------------------------------------------------------------------------------------
# Encoding of the covariates
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Column:
    """One encoded column: numeric, ordered levels (codes 0..L-1) or one level's indicator."""

    var: str
    kind: str  # "numeric", "ordered", "onehot"
    order: tuple[Any, ...] = ()  # ordered: levels by code; onehot: (level,)


def _is_categorical(s: pd.Series) -> bool:
    return bool(
        isinstance(s.dtype, pd.CategoricalDtype)
        or pd.api.types.is_object_dtype(s)
        or pd.api.types.is_string_dtype(s)
        or pd.api.types.is_bool_dtype(s)
    )


def _sorted_levels(values: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(sorted(set(values), key=lambda v: (str(type(v)), str(v))))


def _encode_design(
    X: pd.DataFrame, y: np.ndarray, n_classes: int
) -> tuple[np.ndarray, list[_Column], dict[str, tuple[Any, ...]]]:
    """Encode covariates to a float matrix (see the module docstring for categorical coding)."""
    cols: list[np.ndarray] = []
    spec: list[_Column] = []
    levels: dict[str, tuple[Any, ...]] = {}
    for name in X.columns:
        s = X[name]
        var = str(name)
        if not _is_categorical(s):
            cols.append(s.to_numpy(dtype=float))
            spec.append(_Column(var, "numeric"))
            continue
        vals = s.to_numpy(dtype=object)
        lv = _sorted_levels(vals.tolist())
        levels[var] = lv
        if len(lv) <= 2 or n_classes == 2:
            if n_classes == 2:
                share = {v: float(np.mean(y[vals == v] == 1)) for v in lv}
                order = tuple(sorted(lv, key=lambda v: (share[v], lv.index(v))))
            else:
                order = lv
            code = {v: i for i, v in enumerate(order)}
            cols.append(np.array([code[v] for v in vals], dtype=float))
            spec.append(_Column(var, "ordered", order))
        else:
            for v in lv:
                cols.append((vals == v).astype(float))
                spec.append(_Column(var, "onehot", (v,)))
    return np.column_stack(cols), spec, levels


# ---------------------------------------------------------------------------------------------
# Threshold text
# ---------------------------------------------------------------------------------------------
def _nice_threshold(values: np.ndarray, thr: float) -> float:
    """Shortest decimal ``r`` with the same split of ``values`` as scikit-learn's ``thr``.

    scikit-learn compares float32 features with ``<= thr``; ``r`` satisfies
    ``max(left values) <= r < min(right values)`` in float64.
    """
    goes_left = values.astype(np.float32) <= thr
    lo, hi = values[goes_left].max(), values[~goes_left].min()
    for digits in range(-6, 16):
        scale = 10.0**digits
        r = math.ceil(lo * scale) / scale
        if lo <= r < hi:
            return float(r)
    return float(lo)


# ---------------------------------------------------------------------------------------------
# Building a ProfileTree from a grown, pruned scikit-learn tree
# ---------------------------------------------------------------------------------------------
def _build_nodes(
    tree: Any,
    collapse: np.ndarray,
    alpha: float,
    design: np.ndarray,
    spec: list[_Column],
    levels: Mapping[str, tuple[Any, ...]],
) -> tuple[tuple[TreeNode, ...], dict[int, str]]:
    left, right = tree.children_left, tree.children_right
    feature, threshold = tree.feature, tree.threshold
    w = tree.n_node_samples
    nodes: list[TreeNode | None] = []
    rules: dict[int, str] = {}
    n_leaf = 0

    def visit(i: int, conds: list[tuple[str, str, Any]]) -> int:
        nonlocal n_leaf
        pos = len(nodes)
        nodes.append(None)
        if left[i] < 0 or collapse[i] <= alpha:
            nodes[pos] = TreeNode(leaf=n_leaf, n_fit=int(w[i]))
            rules[n_leaf] = rule_text(conds, levels)
            n_leaf += 1
            return pos
        col = spec[int(feature[i])]
        unknown_left = bool(w[left[i]] >= w[right[i]])
        if col.kind == "numeric":
            r = _nice_threshold(design[:, int(feature[i])], float(threshold[i]))
            node_kw = {"kind": "numeric", "threshold": r, "threshold_text": format_threshold(r)}
            cond_l: tuple[str, str, Any] = (col.var, "le", r)
            cond_r: tuple[str, str, Any] = (col.var, "gt", r)
        else:
            if col.kind == "ordered":
                k = math.floor(float(threshold[i])) + 1
                left_set = frozenset(col.order[:k])
            else:
                left_set = frozenset(v for v in levels[col.var] if v != col.order[0])
            right_set = frozenset(levels[col.var]) - left_set
            node_kw = {"kind": "categorical", "left_levels": left_set, "unknown_left": unknown_left}
            cond_l = (col.var, "in", left_set)
            cond_r = (col.var, "in", right_set)
        li = visit(int(left[i]), [*conds, cond_l])
        ri = visit(int(right[i]), [*conds, cond_r])
        nodes[pos] = TreeNode(left=li, right=ri, var=col.var, n_fit=int(w[i]), **node_kw)
        return pos

    visit(0, [])
    return tuple(n for n in nodes if n is not None), rules


# ---------------------------------------------------------------------------------------------
# Sampling, validation
# ---------------------------------------------------------------------------------------------
def stratified_sample(labels: np.ndarray, max_rows: int, random_state: int) -> np.ndarray:
    """Row indices of a deterministic stratified sample of at most ``max_rows`` rows.

    Parameters
    ----------
    labels : ndarray, shape (n,)
        Strata (cluster labels).
    max_rows : int
        Sample size cap, ``>= 1``.
    random_state : int
        Seed; the sample depends only on it, the labels and the row order.

    Returns
    -------
    ndarray of int64, shape (min(n, max_rows),)
        Sorted row indices. Each stratum keeps its share of rows (largest-remainder rounding), at
        least one row.
    """
    labels = np.asarray(labels)
    n = labels.shape[0]
    if max_rows < 1:
        raise MLearnerError(f"max_rows must be >= 1, got {max_rows}")
    if n <= max_rows:
        return np.arange(n)
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    quota = counts * max_rows / n
    take = np.maximum(np.floor(quota).astype(int), 1)
    short = max_rows - int(take.sum())
    if short > 0:
        order = np.argsort(-(quota - np.floor(quota)), kind="stable")
        take[order[:short]] += 1
    take = np.minimum(take, counts)
    rng = np.random.default_rng(random_state)
    picked = [
        rng.choice(np.flatnonzero(inverse == c), size=int(take[c]), replace=False)
        for c in range(classes.size)
    ]
    return np.sort(np.concatenate(picked))


def _validate_inputs(
    X: Any,
    labels: Any,
    criteria: Sequence[str],
    min_split_fractions: Sequence[float],
    complexity: Any,
    cv_folds: int,
    max_rows: int | None,
) -> np.ndarray:
    problems: list[str] = []
    if not isinstance(X, pd.DataFrame):
        raise MLearnerError(f"X must be a pandas DataFrame of covariates, got {type(X).__name__}")
    if X.shape[1] == 0:
        problems.append("X has no columns: pass at least one covariate")
    y = np.asarray(labels)
    if y.ndim != 1 or y.shape[0] != len(X):
        problems.append(f"labels has shape {y.shape}; expected ({len(X)},), one label per row of X")
    elif pd.isna(pd.Series(y)).any():
        problems.append("labels has missing values: every unit needs a cluster label")
    for name in X.columns:
        s = X[name]
        if s.isna().any():
            problems.append(
                f"column {name!r} (covariate) has {int(s.isna().sum())} missing values: "
                "impute or drop them before profiling"
            )
        elif not _is_categorical(s) and not np.isfinite(s.to_numpy(dtype=float)).all():
            problems.append(f"column {name!r} (covariate) has infinite values")
    bad = [c for c in criteria if c not in _CRITERIA]
    if bad or not len(criteria):
        problems.append(f"criteria={list(criteria)}: choose from {list(_CRITERIA)}")
    if not len(min_split_fractions) or any(not 0 < f < 1 for f in min_split_fractions):
        problems.append(
            f"min_split_fractions={list(min_split_fractions)}: give fractions of n in (0, 1)"
        )
    cp = np.asarray(complexity, dtype=float).ravel()
    if cp.size == 0 or not np.all(np.isfinite(cp)) or np.any(cp < 0):
        problems.append(f"complexity={cp.tolist()}: give finite values >= 0 (rpart's cp grid)")
    if not isinstance(cv_folds, (int, np.integer)) or cv_folds < 2:
        problems.append(f"cv_folds={cv_folds!r}: give an integer >= 2")
    elif len(X) < 2 * cv_folds:
        problems.append(f"{len(X)} rows is too few for cv_folds={cv_folds}: need >= {2 * cv_folds}")
    if max_rows is not None and (
        not isinstance(max_rows, (int, np.integer)) or max_rows < 2 * max(int(cv_folds), 2)
    ):
        problems.append(f"max_rows={max_rows!r}: give None or an integer >= 2 * cv_folds")
    if problems:
        raise InputValidationError(problems)
    return y


# ---------------------------------------------------------------------------------------------
# The grid, CV pruning, duplicates and the Pareto front
# ---------------------------------------------------------------------------------------------
@dataclass
class _Candidate:
    criterion: str
    fraction: float
    cp: float
    alpha: float
    cv_error: float
    cv_se: float
    key: tuple[str, float, int]
    grown: Any
    collapse: np.ndarray
    min_split: int
    min_leaf: int


def _pareto(points: list[tuple[int, float]]) -> list[int]:
    """Indices of points not dominated in (size, error): nobody is <= in both and < in one."""
    keep = []
    for i, (si, ei) in enumerate(points):
        dominated = any(
            (sj <= si and ej <= ei) and (sj < si or ej < ei)
            for j, (sj, ej) in enumerate(points)
            if j != i
        )
        if not dominated:
            keep.append(i)
    return keep


def fit_profile_trees(
    X: pd.DataFrame,
    labels: np.ndarray,
    *,
    criteria: Sequence[str] = ("gini", "entropy"),
    min_split_fractions: Sequence[float] = (0.10, 0.15, 0.20),
    complexity: Sequence[float] | np.ndarray = DEFAULT_COMPLEXITY,
    cv_folds: int = 10,
    random_state: int = 0,
    max_rows: int | None = None,
    keep_root: bool = False,
) -> list[ProfileTree]:
    """Profile trees of cluster labels on covariates: grid, CV pruning, Pareto front.

    For every (criterion, min split fraction, cp) in the grid, a tree of ``labels`` on ``X`` is
    grown and pruned by ``cv_folds``-fold cross-validation (see the module docstring for how
    rpart's ``cp`` maps to scikit-learn's ``ccp_alpha``); trees that induce the same partition of
    the fitted units are kept once (the first in grid order); among the rest only those on the
    Pareto front of (number of leaves, CV error) are returned: no returned tree has both at most
    as many leaves and at most the error of another, with one strict.

    Parameters
    ----------
    X : DataFrame, shape (n, p)
        Covariates, numeric or categorical (object, category, string, bool), no missing values.
    labels : ndarray, shape (n,)
        Cluster label of every unit.
    criteria : sequence of {"gini", "entropy", "log_loss"}
    min_split_fractions : sequence of float in (0, 1)
        rpart's ``minsplit`` as a fraction of the fitted units.
    complexity : sequence of float >= 0
        rpart's ``cp`` grid (``ccp_alpha = cp * root impurity``).
    cv_folds : int
        Folds of the pruning cross-validation (stratified, shuffled with ``random_state``).
    random_state : int
        Seeds the folds, the sample and scikit-learn's tie-breaking.
    max_rows : int, optional
        When ``n > max_rows``, grow the trees on a deterministic stratified sample of
        ``max_rows`` units (:func:`stratified_sample`); the trees are then applied to every unit
        (``leaf_sizes`` count all ``n``; ``n_fit``, ``sampled`` record it).
    keep_root : bool
        Keep a single-leaf tree on the front. Default False: a one-leaf tree has no subgroups
        and no testable interaction (the reference's ``lm`` with a one-level factor fails), so it
        is dropped unless every grid point prunes to the root, in which case it is the only tree
        returned.

    Returns
    -------
    list of ProfileTree
        The Pareto front sorted by (n_leaves, cv_error); ``tree_id`` is the position.

    Raises
    ------
    InputValidationError
        Bad shapes, missing values, or a bad grid.
    """
    y_raw = _validate_inputs(
        X, labels, criteria, min_split_fractions, complexity, cv_folds, max_rows
    )
    started = time.perf_counter()
    covariates = tuple(str(c) for c in X.columns)
    n_total = len(X)
    rows = (
        np.arange(n_total) if max_rows is None else stratified_sample(y_raw, max_rows, random_state)
    )
    sampled = rows.size < n_total
    X_fit = X.iloc[rows].reset_index(drop=True)
    _, y = np.unique(y_raw[rows], return_inverse=True)
    n_fit, n_classes = y.size, int(y.max()) + 1
    design, spec, levels = _encode_design(X_fit, y, n_classes)
    if sampled:
        logger.info("profile trees grown on a stratified sample of %d of %d units", n_fit, n_total)

    counts = np.bincount(y, minlength=n_classes)
    folds_k = int(min(cv_folds, max(2, counts.min())))
    if folds_k < cv_folds:
        logger.warning(
            "smallest cluster has %d fitted units: CV uses %d folds instead of %d",
            counts.min(),
            folds_k,
            cv_folds,
        )
    # scikit-learn grows trees on float32 features: convert once, not in each of the
    # (1 + folds) x grid fits (the splits, hence the trees, are the same)
    design32 = np.ascontiguousarray(design, dtype=np.float32)
    splitter = StratifiedKFold(n_splits=folds_k, shuffle=True, random_state=random_state)
    folds = list(splitter.split(design, y))
    cps = np.asarray(complexity, dtype=float).ravel()

    candidates: list[_Candidate] = []
    for criterion in criteria:
        for frac in min_split_fractions:
            min_split = max(2, math.ceil(frac * n_fit))
            min_leaf = max(1, round(min_split / 3))
            kw = {
                "criterion": criterion,
                "min_samples_split": min_split,
                "min_samples_leaf": min_leaf,
                "random_state": random_state,
            }
            grown = DecisionTreeClassifier(**kw).fit(design32, y)
            collapse = collapse_alphas(grown.tree_)
            alphas = distinct_alphas(collapse, grown.tree_.children_left)
            betas = np.append(np.sqrt(alphas[:-1] * alphas[1:]), np.inf)
            losses = np.zeros((alphas.size, n_fit))
            for train, test in folds:
                fold_tree = DecisionTreeClassifier(**kw).fit(design32[train], y[train]).tree_
                fold_collapse = collapse_alphas(fold_tree)
                majority = np.argmax(fold_tree.value[:, 0, :], axis=1)
                path = fold_tree.decision_path(design32[test])  # once for every pruning level
                for j, beta in enumerate(betas):
                    stop = stop_nodes(fold_tree, path, fold_collapse, beta)
                    losses[j, test] = majority[stop] != y[test]
            err = losses.mean(axis=1)
            se = losses.std(axis=1) / math.sqrt(n_fit)
            root_impurity = float(grown.tree_.impurity[0])
            for cp in cps:
                floor_alpha = cp * root_impurity
                first = int(np.searchsorted(alphas, floor_alpha, side="right")) - 1
                first = max(first, 0)
                # candidates j >= first; ties -> larger j (smaller tree)
                sub = err[first:]
                j = first + int(np.flatnonzero(sub == sub.min())[-1])
                candidates.append(
                    _Candidate(
                        criterion=criterion,
                        fraction=float(frac),
                        cp=float(cp),
                        alpha=float(alphas[j]),
                        cv_error=float(err[j]),
                        cv_se=float(se[j]),
                        key=(criterion, float(frac), j),
                        grown=grown,
                        collapse=collapse,
                        min_split=min_split,
                        min_leaf=min_leaf,
                    )
                )

    # distinct partitions of the fitted units, first in grid order
    built: list[tuple[_Candidate, tuple[TreeNode, ...], dict[int, str]]] = []
    seen_keys: set[tuple[str, float, int]] = set()
    seen_parts: set[bytes] = set()
    for cand in candidates:
        if cand.key in seen_keys:
            continue
        seen_keys.add(cand.key)
        nodes, rules = _build_nodes(
            cand.grown.tree_, cand.collapse, cand.alpha, design, spec, levels
        )
        probe = _make_tree(0, cand, nodes, rules, covariates, levels, n_fit, n_total, sampled, {})
        part = _canonical_partition(probe.leaf_of(X_fit))
        if part in seen_parts:
            continue
        seen_parts.add(part)
        built.append((cand, nodes, rules))

    n_built = len(built)
    if not keep_root and any(len(r) > 1 for _, _, r in built):
        built = [b for b in built if len(b[2]) > 1]
    front_idx = _pareto([(len(r), c.cv_error) for c, _, r in built])
    front = sorted((built[i] for i in front_idx), key=lambda b: (len(b[2]), b[0].cv_error))
    trees = []
    for tree_id, (cand, nodes, rules) in enumerate(front):
        probe = _make_tree(
            tree_id, cand, nodes, rules, covariates, levels, n_fit, n_total, sampled, {}
        )
        leaf = probe.leaf_of(X)
        sizes = {lf: int(c) for lf, c in enumerate(np.bincount(leaf, minlength=len(rules)))}
        trees.append(
            _make_tree(
                tree_id, cand, nodes, rules, covariates, levels, n_fit, n_total, sampled, sizes
            )
        )
    logger.info(
        "profile trees: %d grid points, %d distinct partitions, %d on the Pareto front "
        "(leaves %s) in %.1f s",
        len(candidates),
        n_built,
        len(trees),
        [t.n_leaves for t in trees],
        time.perf_counter() - started,
    )
    return trees


def _canonical_partition(leaf: np.ndarray) -> bytes:
    _, first = np.unique(leaf, return_index=True)
    relabel = np.empty(int(leaf.max()) + 1, dtype=np.int64)
    relabel[leaf[np.sort(first)]] = np.arange(first.size)
    return relabel[leaf].tobytes()


def _make_tree(
    tree_id: int,
    cand: _Candidate,
    nodes: tuple[TreeNode, ...],
    rules: dict[int, str],
    covariates: tuple[str, ...],
    levels: dict[str, tuple[Any, ...]],
    n_fit: int,
    n_total: int,
    sampled: bool,
    sizes: dict[int, int],
) -> ProfileTree:
    used = sorted({nd.var for nd in nodes if nd.var is not None})
    return ProfileTree(
        tree_id=tree_id,
        params={
            "criterion": cand.criterion,
            "min_split_fraction": cand.fraction,
            "cp": cand.cp,
            "ccp_alpha": cand.alpha,
            "min_samples_split": cand.min_split,
            "min_samples_leaf": cand.min_leaf,
        },
        n_leaves=len(rules),
        cv_error=cand.cv_error,
        cv_error_se=cand.cv_se,
        variables=used,
        covariates=covariates,
        rules=dict(rules),
        leaf_sizes=dict(sizes),
        n_fit=n_fit,
        n_total=n_total,
        sampled=sampled,
        nodes=nodes,
        levels={k: v for k, v in levels.items() if k in used},
    )


# ---------------------------------------------------------------------------------------------
# Choosing one tree per K
# ---------------------------------------------------------------------------------------------
@overload
def choose_tree(trees: Sequence[ProfileTree], rule: Literal["all"]) -> list[ProfileTree]: ...


@overload
def choose_tree(trees: Sequence[ProfileTree], rule: str = "one_se") -> ProfileTree: ...


def choose_tree(
    trees: Sequence[ProfileTree], rule: str = "one_se"
) -> ProfileTree | list[ProfileTree]:
    """The tree of a Pareto front to test, chosen before any test so the choice ignores p-values.

    Parameters
    ----------
    trees : sequence of ProfileTree
        A Pareto front from :func:`fit_profile_trees`.
    rule : {"one_se", "first_pareto", "all"}
        ``one_se`` (default): the smallest tree whose CV error is at most the minimum CV error
        plus the standard error of that minimum (Breiman et al.'s 1-SE rule), ties to the
        smaller error.
        ``first_pareto``: the smallest tree of the front (the reference). ``all``: every tree, as
        a list, for reporting every tree's p-value (choosing the smallest p over all trees favours
        large trees, since the interaction test rewards extra leaves).

    Returns
    -------
    ProfileTree, or list of ProfileTree for ``rule="all"``
    """
    if rule not in TREE_CHOICES:
        raise MLearnerError(f"rule={rule!r}: choose one of {list(TREE_CHOICES)}")
    trees = list(trees)
    if not trees or not all(isinstance(t, ProfileTree) for t in trees):
        raise MLearnerError("trees must be a non-empty list of ProfileTree (a Pareto front)")
    if rule == "all":
        return trees
    by_size = sorted(trees, key=lambda t: (t.n_leaves, t.cv_error, t.tree_id))
    if rule == "first_pareto":
        return by_size[0]
    best = min(trees, key=lambda t: (t.cv_error, t.n_leaves, t.tree_id))
    bound = best.cv_error + best.cv_error_se + 1e-12
    return next(t for t in by_size if t.cv_error <= bound)


__all__ = [
    "DEFAULT_COMPLEXITY",
    "TREE_CHOICES",
    "ProfileTree",
    "TreeNode",
    "choose_tree",
    "fit_profile_trees",
    "rule_text",
    "stratified_sample",
]
