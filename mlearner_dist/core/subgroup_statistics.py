"""The subgroup table and the average effects from per-leaf sums, for a driver without the units.

Everything result.json reports per subgroup is a function of a few sums over the leaf's units
(independent, equal units; the trial designs are analysed on the driver):

- **adjusted effects**: the mean vector and the centred cross-products of the DR scores
  ``(score_indirect, score_direct, score_total)``: estimates, ``sd / sqrt(n)`` standard errors
  (ddof 1) and the Fieller interval of the proportion mediated
  (:func:`~mlearner_dist.core.subgroup_effects.fieller_ratio`);
- **unadjusted (reference) effects**: the sum of the upper-triangle products of
  ``z = [1, T, M, Y]`` gives the within-leaf least squares fits; their bootstrap is drawn from
  its normal approximation, whose mean and covariance are exactly those of the multinomial
  bootstrap's resampled sums (the centred cross-products of the products;
  :func:`~mlearner_dist.core.subgroup_effects.normal_bootstrap_moments`). In memory that
  approximation is used above ``exact_max_n`` units per leaf; here for every leaf, and each
  entry's note says so;
- **overlap**: over the leaf's treated units, the count, sum and sum of squares of the truncated
  density ratio, the number truncated and the largest untruncated ratio
  (:func:`~mlearner_dist.core.effects.density_ratio_summary`).

:func:`subgroup_sums` computes them on one chunk, :func:`combine_subgroup_sums` pools chunks
(Chan et al.'s formula for vectors and matrices: ``M2 = M2_a + M2_b + d d' n_a n_b / n``), and
:func:`subgroup_table_from_sums` / :func:`average_effects_from_sums` build the same entries as
:func:`~mlearner_dist.core.effect_summaries.subgroup_table` and
:func:`~mlearner_dist.core.effect_summaries.average_effects`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm

from mlearner_dist.core.effect_summaries import merge_subgroup_effects
from mlearner_dist.core.effects import density_ratio, density_ratio_summary
from mlearner_dist.core.subgroup_effects import (
    EFFECT_NAMES,
    PROP_MEDIATED_SUPPRESSED,
    fieller_ratio,
    normal_bootstrap_moments,
    unadjusted_frame,
    unadjusted_row,
)

__all__ = [
    "LeafSums",
    "average_effects_from_sums",
    "combine_subgroup_sums",
    "pool_sums",
    "subgroup_sums",
    "subgroup_table_from_sums",
]

SCORES = ("indirect", "direct", "total")
#: what every unadjusted entry built from sums says about its bootstrap
NORMAL_BOOTSTRAP_NOTE = (
    "bootstrap by the normal approximation of the resampled moments (the driver holds leaf sums, "
    "not units: compute.driver_max_rows)"
)


@dataclass(frozen=True)
class LeafSums:
    """Sums over one leaf's units (see the module docstring).

    Attributes
    ----------
    n : int
    score_mean, score_m2 : ndarray, shapes (s,) and (s, s)
        Mean and centred cross-products of the scores present (``scores``).
    scores : tuple of str
        Names of the scores (``indirect``, ``direct``, ``total``; ``total`` only without a
        mediator).
    tri_mean, tri_m2 : ndarray, shapes (k,) and (k, k)
        Mean and centred cross-products of the upper-triangle products of ``z = [1, T, M, Y]``.
    n_mediators : int
    density : ndarray of shape (5,) or None
        Over the treated units: count, sum and sum of squares of the truncated density ratio,
        count truncated, largest untruncated ratio. None without a mediator.
    """

    n: int
    scores: tuple[str, ...]
    score_mean: np.ndarray
    score_m2: np.ndarray
    n_mediators: int
    tri_mean: np.ndarray
    tri_m2: np.ndarray
    density: np.ndarray | None = None

    @property
    def n_treated(self) -> int:
        """Treated units (the product ``1 * T`` of ``z``)."""
        return round(float(self.tri_mean[1]) * self.n)


def _mean_m2(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(axis=0)
    c = x - mean
    return mean, c.T @ c


def subgroup_sums(
    frame: pd.DataFrame,
    leaf: np.ndarray,
    *,
    treatment: str,
    outcome: str,
    mediators: Sequence[str] = (),
    propensity_clip: float = 0.01,
    max_density_ratio: float = 10.0,
) -> dict[int, LeafSums]:
    """The sums of every leaf on one chunk of units.

    Parameters
    ----------
    frame : DataFrame
        The chunk: ``treatment``, ``outcome``, ``mediators``, the effects table's
        ``score_total`` (and with a mediator ``score_indirect``, ``score_direct``,
        ``propensity``, ``propensity_mx``).
    leaf : ndarray of int, shape (len(frame),)
    treatment, outcome : str
    mediators : sequence of str
    propensity_clip, max_density_ratio : float
        As in :func:`~mlearner_dist.core.effects.compute_effects`.

    Returns
    -------
    dict of leaf -> LeafSums
    """
    meds = tuple(mediators)
    names = SCORES if meds else ("total",)
    S = np.column_stack([frame[f"score_{s}"].to_numpy(dtype=float) for s in names])
    Z = np.column_stack(
        [np.ones(len(frame))]
        + [frame[c].to_numpy(dtype=float) for c in (treatment, *meds, outcome)]
    )
    iu, ju = np.triu_indices(Z.shape[1])
    tri = Z[:, iu] * Z[:, ju]
    raw = None
    if meds:
        raw = density_ratio(
            frame["propensity"].to_numpy(),
            frame["propensity_mx"].to_numpy(),
            float(propensity_clip),
        )
    treated = Z[:, 1] == 1.0
    leaf = np.asarray(leaf)
    out: dict[int, LeafSums] = {}
    for g in np.unique(leaf):
        idx = leaf == g
        s_mean, s_m2 = _mean_m2(S[idx])
        t_mean, t_m2 = _mean_m2(tri[idx])
        density = None
        if raw is not None:
            r = raw[idx & treated]
            w = np.minimum(r, max_density_ratio)
            density = np.array(
                [
                    len(r),
                    w.sum(),
                    (w**2).sum(),
                    (r > max_density_ratio).sum(),
                    r.max() if len(r) else -np.inf,
                ],
                dtype=float,
            )
        out[int(g)] = LeafSums(
            int(idx.sum()), names, s_mean, s_m2, len(meds), t_mean, t_m2, density
        )
    return out


def _merge(a: LeafSums, b: LeafSums) -> LeafSums:
    n = a.n + b.n

    def chan(ma: np.ndarray, m2a: np.ndarray, mb: np.ndarray, m2b: np.ndarray) -> tuple:
        d = mb - ma
        return ma + d * (b.n / n), m2a + m2b + np.outer(d, d) * (a.n * b.n / n)

    s_mean, s_m2 = chan(a.score_mean, a.score_m2, b.score_mean, b.score_m2)
    t_mean, t_m2 = chan(a.tri_mean, a.tri_m2, b.tri_mean, b.tri_m2)
    density = None
    if a.density is not None and b.density is not None:
        density = np.concatenate(
            [a.density[:4] + b.density[:4], [max(a.density[4], b.density[4])]]
        )
    return LeafSums(n, a.scores, s_mean, s_m2, a.n_mediators, t_mean, t_m2, density)


def combine_subgroup_sums(parts: Sequence[Mapping[int, LeafSums]]) -> dict[int, LeafSums]:
    """Pool the sums of disjoint chunks, leaf by leaf."""
    out: dict[int, LeafSums] = {}
    for part in parts:
        for g, sums in part.items():
            out[int(g)] = sums if int(g) not in out else _merge(out[int(g)], sums)
    return dict(sorted(out.items()))


def pool_sums(sums: Mapping[int, LeafSums]) -> LeafSums:
    """The sums of all leaves together (the whole sample)."""
    items = list(sums.values())
    total = items[0]
    for s in items[1:]:
        total = _merge(total, s)
    return total


def _adjusted(sums: LeafSums, z: float, too_small: bool) -> tuple[dict[str, Any], list[str]]:
    """Estimates, ses and intervals of the scores, and the proportion mediated."""
    row: dict[str, Any] = {}
    n = sums.n
    cov = sums.score_m2 / (n - 1) / n if n > 1 else np.full_like(sums.score_m2, np.nan)
    for name in SCORES:
        if name in sums.scores:
            j = sums.scores.index(name)
            est = float(sums.score_mean[j])
            se = float(math.sqrt(max(cov[j, j], 0.0))) if n > 1 and not too_small else math.nan
        else:
            est = se = math.nan
        row[name], row[f"{name}_se"] = est, se
        row[f"{name}_ci_low"], row[f"{name}_ci_high"] = est - z * se, est + z * se
    notes: list[str] = []
    pm = {"estimate": math.nan, "ci_low": math.nan, "ci_high": math.nan, "se": math.nan}
    if {"indirect", "total"} <= set(sums.scores) and not too_small:
        i, t = sums.scores.index("indirect"), sums.scores.index("total")
        pm = fieller_ratio(
            float(sums.score_mean[i]),
            float(sums.score_mean[t]),
            float(cov[i, i]),
            float(cov[t, t]),
            float(cov[i, t]),
            z,
        )
        if pm["note"]:
            notes.append(pm["note"])
    row["prop_mediated"], row["prop_mediated_se"] = pm["estimate"], pm["se"]
    row["prop_mediated_ci_low"], row["prop_mediated_ci_high"] = pm["ci_low"], pm["ci_high"]
    return row, notes


def subgroup_table_from_sums(
    sums: Mapping[int, LeafSums],
    rules: Mapping[int, str],
    *,
    has_mediator: bool,
    n_bootstrap: int,
    level: float,
    min_size: int,
    random_state: int,
    max_density_ratio: float = 10.0,
) -> list[dict[str, Any]]:
    """result.json's ``subgroups`` entries from leaf sums (see the module docstring).

    Parameters
    ----------
    sums : mapping of leaf -> LeafSums
        Over every unit (:func:`combine_subgroup_sums` of the partitions' :func:`subgroup_sums`).
    rules : mapping of leaf -> rule text
    has_mediator : bool
    n_bootstrap, level, min_size, random_state
        As in :func:`~mlearner_dist.core.effect_summaries.subgroup_table` (``min_size`` for the
        unadjusted effects; the adjusted ones need 2 units).
    max_density_ratio : float

    Returns
    -------
    list of dict
        The entries of :func:`~mlearner_dist.core.effect_summaries.subgroup_table`.
    """
    z = float(norm.ppf(0.5 + level / 2))
    rng = np.random.default_rng(random_state)
    adjusted_rows, unadjusted_rows = [], []
    for g, s in sorted(sums.items()):
        too_small = s.n < 2
        adj, notes = _adjusted(s, z, too_small)
        if too_small:
            notes.insert(0, f"only {s.n} units (< 2): no interval")
        adjusted_rows.append({"leaf": g, "n": s.n, **adj, "note": "; ".join(notes)})
        n1 = s.n_treated
        if s.n < min_size or n1 == 0 or n1 == s.n:
            why = f"only {s.n} units (< min_size={min_size})" if s.n < min_size else None
            row = {"leaf": g, "n": s.n, "n_treated": n1, "n_bootstrap_used": 0}
            for name in EFFECT_NAMES:
                row[name] = row[f"{name}_ci_low"] = row[f"{name}_ci_high"] = math.nan
            row["note"] = f"{why or 'units of one arm only'}: no unadjusted effects"
            unadjusted_rows.append(row)
            continue
        total = s.tri_mean * s.n
        moments = (
            normal_bootstrap_moments(total, s.tri_m2, n_bootstrap, rng) if n_bootstrap else None
        )
        unadjusted_rows.append(
            unadjusted_row(
                g,
                s.n,
                n1,
                total,
                moments,
                n_bootstrap,
                s.n_mediators,
                level,
                [NORMAL_BOOTSTRAP_NOTE] if n_bootstrap else [],
            )
        )
    out = merge_subgroup_effects(
        pd.DataFrame(adjusted_rows),
        unadjusted_frame(unadjusted_rows),
        dict(rules),
        {g: s.n for g, s in sums.items()},
        has_mediator,
    )
    for entry in out:
        s = sums.get(entry["leaf"])
        if has_mediator and s is not None and s.density is not None and s.density[0] > 0:
            d = s.density
            entry["overlap"] = density_ratio_summary(
                int(d[0]), float(d[1]), float(d[2]), int(d[3]), float(d[4]), max_density_ratio
            )
    return out


def average_effects_from_sums(sums: LeafSums, *, level: float = 0.95) -> dict[str, Any]:
    """result.json's ``average_effects`` from the whole sample's sums.

    The same estimates, intervals and proportion-mediated rule as
    :func:`~mlearner_dist.core.effect_summaries.average_effects` for independent, equal units.
    """
    z = float(norm.ppf(0.5 + level / 2))
    row, notes = _adjusted(sums, z, sums.n < 2)
    out: dict[str, Any] = {}
    for name in SCORES:
        out[name] = (
            {
                "estimate": row[name],
                "ci_low": row[f"{name}_ci_low"],
                "ci_high": row[f"{name}_ci_high"],
            }
            if name in sums.scores
            else None
        )
    if out.get("indirect") and out.get("total"):
        if notes or not math.isfinite(row["prop_mediated"]):
            out["prop_mediated"] = {
                "estimate": None,
                "ci_low": None,
                "ci_high": None,
                "note": notes[0] if notes else PROP_MEDIATED_SUPPRESSED,
            }
        else:
            out["prop_mediated"] = {
                "estimate": row["prop_mediated"],
                "ci_low": row["prop_mediated_ci_low"],
                "ci_high": row["prop_mediated_ci_high"],
            }
    else:
        out["prop_mediated"] = None
    return out
