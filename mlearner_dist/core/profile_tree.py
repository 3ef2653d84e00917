"""The fitted profile tree: plain data that maps covariates to leaves, with the rules in words.

A :class:`ProfileTree` is grown and chosen by :mod:`mlearner_dist.core.profiles`
(:func:`~mlearner_dist.core.profiles.fit_profile_trees`,
:func:`~mlearner_dist.core.profiles.choose_tree`) and simplified by
:mod:`mlearner_dist.core.leaf_merging`. It keeps only plain Python/numpy data (its
:class:`TreeNode` tuple in pre-order, the categorical levels seen when fitting; no scikit-learn
object), so it pickles small, round-trips through JSON (:meth:`ProfileTree.to_dict`,
:meth:`ProfileTree.from_dict`) and scores new units without the training data
(:meth:`ProfileTree.leaf_of`). :func:`rule_text` writes a root-to-leaf path in words, with numeric
thresholds as :func:`format_threshold` writes them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlearner_dist.core.jsonable import to_jsonable
from mlearner_dist.exceptions import InputValidationError, MLearnerError

logger = logging.getLogger(__name__)

#: The rule of the root (a tree without splits).
ALL_UNITS = "all units"

__all__ = ["ALL_UNITS", "ProfileTree", "TreeNode", "format_threshold", "rule_text"]


@dataclass(frozen=True)
class TreeNode:
    """One node of a pruned profile tree (plain data, picklable).

    Internal nodes split on ``var``: numeric ``x <= threshold`` goes left; categorical: levels in
    ``left_levels`` go left, other known levels right, unknown levels left iff ``unknown_left``.
    Terminal nodes have ``left == right == -1`` and a ``leaf`` id. :attr:`ProfileTree.nodes` holds
    them in pre-order; :mod:`mlearner_dist.core.leaf_merging` rebuilds pruned trees from them.

    Attributes
    ----------
    left, right : int
        Positions of the children in the tree's node tuple; ``-1`` for a leaf.
    var : str or None
        The split covariate (``None`` for a leaf).
    kind : {"numeric", "categorical"} or None
        How ``var`` is split (``None`` for a leaf).
    threshold : float
        Numeric split point (``x <= threshold`` goes left); NaN otherwise.
    threshold_text : str
        ``threshold`` as written in the rules (shortest separating decimal).
    left_levels : frozenset
        Categorical levels that go left.
    unknown_left : bool
        Whether levels not seen when fitting go left (the larger child).
    leaf : int
        Leaf id (0..n_leaves-1, left-to-right) of a terminal node; ``-1`` otherwise.
    n_fit : int
        Fitted units that reach the node.
    """

    left: int = -1
    right: int = -1
    var: str | None = None
    kind: str | None = None  # "numeric" or "categorical"
    threshold: float = math.nan
    threshold_text: str = ""
    left_levels: frozenset[Any] = frozenset()
    unknown_left: bool = False
    leaf: int = -1
    n_fit: int = 0

    @property
    def is_leaf(self) -> bool:
        """Whether the node is terminal (a subgroup)."""
        return self.left < 0


@dataclass(frozen=True, eq=False)
class ProfileTree:
    """A pruned classification tree of cluster labels on covariates; its leaves are subgroups.

    Attributes
    ----------
    tree_id : int
        Position on the Pareto front of its K (0 = the smallest tree).
    params : dict
        ``criterion``, ``min_split_fraction``, ``cp`` (grid value), ``ccp_alpha`` (the pruning
        level of this tree, ``>= cp * root impurity``), ``min_samples_split``, ``min_samples_leaf``.
    n_leaves : int
    cv_error : float
        Cross-validated misclassification rate of the cluster labels.
    cv_error_se : float
        Its standard error, ``sd(0/1 losses) / sqrt(n_fit)``.
    variables : list of str
        Sorted covariates used by at least one split.
    covariates : tuple of str
        Every covariate the tree was grown on (the columns a scoring table must provide).
    rules : dict of int to str
        Leaf id (0..n_leaves-1, left-to-right) to rule, e.g. ``"X1 > 0.013 and X2 > -0.41"``.
    leaf_sizes : dict of int to int
        Units per leaf among the units passed to :func:`fit_profile_trees` (all of them, also when
        the tree was grown on a sample).
    n_fit, n_total : int
        Units the tree was grown on, and units it was applied to.
    sampled : bool
        Whether ``n_fit < n_total`` (grown on a stratified sample, see ``max_rows``).
    """

    tree_id: int
    params: dict[str, Any]
    n_leaves: int
    cv_error: float
    cv_error_se: float
    variables: list[str]
    covariates: tuple[str, ...]
    rules: dict[int, str]
    leaf_sizes: dict[int, int]
    n_fit: int
    n_total: int
    sampled: bool
    nodes: tuple[TreeNode, ...] = field(repr=False)
    levels: dict[str, tuple[Any, ...]] = field(repr=False, default_factory=dict)

    def leaf_of(self, X: pd.DataFrame) -> np.ndarray:
        """The leaf (subgroup) id of every row.

        Parameters
        ----------
        X : DataFrame, shape (n, >= len(variables))
            Must hold every column in :attr:`variables`; others are ignored.

        Returns
        -------
        ndarray of int64, shape (n,)
            Leaf ids in ``0..n_leaves-1``, in the order of the rows.

        Raises
        ------
        InputValidationError
            A used covariate is missing, a numeric covariate is not numeric or holds missing
            values.
        """
        if not isinstance(X, pd.DataFrame):
            raise MLearnerError(f"X must be a pandas DataFrame, got {type(X).__name__}")
        problems = [
            f"column {v!r} (covariate used by the profile tree) is missing: add it"
            for v in self.variables
            if v not in X.columns
        ]
        numeric: dict[str, np.ndarray] = {}
        for node in self.nodes:
            if node.kind == "numeric" and node.var in X.columns and node.var not in numeric:
                col = X[node.var]
                if not (pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)):
                    problems.append(
                        f"column {node.var!r} (covariate) has dtype {col.dtype} but the tree "
                        "splits it as numeric: pass it with the dtype it was fitted with"
                    )
                    continue
                values = col.to_numpy(dtype=float)
                if np.isnan(values).any():
                    problems.append(
                        f"column {node.var!r} (covariate) has {int(np.isnan(values).sum())} "
                        "missing values: impute or drop those rows before scoring"
                    )
                numeric[node.var] = values
        if problems:
            raise InputValidationError(problems)
        out = np.full(len(X), -1, dtype=np.int64)
        unknown: dict[str, int] = {}
        stack: list[tuple[int, np.ndarray]] = [(0, np.arange(len(X)))]
        while stack:
            idx, rows = stack.pop()
            node = self.nodes[idx]
            if node.is_leaf:
                out[rows] = node.leaf
                continue
            if rows.size == 0:
                continue
            assert node.var is not None
            if node.kind == "numeric":
                go_left = numeric[node.var][rows] <= node.threshold
            else:
                col = X[node.var].iloc[rows]
                in_left = col.isin(list(node.left_levels)).to_numpy()
                known = col.isin(list(self.levels[node.var])).to_numpy()
                if not known.all():
                    unknown[node.var] = unknown.get(node.var, 0) + int((~known).sum())
                go_left = in_left | (~known & node.unknown_left)
            stack.append((node.left, rows[go_left]))
            stack.append((node.right, rows[~go_left]))
        for var, count in unknown.items():
            logger.warning(
                "profile tree %d: %d row-splits on %r met levels unseen when fitting; they "
                "followed the larger child",
                self.tree_id,
                count,
                var,
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable description (parameters, leaves with rules and sizes, nodes).

        Returns
        -------
        dict
            Keys ``tree_id``, ``params``, ``n_leaves``, ``cv_error``, ``cv_error_se``,
            ``variables``, ``covariates``, ``n_fit``, ``n_total``, ``sampled``,
            ``leaves`` (``[{"leaf", "rule", "n"}]``) and ``nodes`` (enough to rebuild the tree
            with :meth:`from_dict`; categorical levels as JSON scalars).
        """
        nodes = []
        for nd in self.nodes:
            d: dict[str, Any] = {"left": nd.left, "right": nd.right, "n_fit": nd.n_fit}
            if nd.is_leaf:
                d["leaf"] = nd.leaf
            elif nd.kind == "numeric":
                d.update(var=nd.var, kind="numeric", threshold=float(nd.threshold))
            else:
                d.update(
                    var=nd.var,
                    kind="categorical",
                    left_levels=sorted((to_jsonable(v) for v in nd.left_levels), key=str),
                    unknown_left=bool(nd.unknown_left),
                )
            nodes.append(d)
        return {
            "tree_id": int(self.tree_id),
            "params": dict(self.params),
            "n_leaves": int(self.n_leaves),
            "cv_error": float(self.cv_error),
            "cv_error_se": float(self.cv_error_se),
            "variables": list(self.variables),
            "covariates": list(self.covariates),
            "n_fit": int(self.n_fit),
            "n_total": int(self.n_total),
            "sampled": bool(self.sampled),
            "leaves": [
                {"leaf": int(lf), "rule": self.rules[lf], "n": int(self.leaf_sizes.get(lf, 0))}
                for lf in sorted(self.rules)
            ],
            "levels": {k: [to_jsonable(v) for v in lv] for k, lv in self.levels.items()},
            "nodes": nodes,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ProfileTree:
        """Rebuild a tree written by :meth:`to_dict` (categorical levels as JSON scalars)."""
        try:
            nodes = []
            for nd in d["nodes"]:
                if nd["left"] < 0:
                    nodes.append(TreeNode(leaf=int(nd["leaf"]), n_fit=int(nd.get("n_fit", 0))))
                elif nd["kind"] == "numeric":
                    thr = float(nd["threshold"])
                    nodes.append(
                        TreeNode(
                            left=int(nd["left"]),
                            right=int(nd["right"]),
                            var=str(nd["var"]),
                            kind="numeric",
                            threshold=thr,
                            threshold_text=format_threshold(thr),
                            n_fit=int(nd.get("n_fit", 0)),
                        )
                    )
                else:
                    nodes.append(
                        TreeNode(
                            left=int(nd["left"]),
                            right=int(nd["right"]),
                            var=str(nd["var"]),
                            kind="categorical",
                            left_levels=frozenset(nd["left_levels"]),
                            unknown_left=bool(nd["unknown_left"]),
                            n_fit=int(nd.get("n_fit", 0)),
                        )
                    )
            leaves = d["leaves"]
            return cls(
                tree_id=int(d["tree_id"]),
                params=dict(d["params"]),
                n_leaves=int(d["n_leaves"]),
                cv_error=float(d["cv_error"]),
                cv_error_se=float(d["cv_error_se"]),
                variables=list(d["variables"]),
                covariates=tuple(d["covariates"]),
                rules={int(lf["leaf"]): str(lf["rule"]) for lf in leaves},
                leaf_sizes={int(lf["leaf"]): int(lf["n"]) for lf in leaves},
                n_fit=int(d["n_fit"]),
                n_total=int(d["n_total"]),
                sampled=bool(d["sampled"]),
                nodes=tuple(nodes),
                levels={k: tuple(v) for k, v in d.get("levels", {}).items()},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise MLearnerError(
                f"not a profile tree description written by ProfileTree.to_dict: {exc!r}"
            ) from exc

    def __repr__(self) -> str:
        return (
            f"ProfileTree(tree_id={self.tree_id}, n_leaves={self.n_leaves}, "
            f"cv_error={self.cv_error:.4f}, variables={self.variables})"
        )


def format_threshold(r: float) -> str:
    """A numeric threshold as the rules write it: positional, trailing zeros trimmed."""
    text = np.format_float_positional(r, trim="-")
    return text if len(text) <= 12 else f"{r:.6g}"


def rule_text(conds: list[tuple[str, str, Any]], levels: Mapping[str, tuple[Any, ...]]) -> str:
    """The rule in words of a root-to-node path, merged per variable.

    Numeric conditions on one variable keep the tightest bounds (``lo < x <= hi``); categorical
    conditions intersect their level sets, written as ``x in {...}`` or, when the allowed levels
    outnumber both 3 and the excluded ones, ``x not in {...}``. Variables appear in the order of
    their first split on the path.

    Parameters
    ----------
    conds : list of (str, str, Any)
        The path's conditions from the root, each ``(var, op, value)`` with ``op`` one of
        ``"le"``/``"gt"`` (numeric threshold) or ``"in"`` (frozenset of levels).
    levels : mapping of str to tuple
        Known levels of every categorical covariate, in display order (:attr:`ProfileTree.levels`).

    Returns
    -------
    str
        E.g. ``"X1 > 0.013 and occp in {sales, clerical}"``; ``"all units"`` for the root.
    """
    if not conds:
        return ALL_UNITS
    order: list[str] = []
    lo: dict[str, float] = {}
    hi: dict[str, float] = {}
    sets: dict[str, frozenset[Any]] = {}
    for var, op, val in conds:
        if var not in order:
            order.append(var)
        if op == "gt":
            lo[var] = max(lo.get(var, -math.inf), val)
        elif op == "le":
            hi[var] = min(hi.get(var, math.inf), val)
        else:
            sets[var] = sets[var] & val if var in sets else val
    parts = []
    for var in order:
        if var in sets:
            allowed = [v for v in levels[var] if v in sets[var]]
            other = [v for v in levels[var] if v not in sets[var]]
            if len(allowed) > max(3, len(other)):
                parts.append(f"{var} not in {{{', '.join(str(v) for v in other)}}}")
            else:
                parts.append(f"{var} in {{{', '.join(str(v) for v in allowed)}}}")
        elif var in lo and var in hi:
            parts.append(f"{format_threshold(lo[var])} < {var} <= {format_threshold(hi[var])}")
        elif var in lo:
            parts.append(f"{var} > {format_threshold(lo[var])}")
        else:
            parts.append(f"{var} <= {format_threshold(hi[var])}")
    return " and ".join(parts)
