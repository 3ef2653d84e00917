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

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlearner_dist.core.interaction_test import interaction_pvalue, select_configuration
from mlearner_dist.core.profiles import ProfileTree, choose_tree, fit_profile_trees
from mlearner_dist.core.roles import Roles
from mlearner_dist.exceptions import ConfigError

EFFECTS = ("indirect", "direct", "total")

#: ``pvalues(tree) -> (p_y, p_m)``: the tests of one tree over every unit (p_m None without M).
PValueFn = Callable[[ProfileTree], tuple[float, "float | None"]]


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
    """

    configurations: list[dict[str, Any]]
    trees: dict[tuple[int, int], ProfileTree]
    chosen: dict[str, Any]
    p_leaf: float
    p_leaf_y: float
    p_leaf_m: float | None
    response: str

    @property
    def chosen_tree(self) -> ProfileTree:
        """The profile tree of the chosen configuration."""
        return self.trees[(int(self.chosen["k"]), int(self.chosen["tree_id"]))]


def choose_profile(
    X_fit: pd.DataFrame,
    labels_fit: dict[int, np.ndarray],
    pvalues: PValueFn,
    *,
    has_mediator: bool,
    settings: ProfileSettings,
    random_state: int,
    progress: Callable[[str], None] | None = None,
) -> ProfileChoice:
    """Fit profile trees per K, test the tree chosen for each K, and pick the configuration.

    Parameters
    ----------
    X_fit : DataFrame, shape (n_fit, p)
        Covariates of the units the trees are grown on (all units, or a sample at large n).
    labels_fit : dict of K -> ndarray, shape (n_fit,)
        Cluster labels of those units for each K.
    pvalues : callable
        ``pvalues(tree) -> (p_y, p_m)``: the interaction tests over every unit. Keeping this a
        callable lets the distributed path test from aggregates.
    has_mediator : bool
    settings : ProfileSettings
    random_state : int
    progress : callable, optional
        Called with a short text before each K.

    Returns
    -------
    ProfileChoice
    """
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
    response = decision_response(has_mediator)
    chosen = dict(select_configuration(tested, response))
    chosen["response"] = response
    p_leaf_y = float(min(c["p_y"] for c in tested))
    p_leaf_m = float(min(c["p_m"] for c in tested)) if has_mediator else None
    return ProfileChoice(
        configurations=configurations,
        trees=trees,
        chosen=chosen,
        p_leaf=float(p_leaf_m if has_mediator else p_leaf_y),  # type: ignore[arg-type]
        p_leaf_y=p_leaf_y,
        p_leaf_m=p_leaf_m,
        response=response,
    )


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
        "p_leaf_y": choice.p_leaf_y,
        "p_leaf_m": choice.p_leaf_m,
        "p_leaf": choice.p_leaf,
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
    "leaf_pvalues",
    "mediator_pvalue",
    "profiles_document",
    "resolve_effect_names",
    "tree_pvalues",
]
