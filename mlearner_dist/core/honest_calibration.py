"""Honest calibrations: the partition is chosen on one half of the units and tested on the other.

* :func:`split_calibration` (``calibration: split``): discovery on one half, the chosen profile
  tested once on the other half, whose p-value is then valid at alpha;
* :func:`cross_split_calibration` (``calibration: null`` with score replicates and
  ``honest=True``, the default): both directions of the cross-split test of
  :mod:`mlearner_dist.core.cross_split` (halves from :func:`cross_split_halves`, directions from
  :func:`cross_split_directions`), Bonferroni over the two, the winning direction's partition
  reported (:func:`winning_direction`), tested on the units with overlap
  (:func:`tested_units`);
* :func:`cross_split_stability`: the seed stability of that decision.

Both report what was tested: the discovery tree and subgroup effects estimated on the half that
tested it (:func:`holdout_subgroups`). The functions take the estimator whose settings and
selection steps they use (:class:`~mlearner_dist.core.estimator.MLearner`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mlearner_dist.core import calibration as cal
from mlearner_dist.core.cross_split import DirectionTest, bonferroni_pvalue, direction_test
from mlearner_dist.core.design_variance import design_of
from mlearner_dist.core.effect_summaries import subgroup_table
from mlearner_dist.core.effects import cross_fit_effects, design_blocks, overlap_mask
from mlearner_dist.core.profile_tree import ProfileTree
from mlearner_dist.core.roles import Roles
from mlearner_dist.core.score_selection import target_score
from mlearner_dist.core.score_test import score_pvalue
from mlearner_dist.core.selection import (
    Selection,
    decision_pvalue,
    decision_target,
    leaf_pvalues,
    resolve_effect_names,
)
from mlearner_dist.core.stability import SeedRun, summarise_stability

if TYPE_CHECKING:
    from mlearner_dist.core.estimator import MLearner

__all__ = [
    "CrossSplitHalves",
    "cross_split_calibration",
    "cross_split_directions",
    "cross_split_halves",
    "cross_split_stability",
    "estimate_subgroups",
    "holdout_effects",
    "holdout_subgroups",
    "split_calibration",
    "split_halves",
    "tested_units",
    "winning_direction",
]


def estimate_subgroups(
    model: MLearner,
    frame: pd.DataFrame,
    roles: Roles,
    effects: pd.DataFrame,
    leaf: np.ndarray,
    rules: dict[int, str],
    *,
    estimated_on: str,
) -> list[dict[str, Any]]:
    """:func:`~mlearner_dist.core.effect_summaries.subgroup_table` with the estimator's subgroup
    and weight settings; every entry marked ``estimated_on`` (``holdout`` or ``same_units``)."""
    subgroups = subgroup_table(
        frame,
        roles,
        effects,
        leaf,
        rules,
        n_bootstrap=model.n_bootstrap,
        level=model.level,
        min_size=model.min_subgroup,
        random_state=model.random_state,
        propensity_clip=model.propensity_clip,
        max_density_ratio=model.max_density_ratio,
    )
    for sg in subgroups:
        sg["estimated_on"] = estimated_on
    return subgroups


def holdout_subgroups(
    model: MLearner,
    holdout: pd.DataFrame,
    roles: Roles,
    effects: pd.DataFrame,
    leaf: np.ndarray,
    rules: dict[int, str],
) -> list[dict[str, Any]]:
    """Subgroup effects estimated on a held-out half, marked ``estimated_on: holdout``.

    The split and cross-split calibrations report the partition they tested with effects from
    the half that tested it (those units chose nothing).
    """
    return estimate_subgroups(
        model, holdout, roles, effects, leaf, rules, estimated_on="holdout"
    )


def holdout_effects(model: MLearner, holdout: pd.DataFrame, roles: Roles) -> pd.DataFrame:
    """Effects of a held-out half, cross-fitted on that half alone, in its row order."""
    effects_h, _ = cross_fit_effects(
        holdout, roles, model.nuisance_spec(), n_folds=model.n_folds, seed=model.random_state
    )
    effects_h = effects_h.set_index("unit_id").loc[holdout[roles.unit_id].to_numpy()]
    return effects_h.reset_index()


def split_calibration(model: MLearner, frame: pd.DataFrame, roles: Roles) -> dict[str, Any]:
    """Discover on one half, test the chosen configuration once on the other half.

    The held-out half played no part in any choice, so its p-value is a valid p-value and
    ``p < alpha`` holds the Type I error at alpha. With ``test_statistic="dr_score"`` the
    held-out test is the DR-score test of the discovery tree (merged on the discovery half) on
    scores cross-fitted within the held-out half alone; otherwise the reference's interaction
    test. The record carries what is reported: the discovery tree and configuration, and the
    subgroup effects estimated on the held-out half (honest: those units chose nothing).
    """
    mask = split_halves(frame, roles, model.random_state)
    discover, holdout = frame[mask].reset_index(drop=True), frame[~mask].reset_index(drop=True)
    sel = model.select(discover, roles)
    tree = sel.chosen_tree
    leaf = tree.leaf_of(holdout[list(roles.covariates)])
    effects_h = holdout_effects(model, holdout, roles)
    if model.test_statistic == "dr_score":
        target = decision_target(roles.has_mediator)
        p = score_pvalue(
            target_score(effects_h, target),
            leaf,
            covariance=model.test_covariance,
            design=design_of(effects_h),
        )
        test = f"the DR-score test of the {target} effect"
    else:
        p = decision_pvalue(holdout, roles, leaf, model.test_method)
        test = "the interaction test"
    subgroups = holdout_subgroups(model, holdout, roles, effects_h, leaf, tree.rules)
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
        "chosen_on_discovery": dict(sel.chosen),
        "discovery_p_leaf": float(sel.p_leaf),
        "discovery_tree": tree.to_dict(),
        "subgroups": subgroups,
        "how": (
            f"discovery on {int(mask.sum())} units, the chosen profile tested once with {test} "
            f"on the other {int((~mask).sum())} (effects cross-fitted on that half alone); "
            f"declared when that p-value < alpha={model.alpha}; subgroup effects are estimated "
            "on the held-out half"
        ),
    }


def split_halves(frame: pd.DataFrame, roles: Roles, seed: int) -> np.ndarray:
    """Discovery mask of the split halves: every stratum split in two, whole clusters kept."""
    codes, clusters = design_blocks(frame, roles)
    return cal.split_sample(frame[roles.unit_id].to_numpy(), seed, strata=codes, clusters=clusters)


@dataclass
class CrossSplitHalves:
    """The two halves of the cross-split calibration with effects cross-fitted within each."""

    frames: dict[str, pd.DataFrame]
    effects: dict[str, pd.DataFrame]
    key: tuple[int, int]


def cross_split_halves(
    model: MLearner, frame: pd.DataFrame, roles: Roles, *, map_fn: cal.MapFn | None = None
) -> CrossSplitHalves:
    """Halves ``A``/``B`` (:func:`~mlearner_dist.core.calibration.split_sample`) and their effects.

    Each half's nuisance models are cross-fitted on that half alone, so no model of one half has
    seen an outcome of the other. Cached on ``model`` for the frame, so both targets share them.
    ``map_fn`` fits the two halves in parallel (the result does not depend on it).
    """
    key = (len(frame), int(model.random_state))
    cached = getattr(model, "_cross_split_halves", None)
    if cached is not None and cached.key == key and cached.frames["A"].shape[1] == frame.shape[1]:
        return cached
    mask = split_halves(frame, roles, model.random_state)
    frames = {"A": frame[mask].reset_index(drop=True), "B": frame[~mask].reset_index(drop=True)}
    spec = model.nuisance_spec()

    def fit_half(part: pd.DataFrame) -> pd.DataFrame:
        eff, _ = cross_fit_effects(
            part, roles, spec, n_folds=model.n_folds, seed=model.random_state
        )
        return eff.set_index("unit_id").loc[part[roles.unit_id].to_numpy()].reset_index()

    fitted = (map_fn or cal.sequential_map)(fit_half, [frames["A"], frames["B"]])
    effects = {"A": fitted[0], "B": fitted[1]}
    halves = CrossSplitHalves(frames=frames, effects=effects, key=key)
    model._cross_split_halves = halves
    return halves


def cross_split_directions(
    model: MLearner,
    halves: CrossSplitHalves,
    roles: Roles,
    target: str,
    *,
    seed: int | None = None,
    map_fn: cal.MapFn | None = None,
) -> tuple[list[DirectionTest], dict[str, dict[str, Any]]]:
    """Both directions of the cross-split test of one target.

    Parameters
    ----------
    model : MLearner
    halves : CrossSplitHalves
    roles : Roles
    target : {"indirect", "total"}
    seed : int, optional
        Seed of the discovery half's embedding and K-means (default ``model.random_state``). The
        score replicates always use ``model.random_state``, so two seeds are tested against the
        same replicates.
    map_fn : callable, optional
        Runs the two discovery selections in parallel; the score replicates (cheap: only the
        score-dependent steps) run in this process.

    Returns
    -------
    tests : list of DirectionTest
        ``A->B`` then ``B->A``.
    discovery : dict
        Per direction, the discovery half's chosen configuration and p_leaf.
    """
    covs = list(roles.covariates)
    names = (
        resolve_effect_names(model.embed_effects, roles.has_mediator)
        if target == decision_target(roles.has_mediator)
        else (target,)
    )
    settings = model.profile_settings()
    tests: list[DirectionTest] = []
    discovery: dict[str, dict[str, Any]] = {}
    pairs = (("A", "B"), ("B", "A"))

    def discover(disc: str) -> Selection:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return model.select_target(
                halves.frames[disc], roles, halves.effects[disc], target, names=names, seed=seed
            )

    selections = (map_fn or cal.sequential_map)(discover, [disc for disc, _ in pairs])
    for (disc, test), sel in zip(pairs, selections, strict=True):
        keep = tested_units(model, halves.effects[test])
        direction = f"{disc}->{test}"
        discovery[direction] = {
            "chosen_on_discovery": dict(sel.chosen),
            "p_leaf": sel.p_leaf,
            "n_tested": int(keep.sum()),
            "n_outside_overlap": int((~keep).sum()),
        }
        tests.append(
            direction_test(
                sel.profile.raw_trees,
                halves.frames[test][covs][keep].reset_index(drop=True),
                halves.effects[test][keep].reset_index(drop=True),
                target,
                direction=direction,
                n_replicates=model.n_replicates,
                random_state=model.random_state,
                merge_level=settings.score_merge_level,
                covariance=settings.covariance,
                multiplier=model.multiplier,
            )
        )
    return tests, discovery


def tested_units(model: MLearner, effects: pd.DataFrame) -> np.ndarray:
    """The units a cross-split direction tests: all, or (observational) those with overlap.

    Observational designs with ``model.overlap_trim > 0`` keep the units whose estimated
    propensity lies in ``[overlap_trim, 1 - overlap_trim]``
    (:func:`~mlearner_dist.core.effects.overlap_mask`); randomised designs keep every unit.
    """
    if model.design != "observational" or not model.overlap_trim:
        return np.ones(len(effects), dtype=bool)
    return overlap_mask(effects["propensity"].to_numpy(), float(model.overlap_trim))


def winning_direction(tests: Sequence[DirectionTest]) -> DirectionTest:
    """The direction whose partition is reported: smallest Monte Carlo p-value, then p_observed."""
    return min(tests, key=lambda t: (t.mc_pvalue, t.p_observed))


def cross_split_stability(
    model: MLearner,
    frame: pd.DataFrame,
    roles: Roles,
    reported: ProfileTree,
    *,
    map_fn: cal.MapFn | None = None,
) -> dict[str, Any] | None:
    """Seed stability of the cross-split decision: the decision re-run with other seeds.

    The halves and their cross-fitted effects are held fixed (they do not depend on the seeds of
    t-SNE and K-means); for each of ``model.stability_seeds`` seeds both directions' discovery
    selections (embedding, K-means, trees) are re-run with that seed and tested on the other half
    against the same score replicates. A seed declares when its Bonferroni ``p_decision`` is below
    ``alpha`` (the threshold of the cross-split decision); its partition is the winning
    direction's tree, compared with ``reported`` on all units of ``frame``.

    Returns
    -------
    dict or None
        :func:`mlearner_dist.core.stability.summarise_stability` (``p_leaf`` holds each seed's
        ``p_decision``), or None when off or when ``len(frame) > stability_max_n``.
    """
    if model.stability_seeds < 1 or len(frame) > model.stability_max_n:
        return None
    target = decision_target(roles.has_mediator)
    halves = cross_split_halves(model, frame, roles, map_fn=map_fn)
    X = frame[list(roles.covariates)]

    def rerun(seed: int) -> list[DirectionTest]:
        return cross_split_directions(model, halves, roles, target, seed=seed)[0]

    seeds = [model.random_state + 7919 * (i + 1) for i in range(model.stability_seeds)]
    runs = []
    for seed, tests in zip(seeds, (map_fn or cal.sequential_map)(rerun, seeds), strict=True):
        best = winning_direction(tests)
        runs.append(
            SeedRun(
                seed=seed,
                p_leaf=bonferroni_pvalue([t.mc_pvalue for t in tests]),
                leaf=best.tree.leaf_of(X),
                rules=tuple(best.tree.rules.values()),
                variables=tuple(best.tree.variables),
            )
        )
    out = summarise_stability(
        reported.leaf_of(X), list(reported.rules.values()), float(model.alpha), runs
    )
    out["how"] = (
        f"the cross-split decision re-run with {model.stability_seeds} other seeds for t-SNE and "
        "K-means on the same halves, effects and score replicates; a seed declares when its "
        f"p_decision < alpha = {model.alpha}; agreement on all {len(frame)} units"
    )
    return out


def cross_split_calibration(
    model: MLearner,
    frame: pd.DataFrame,
    roles: Roles,
    *,
    target: str,
    map_fn: cal.MapFn | None = None,
) -> dict[str, Any]:
    """Honest null calibration of one target (:mod:`mlearner_dist.core.cross_split`).

    Direction ``A -> B``: the selection's score-independent steps (embedding, K-means, one tree
    per K) on half ``A``; merging, tests and the choice over K on half ``B``'s scores, calibrated
    by ``n_replicates`` score replicates of ``B``. Likewise ``B -> A``. ``p_decision`` is
    Bonferroni's ``min(1, 2 min(q_AB, q_BA))`` of the two Monte Carlo p-values; declared when it
    is below ``alpha``. The record names the winning direction's tree (merged on its test half)
    and the subgroup effects estimated on that test half, which is what was tested.
    """
    halves = cross_split_halves(model, frame, roles, map_fn=map_fn)
    covs = list(roles.covariates)
    tests, discovery = cross_split_directions(model, halves, roles, target, map_fn=map_fn)
    p_decision = bonferroni_pvalue([t.mc_pvalue for t in tests])
    best = winning_direction(tests)
    test_half = best.direction[-1]
    hold = halves.frames[test_half]
    leaf = best.tree.leaf_of(hold[covs])
    subgroups = holdout_subgroups(
        model, hold, roles, halves.effects[test_half], leaf, best.tree.rules
    )
    p_y, p_m = leaf_pvalues(hold, roles, leaf, model.test_method)
    chosen = dict(best.chosen)
    # the reference's Y and M interaction tests, reported beside, on the same half and partition
    chosen.update(
        selected_for_test=True,
        p_y=float(p_y),
        p_m=None if p_m is None else float(p_m),
        response=f"score_{target}",
        direction=best.direction,
    )
    n_a, n_b = len(halves.frames["A"]), len(halves.frames["B"])
    n_out = sum(d["n_outside_overlap"] for d in discovery.values())
    return {
        "mode": "null",
        "replicates": "scores",
        "honest": True,
        "multiplier": model.multiplier,
        "statistic": f"score_{target}",
        "alpha": model.alpha,
        "threshold": float(model.alpha),
        "n_replicates": int(model.n_replicates),
        "null_p_leaf": list(best.null_p),
        "mc_pvalue": float(p_decision),
        "mc_se": float(min(1.0, 2.0 * best.mc_se)),
        "p_decision": float(p_decision),
        "n_discovery": len(halves.frames[best.direction[0]]),
        "n_holdout": len(hold),
        "halves": {"A": n_a, "B": n_b},
        "overlap_trim": float(model.overlap_trim) if model.design == "observational" else 0.0,
        "n_outside_overlap": int(n_out),
        "directions": [{**t.to_dict(), **discovery[t.direction]} for t in tests],
        "chosen_on_discovery": chosen,
        "discovery_p_leaf": float(discovery[best.direction]["p_leaf"]),
        "discovery_tree": best.tree.to_dict(),
        "subgroups": subgroups,
        "how": (
            f"cross-split score calibration: units split by a hash of their id into halves of "
            f"{n_a} and {n_b}; each half's effects cross-fitted on that half alone; candidate "
            f"trees learned on one half and merged, tested and chosen on the other half's doubly "
            f"robust {target} scores, calibrated by {model.n_replicates} {model.multiplier} score "
            f"replicates of that half; both directions, Bonferroni p_decision = min(1, 2 min(q)) "
            f"= {p_decision:.3g}; declared when p_decision < alpha={model.alpha}; the reported "
            f"partition is the {best.direction} direction's, its subgroup effects estimated on "
            "its test half"
            + (
                f"; tested on the units with estimated propensity in [{model.overlap_trim:g}, "
                f"{1 - model.overlap_trim:g}] ({n_out} of {n_a + n_b} outside, not tested)"
                if n_out
                else ""
            )
        ),
    }
