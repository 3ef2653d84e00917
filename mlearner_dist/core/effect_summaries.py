"""What result.json reports about effects: the averages and the per-subgroup table.

* :func:`average_effects` (``average_effects`` in result.json): the sample averages of the
  indirect, direct and total effects with intervals from the doubly robust scores, and the
  proportion mediated (:func:`mlearner_dist.core.subgroup_effects.proportion_mediated`);
* :func:`subgroup_table` (``subgroups``): for every leaf of a partition the adjusted effects
  (means of the DR scores) and the reference's unadjusted ones, joined by
  :func:`merge_subgroup_effects`.

Each estimate is a ``{"estimate", "ci_low", "ci_high"}`` mapping. The in-memory
:class:`~mlearner_dist.core.estimator.MLearner` and the pipeline's report stage call the same
functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from mlearner_dist.core.design_variance import design_of, interval_quantile, mean_covariance
from mlearner_dist.core.effects import leaf_density_ratio
from mlearner_dist.core.roles import Roles
from mlearner_dist.core.selection import EFFECTS
from mlearner_dist.core.subgroup_effects import (
    adjusted_subgroup_effects,
    proportion_mediated,
    unadjusted_subgroup_effects,
)

__all__ = [
    "POST_SELECTION_NOTE",
    "average_effects",
    "mark_post_selection",
    "merge_subgroup_effects",
    "post_selection_note",
    "subgroup_table",
    "unsupported_subgroups",
]

#: What the summary and the report say when subgroup effects come from the units that chose them.
POST_SELECTION_NOTE = (
    "the subgroup effects are estimated on the units that chose the subgroups: post-selection "
    "intervals, optimistic because the partition was chosen where the effects differ most; "
    "subgroups.honest: true (or calibration.mode null or split) estimates them on a held-out half"
)


def _ci(est: float, lo: float, hi: float) -> dict[str, float]:
    return {"estimate": float(est), "ci_low": float(lo), "ci_high": float(hi)}


def average_effects(effects: pd.DataFrame, *, level: float = 0.95) -> dict[str, Any]:
    """Average indirect, direct and total effects with normal CIs from the DR scores.

    With the design columns of the effects table (``design_cluster``, ``design_weight``) the
    averages are weighted and their standard errors cluster-robust
    (:func:`mlearner_dist.core.design_variance.mean_covariance`), with clusters the interval
    uses Student's t with ``G - 1`` degrees of freedom; otherwise ``sd(s) / sqrt(n)`` and the
    normal quantile.
    """
    from scipy.stats import norm

    z = float(norm.ppf(0.5 + level / 2))
    out: dict[str, Any] = {}
    n = len(effects)
    design = design_of(effects)
    for name in EFFECTS:
        col = f"score_{name}"
        if col not in effects or effects[col].isna().all():
            out[name] = None
            continue
        s = effects[col].to_numpy(dtype=float)
        q = z
        if design is None:
            m, se = s.mean(), s.std(ddof=1) / np.sqrt(n)
        else:
            mean, cov = mean_covariance(s, design)
            m, se = float(mean[0]), float(np.sqrt(cov[0, 0]))
            q = interval_quantile(level, design)
        out[name] = _ci(m, m - q * se, m + q * se)
    if out.get("indirect") and out.get("total"):
        # the one rule of every proportion mediated (whole sample and subgroups)
        pm = proportion_mediated(
            effects["score_indirect"].to_numpy(dtype=float),
            effects["score_total"].to_numpy(dtype=float),
            level=level,
            design=design,
        )
        if pm["note"]:
            out["prop_mediated"] = {
                "estimate": None,
                "ci_low": None,
                "ci_high": None,
                "note": pm["note"],
            }
        else:
            out["prop_mediated"] = _ci(pm["estimate"], pm["ci_low"], pm["ci_high"])
    else:
        out["prop_mediated"] = None
    return out


def subgroup_table(
    frame: pd.DataFrame,
    roles: Roles,
    effects: pd.DataFrame,
    leaf: np.ndarray,
    rules: dict[int, str],
    *,
    n_bootstrap: int,
    level: float,
    min_size: int,
    random_state: int,
    propensity_clip: float = 0.01,
    max_density_ratio: float = 10.0,
) -> list[dict[str, Any]]:
    """Per-leaf adjusted (DR scores) and unadjusted (reference) effects with intervals.

    ``effects`` must be aligned row by row with ``frame``. With a mediator each entry also gets
    ``overlap``: the mediator density ratio's diagnostics over the leaf's treated units
    (:func:`~mlearner_dist.core.effects.leaf_density_ratio`, with the effects' own
    ``propensity_clip`` and ``max_density_ratio``).
    """
    adjusted = adjusted_subgroup_effects(effects, leaf, level=level, design=design_of(effects))
    unadjusted = unadjusted_subgroup_effects(
        frame,
        roles,
        leaf,
        n_bootstrap=n_bootstrap,
        level=level,
        random_state=random_state,
        min_size=min_size,
    )
    out = merge_subgroup_effects(adjusted, unadjusted, rules, leaf, roles.has_mediator)
    if roles.has_mediator and {"propensity", "propensity_mx"} <= set(effects.columns):
        overlap = leaf_density_ratio(
            effects,
            frame[roles.treatment].to_numpy(),
            np.asarray(leaf),
            propensity_clip=propensity_clip,
            max_density_ratio=max_density_ratio,
        )
        for entry in out:
            if entry["leaf"] in overlap:
                entry["overlap"] = overlap[entry["leaf"]]
    return out


def unsupported_subgroups(result: Mapping[str, Any]) -> list[str]:
    """One line per reported subgroup whose indirect effect the weights cannot support."""
    lines = []
    for sg in result.get("subgroups") or []:
        ov = sg.get("overlap") if isinstance(sg, Mapping) else None
        if isinstance(ov, Mapping) and ov.get("indirect_supported") is False:
            lines.append(
                f"{sg.get('rule') or '(all units)'}: " + "; ".join(ov.get("reasons") or [])
            )
    return lines


def mark_post_selection(subgroups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mark subgroup entries estimated on the units that chose them (``estimated_on:
    same_units``); held-out entries keep ``estimated_on: holdout``."""
    for sg in subgroups:
        sg.setdefault("estimated_on", "same_units")
    return subgroups


