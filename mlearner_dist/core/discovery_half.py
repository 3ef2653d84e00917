"""``subgroups.honest``: select and calibrate on a hashed half, estimate the subgroups on the other.

The ``fixed`` threshold, the permutation replicates and the full-sample score replicates
calibrate a selection made on all units, and the subgroup effects of that selection would be
estimated on the units that chose the subgroups: their intervals are then post-selection
intervals, optimistic because the partition was chosen where the effects differ most. With
``subgroups.honest: true`` :func:`discovery_half_calibration` instead

1. splits the units into halves by a hash of the unit id
   (:func:`~mlearner_dist.core.honest_calibration.split_halves`: strata split in two, clusters
   kept whole; the halves of ``calibration.mode: split``);
2. runs the selection and the configured calibration on the discovery half only (the decision
   is that half's ``p_leaf`` against that half's threshold);
3. cross-fits the effects of the other half on that half alone and estimates the reported
   subgroups of every target there (those units chose nothing), marked
   ``estimated_on: holdout``.

The price is the split's: the decision uses half of the units. The split and the default
cross-split calibrations hold out already and are not changed.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import pandas as pd

from mlearner_dist.core import calibration as cal
from mlearner_dist.core.honest_calibration import holdout_effects, holdout_subgroups, split_halves
from mlearner_dist.core.profile_tree import ProfileTree
from mlearner_dist.core.roles import Roles
from mlearner_dist.core.score_calibration import ScoreReplicateBasis
from mlearner_dist.core.targets import target_records

if TYPE_CHECKING:
    from mlearner_dist.core.estimator import MLearner

__all__ = ["discovery_half_calibration"]


def discovery_half_calibration(
    model: MLearner,
    frame: pd.DataFrame,
    roles: Roles,
    *,
    map_fn: cal.MapFn | None = None,
) -> dict[str, Any]:
    """The configured calibration on a discovery half, subgroups estimated on the other half.

    Parameters
    ----------
    model : MLearner
        Its settings and selection steps; ``model.honest_subgroups`` is true and its
        calibration does not hold out by itself (:meth:`MLearner.splits_for_subgroups`).
    frame : DataFrame
        The validated units, ordered by unit id.
    roles : Roles
    map_fn : callable, optional
        How null replicates are run (:data:`mlearner_dist.core.calibration.MapFn`).

    Returns
    -------
    dict
        The discovery half's calibration record with ``p_decision`` (the discovery selection's
        ``p_leaf``), ``discovery_tree``, ``chosen_on_discovery``, ``subgroups`` (held-out),
        ``n_discovery``, ``n_holdout``, ``subgroups_honest: true`` and ``targets`` (every
        target's record, its subgroups held out), so the in-memory estimator and the pipeline's
        report stage report exactly what was decided and held out.
    """
    mask = split_halves(frame, roles, model.random_state)
    discover = frame[mask].reset_index(drop=True)
    holdout = frame[~mask].reset_index(drop=True)
    sel = model.select(discover, roles)
    doc = dict(
        model.calibrate(
            discover,
            roles,
            sel.p_leaf,
            map_fn=map_fn,
            selection=ScoreReplicateBasis.of(sel),
            discovery_half=False,
        )
    )
    effects_h = holdout_effects(model, holdout, roles)
    covariates = list(roles.covariates)
    tree = sel.chosen_tree
    subgroups = holdout_subgroups(
        model, holdout, roles, effects_h, tree.leaf_of(holdout[covariates]), tree.rules
    )
    n_d, n_h = int(mask.sum()), int((~mask).sum())
    doc.update(
        {
            "p_decision": float(sel.p_leaf),
            "discovery_p_leaf": float(sel.p_leaf),
            "chosen_on_discovery": dict(sel.chosen),
            "discovery_tree": tree.to_dict(),
            "subgroups": subgroups,
            "n_discovery": n_d,
            "n_holdout": n_h,
            "subgroups_honest": True,
        }
    )
    doc["how"] = (
        f"{doc.get('how', doc['mode'])}; subgroups.honest: the selection and this calibration "
        f"ran on {n_d} units (a hash of the unit id) and the reported subgroups' effects are "
        f"estimated on the other {n_h} (effects cross-fitted on that half alone)"
    )
    view = copy.copy(model)
    view.p_leaf_ = float(sel.p_leaf)
    view.calibration_ = doc
    view.chosen_ = dict(sel.chosen)
    view.subgroups_ = subgroups
    targets = target_records(view, discover, roles, sel, map_fn=map_fn)
    for rec in targets.values():
        if isinstance(rec, dict) and rec.get("tree") is not None:
            t = ProfileTree.from_dict(rec["tree"])
            rec["subgroups"] = holdout_subgroups(
                model, holdout, roles, effects_h, t.leaf_of(holdout[covariates]), t.rules
            )
    doc["targets"] = targets
    return doc
