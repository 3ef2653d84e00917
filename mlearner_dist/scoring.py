"""The subgroup scoring model: assign new units to the discovered subgroups.

A fitted profile tree (``core.profile_tree.ProfileTree``) maps covariates to leaves; each leaf is a
subgroup with a rule in words. :class:`SubgroupModel` wraps such a tree (any object with
``leaf_of(X) -> int array``, ``rules: dict[int, str]`` and its covariate names) so that it can be
applied to new data in memory (:func:`score_frame`), or logged as an MLflow pyfunc model by
:mod:`mlearner_dist.backends.mlflow_tracking` and applied with Spark. This module is framework-free.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from mlearner_dist.exceptions import InputValidationError, MLearnerError

logger = logging.getLogger(__name__)

#: Output column: the subgroup (leaf id) of each unit.
SUBGROUP_COLUMN = "subgroup"
#: Output column: the subgroup's rule in words.
RULE_COLUMN = "rule"
_COVARIATE_ATTRIBUTES = ("covariates", "feature_names", "variables_in", "feature_names_in_")


def tree_covariates(tree: Any) -> tuple[str, ...]:
    """The covariate names a profile tree reads, taken from the tree object.

    Looks for, in order, the attributes ``covariates``, ``feature_names``, ``variables_in`` and
    ``feature_names_in_``.

    Raises
    ------
    MLearnerError
        If the tree has none of them (pass ``covariates=`` to :class:`SubgroupModel` instead).
    """
    for attr in _COVARIATE_ATTRIBUTES:
        names = getattr(tree, attr, None)
        if names is not None and len(names) > 0:
            return tuple(str(n) for n in names)
    raise MLearnerError(
        f"the profile tree {type(tree).__name__} has none of the attributes "
        f"{', '.join(_COVARIATE_ATTRIBUTES)}: pass covariates=[...] to SubgroupModel"
    )


class SubgroupModel:
    """A fitted profile tree packaged for scoring new units.

    Parameters
    ----------
    tree : object
        Fitted profile tree with ``leaf_of(X: pd.DataFrame) -> np.ndarray`` (int leaf ids, one per
        row) and ``rules: dict[int, str]`` (leaf id to rule in words).
    covariates : sequence of str, optional
        The covariate columns the tree reads, in order. Default: taken from the tree (see
        :func:`tree_covariates`).

    Attributes
    ----------
    tree : object
        The wrapped tree.
    covariates : tuple of str
        Columns read from the input frame.
    rules : dict of int to str
        Subgroup id to rule.
    """

    def __init__(self, tree: Any, covariates: Sequence[str] | None = None) -> None:
        if not callable(getattr(tree, "leaf_of", None)):
            raise MLearnerError(
                f"tree must have a leaf_of(X) method returning leaf ids; got {type(tree).__name__}"
            )
        rules = getattr(tree, "rules", None)
        if not isinstance(rules, dict) or not rules:
            raise MLearnerError(
                f"tree.rules must be a non-empty dict of leaf id to rule text; got {rules!r}"
            )
        if covariates is None:
            covariates = tree_covariates(tree)
        covariates = tuple(str(c) for c in covariates)
        if not covariates:
            raise MLearnerError("covariates must name at least one column the tree reads")
        self.tree = tree
        self.covariates = covariates
        self.rules = {int(k): str(v) for k, v in rules.items()}

    def leaf_of(self, df: pd.DataFrame) -> np.ndarray:
        """The subgroup id of every row of ``df``.

        Parameters
        ----------
        df : pandas.DataFrame, shape (n, >= n_covariates)
            Must contain every column of :attr:`covariates`; other columns are ignored.

        Returns
        -------
        numpy.ndarray of int64, shape (n,)

        Raises
        ------
        InputValidationError
            If covariate columns are missing.
        MLearnerError
            If the tree returns a wrong number of ids or ids that are not leaves of its rules.
        """
        if not isinstance(df, pd.DataFrame):
            raise MLearnerError(f"df must be a pandas DataFrame, got {type(df).__name__}")
        missing = [c for c in self.covariates if c not in df.columns]
        if missing:
            raise InputValidationError(
                [
                    f"column {c!r} (covariate) is missing from the table to score: add it, with "
                    "the same meaning and coding as in the analysed data"
                    for c in missing
                ]
            )
        leaf = np.asarray(self.tree.leaf_of(df[list(self.covariates)]))
        if leaf.shape != (len(df),):
            raise MLearnerError(
                f"the tree returned {leaf.shape} leaf ids for {len(df)} rows; expected ({len(df)},)"
            )
        leaf = leaf.astype(np.int64)
        unknown = sorted(set(np.unique(leaf).tolist()) - set(self.rules))
        if unknown:
            raise MLearnerError(
                f"the tree returned leaf ids {unknown} that are not in its rules "
                f"{sorted(self.rules)}: the tree object is inconsistent"
            )
        return leaf

    def predict(self, df: pd.DataFrame) -> pd.DataFrame:
        """Subgroup id and rule for every row.

        Returns
        -------
        pandas.DataFrame, shape (n, 2)
            Columns ``subgroup`` (int64) and ``rule`` (str), index as ``df``.
        """
        leaf = self.leaf_of(df)
        rule = pd.Series(leaf, index=df.index).map(self.rules).astype(str)
        return pd.DataFrame({SUBGROUP_COLUMN: leaf, RULE_COLUMN: rule}, index=df.index)

    def __repr__(self) -> str:
        return f"SubgroupModel(n_subgroups={len(self.rules)}, covariates={list(self.covariates)})"


def score_frame(model: SubgroupModel | Any, df: pd.DataFrame) -> pd.DataFrame:
    """Append each unit's subgroup and rule to a table.

    Parameters
    ----------
    model : SubgroupModel or profile tree
        A :class:`SubgroupModel`, or a tree object it can wrap.
    df : pandas.DataFrame, shape (n, p)
        Units to score; must contain the model's covariates.

    Returns
    -------
    pandas.DataFrame, shape (n, p + 2)
        A copy of ``df`` with columns ``subgroup`` (int) and ``rule`` (str) added (replacing
        columns of those names if present).
    """
    if not isinstance(model, SubgroupModel):
        model = SubgroupModel(model)
    scored = model.predict(df)
    out = df.drop(columns=[SUBGROUP_COLUMN, RULE_COLUMN], errors="ignore").copy()
    out[SUBGROUP_COLUMN] = scored[SUBGROUP_COLUMN].to_numpy()
    out[RULE_COLUMN] = scored[RULE_COLUMN].to_numpy()
    logger.info("scored %d units into %d subgroups", len(out), out[SUBGROUP_COLUMN].nunique())
    return out


__all__ = [
    "RULE_COLUMN",
    "SUBGROUP_COLUMN",
    "SubgroupModel",
    "score_frame",
    "tree_covariates",
]