def post_selection_note(result: Mapping[str, Any]) -> str | None:
    """:data:`POST_SELECTION_NOTE` when any reported subgroup (of any target) of a result
    was estimated on the units that chose it, else None."""
    entries = list(result.get("subgroups") or [])
    for rec in (result.get("targets") or {}).values():
        if isinstance(rec, Mapping):
            entries += list(rec.get("subgroups") or [])
    if any(isinstance(sg, Mapping) and sg.get("estimated_on") == "same_units" for sg in entries):
        return POST_SELECTION_NOTE
    return None


def merge_subgroup_effects(
    adjusted: pd.DataFrame,
    unadjusted: pd.DataFrame,
    rules: dict[int, str],
    leaf: np.ndarray | Mapping[int, int],
    has_mediator: bool,
) -> list[dict[str, Any]]:
    """Join the adjusted and unadjusted per-leaf tables into result.json's ``subgroups`` list.

    ``leaf`` is every unit's leaf, or the units per leaf (leaf sums on a bounded driver).
    """
    names = (*EFFECTS, "prop_mediated")
    out = []
    for lf in sorted(rules):
        n = int(leaf.get(lf, 0)) if isinstance(leaf, Mapping) else int((leaf == lf).sum())
        entry: dict[str, Any] = {"leaf": int(lf), "rule": rules[lf], "n": n}
        adj = adjusted[adjusted["leaf"] == lf]
        una = unadjusted[unadjusted["leaf"] == lf]
        entry["unadjusted"] = {}
        for name in names:
            wanted = has_mediator or name == "total"
            entry[name] = _row_ci(adj, name) if wanted else None
            entry["unadjusted"][name] = _row_ci(una, name) if wanted else None
        notes = [
            str(x)
            for table in (adj, una)
            for x in table.get("note", pd.Series(dtype=str)).dropna()
            if str(x)
        ]
        notes = list(dict.fromkeys(notes))
        if notes:
            entry["note"] = "; ".join(notes)
        out.append(entry)
    return out


def _row_ci(table: pd.DataFrame, name: str) -> dict[str, float] | None:
    if table.empty or f"{name}" not in table:
        return None
    r = table.iloc[0]
    return _ci(r[name], r[f"{name}_ci_low"], r[f"{name}_ci_high"])
