"""Null calibration on score replicates of the full-sample selection (``honest=False``).

Replicate ``b`` multiplies the centred doubly robust scores by random signs
(:mod:`mlearner_dist.core.score_replicates`) and re-runs the score-dependent steps of the
selection (:func:`mlearner_dist.core.selection.rerun_score_choice`) on the observed raw trees;
the threshold is the alpha order statistic of the replicates' ``p_leaf``
(:func:`mlearner_dist.core.calibration.null_calibration`). The honest cross-split version, the
default, is :func:`mlearner_dist.core.honest_calibration.cross_split_calibration`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mlearner_dist.core import calibration as cal
from mlearner_dist.core.design_variance import design_of
from mlearner_dist.core.roles import Roles
from mlearner_dist.core.score_replicates import score_null_replicate
from mlearner_dist.core.selection import (
    ProfileChoice,
    Selection,
    decision_target,
    rerun_score_choice,
)

if TYPE_CHECKING:
    from mlearner_dist.core.estimator import MLearner

__all__ = ["SCORE_REPLICATE_STREAM", "ScoreReplicateBasis", "score_calibration"]


#: Second seed word of the score replicates' generators (distinct from permutation replicates').
SCORE_REPLICATE_STREAM = 7


@dataclass
class ScoreReplicateBasis:
    """What score replicates need from the observed selection: its effects and profile choice."""

    effects: pd.DataFrame
    profile: ProfileChoice

    @classmethod
    def of(cls, sel: Selection) -> ScoreReplicateBasis:
        """From an in-memory :class:`Selection`."""
        return cls(effects=sel.effects, profile=sel.profile)


def score_calibration(
    model: MLearner,
    frame: pd.DataFrame,
    roles: Roles,
    basis: Any,
    p_leaf: float,
    *,
    map_fn: cal.MapFn | None = None,
    target: str | None = None,
) -> dict[str, Any]:
    """Null calibration on score replicates (:mod:`mlearner_dist.core.score_replicates`).

    Replicate ``b`` multiplies the centred DR scores by random signs from
    ``default_rng([random_state, b])`` and re-runs every score-dependent step of the selection
    (leaf merging, the DR-score tests of each K's tree, the choice over K) on the observed raw
    trees, which do not depend on the scores. The nuisance fits, hence the confounding
    adjustment of an observational design, are the observed ones. Replicate ``b``'s multipliers
    do not depend on the target, so the null samples of two targets are paired (the family-wise
    threshold uses that).
    """
    if not isinstance(basis, ScoreReplicateBasis):
        basis = ScoreReplicateBasis(effects=basis.effects, profile=basis.profile)
    target = target or decision_target(roles.has_mediator)
    X = frame[list(roles.covariates)]
    settings = model.profile_settings()
    column = f"score_{target}"
    basis.profile.extra_raw_leaves(X)  # fill the cache once, before replicates are shipped
    design = design_of(basis.effects)

    def one_replicate(r: int) -> float:
        rng = np.random.default_rng([int(model.random_state), SCORE_REPLICATE_STREAM, int(r)])
        rep = score_null_replicate(basis.effects, rng=rng, multiplier=model.multiplier)
        score = rep[column].to_numpy(dtype=float)
        return rerun_score_choice(basis.profile, X, score, settings, design=design)

    doc = cal.null_calibration(
        one_replicate, model.n_replicates, model.alpha, p_leaf, map_fn=map_fn
    )
    doc["replicates"] = "scores"
    doc["multiplier"] = model.multiplier
    doc["statistic"] = column
    doc["how"] = (
        f"{doc['n_replicates']} score replicates: the centred doubly robust {target} scores times "
        f"random {model.multiplier} multipliers (no heterogeneity in any replicate; nuisance fits, "
        "hence the confounding adjustment, kept), with leaf merging, the DR-score tests and the "
        f"choice over K re-run on each; threshold = the alpha={model.alpha} order statistic of "
        "their p_leaf values"
    )
    return doc
