"""The indirect and total targets side by side: one record per target, and the family-wise option.

With a mediator and the DR-score statistic, the total effect is analysed as a second target
beside the decision target (:func:`~mlearner_dist.core.selection.decision_target`): its own
selection, p_leaf, threshold and ``declared``, each tested at alpha.
:func:`target_records` builds ``MLearner.targets_`` for the full-sample calibrations (score
replicates or a fixed threshold; ``familywise=True``: Westfall and Young's single-step min-p over
the paired replicates), :func:`cross_split_targets` for the cross-split calibration (the total
target on the same halves; ``familywise=True``: Bonferroni over the two targets). Each entry is a
:func:`target_record`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mlearner_dist.core import calibration as cal
from mlearner_dist.core.honest_calibration import cross_split_calibration, estimate_subgroups
from mlearner_dist.core.roles import Roles
from mlearner_dist.core.score_calibration import ScoreReplicateBasis, score_calibration
from mlearner_dist.core.selection import Selection, decision_target

if TYPE_CHECKING:
    from mlearner_dist.core.estimator import MLearner

__all__ = ["cross_split_targets", "target_record", "target_records"]


def target_record(
    target: str,
    p_leaf: float,
    calib: dict[str, Any],
    chosen: dict[str, Any],
    subgroups: Sequence[dict[str, Any]],
) -> dict[str, Any]:
    """One target's record: p_leaf, the calibration's threshold, declared, chosen, subgroups."""
    threshold = float(calib["threshold"])
    return {
        "target": target,
        "p_leaf": float(p_leaf),
        "threshold": threshold,
        "declared": bool(p_leaf < threshold),
        "mc_pvalue": calib.get("mc_pvalue"),
        "mc_se": calib.get("mc_se"),
        "null_p_leaf": list(calib.get("null_p_leaf", [])),
        "chosen": dict(chosen),
        "subgroups": list(subgroups),
    }


def target_records(
    model: MLearner,
    frame: pd.DataFrame,
    roles: Roles,
    sel: Selection,
    *,
    map_fn: cal.MapFn | None,
) -> dict[str, Any]:
    """Both targets side by side (the indirect one is the top-level decision).

    With a mediator, the DR-score statistic and null (score replicates) or fixed
    calibration, the total effect gets its own embedding, profile, p_leaf, threshold and
    ``declared``; each target is tested at alpha. ``familywise=True`` replaces both
    thresholds by the alpha order statistic of the paired replicates' minimum over targets
    (Westfall and Young's single-step min-p), so that P(any target declared | no
    heterogeneity of either) <= alpha.
    """
    if model.calibration_.get("subgroups_honest") and "targets" in model.calibration_:
        # subgroups.honest: both targets were analysed on the discovery half already
        return dict(model.calibration_["targets"])
    main = decision_target(roles.has_mediator)
    out = {
        main: target_record(
            main, model.p_leaf_, model.calibration_, model.chosen_, model.subgroups_
        )
    }
    mode = model.calibration_["mode"]
    scores_null = mode == "null" and model.calibration_.get("replicates") == "scores"
    if not (roles.has_mediator and model.test_statistic == "dr_score"):
        return out
    if scores_null and model.calibration_.get("honest"):
        return cross_split_targets(model, frame, roles, model.calibration_, map_fn=map_fn)
    if not (scores_null or mode == "fixed"):
        out["total"] = {
            "target": "total",
            "note": f"the total target is analysed with score replicates or a fixed "
            f"threshold; calibration mode {mode!r} ran for the indirect target only",
        }
        return out
    sel_t = model.select_target(frame, roles, sel.effects, "total")
    if scores_null:
        calib_t = score_calibration(
            model,
            frame,
            roles,
            ScoreReplicateBasis.of(sel_t),
            sel_t.p_leaf,
            map_fn=map_fn,
            target="total",
        )
    else:
        calib_t = dict(model.calibration_)
    tree = sel_t.chosen_tree
    subgroups = estimate_subgroups(
        model,
        frame,
        roles,
        sel.effects,
        tree.leaf_of(frame[list(roles.covariates)]),
        tree.rules,
        estimated_on="same_units",
    )
    out["total"] = target_record("total", sel_t.p_leaf, calib_t, sel_t.chosen, subgroups)
    out["total"]["configurations"] = sel_t.configurations
    out["total"]["tree"] = tree.to_dict()
    if model.familywise and scores_null:
        paired = np.minimum(
            np.asarray(out[main]["null_p_leaf"]), np.asarray(out["total"]["null_p_leaf"])
        )
        thr = cal.null_threshold(paired, model.alpha)
        for rec in out.values():
            rec["threshold"] = float(thr)
            rec["declared"] = bool(rec["p_leaf"] < thr)
            rec["familywise"] = True
    return out


def cross_split_targets(
    model: MLearner,
    frame: pd.DataFrame,
    roles: Roles,
    calibration: dict[str, Any],
    *,
    map_fn: cal.MapFn | None = None,
) -> dict[str, Any]:
    """Both targets in the cross-split calibration (the total one on the same halves).

    Parameters
    ----------
    frame : DataFrame
        The validated units, ordered by unit id.
    roles : Roles
    calibration : dict
        The decision target's cross-split record (:func:`cross_split_calibration`).
    map_fn : callable, optional

    Returns
    -------
    dict
        ``{"indirect": ..., "total": ...}`` records (p_leaf, threshold, declared, mc_pvalue,
        mc_se, null_p_leaf, chosen, subgroups, directions). ``familywise=True``: Bonferroni
        over the two targets' decision p-values (each already Bonferroni over two
        directions), so P(any target declared | neither heterogeneous) <= alpha.
    """
    main = decision_target(roles.has_mediator)
    out = {
        main: target_record(
            main,
            float(calibration["p_decision"]),
            calibration,
            calibration["chosen_on_discovery"],
            calibration["subgroups"],
        )
    }
    out[main]["directions"] = calibration["directions"]
    calib_t = cross_split_calibration(model, frame, roles, target="total", map_fn=map_fn)
    rec = target_record(
        "total",
        float(calib_t["p_decision"]),
        calib_t,
        calib_t["chosen_on_discovery"],
        calib_t["subgroups"],
    )
    rec["directions"] = calib_t["directions"]
    rec["how"] = calib_t["how"]
    out["total"] = rec
    if model.familywise:
        p_fw = {t: min(1.0, 2.0 * float(r["p_leaf"])) for t, r in out.items()}
        for t, r in out.items():
            r["p_familywise"] = p_fw[t]
            r["declared"] = bool(p_fw[t] < float(r["threshold"]))
            r["familywise"] = True
        out[main]["familywise_how"] = (
            "Bonferroni over the indirect and total targets: each target's p_decision times 2"
        )
    return out
