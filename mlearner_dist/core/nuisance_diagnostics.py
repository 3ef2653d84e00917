"""Diagnostics of step 1: out-of-fold quality of every nuisance model, overlap, learners.

One builder, :func:`effects_diagnostics`, assembles the ``diagnostics`` dict of the effects step
for both engines: :func:`~mlearner_dist.core.effects.cross_fit_effects` (in memory) measures the
quality with :func:`nuisance_diagnostics`, the Spark backend from aggregations of the scored rows
(the same :func:`diagnostic_targets`, :func:`model_quality`, :func:`overlap_record`,
:func:`binned_auc`); both hand the pieces to :func:`effects_diagnostics`, so the two records have
the same keys in the same order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from mlearner_dist.core.fold_progress import NUISANCE_GROUPS
from mlearner_dist.core.learners import describe_learner
from mlearner_dist.core.nuisance import FoldModels, NuisanceSpec, mediator_column_names
from mlearner_dist.core.roles import Roles
from mlearner_dist.exceptions import ConfigError

__all__ = [
    "OVERLAP_BOUNDS",
    "DiagnosticTarget",
    "binned_auc",
    "diagnostic_targets",
    "effects_diagnostics",
    "learner_diagnostics",
    "model_quality",
    "nuisance_diagnostics",
    "overlap_mask",
    "overlap_record",
    "overlap_summary",
]

#: Propensities outside these bounds count as poor overlap (``share_outside``).
OVERLAP_BOUNDS = (0.05, 0.95)


@dataclass(frozen=True)
class DiagnosticTarget:
    """One out-of-fold quality measure: prediction column against a target, on some rows.

    Attributes
    ----------
    name : str
        Model name in the diagnostics.
    prediction : str
        Column of the effects table.
    target : str
        ``treatment``, ``outcome``, a mediator name (role columns of the frame) or ``mu_y1m``.
    arm : int or None
        Rows with T = arm, or all rows.
    metric : {"r2", "auc"}
    """

    name: str
    prediction: str
    target: str
    arm: int | None
    metric: str


def diagnostic_targets(roles: Roles, mediator_kind: str) -> list[DiagnosticTarget]:
    """The diagnostics computed for these roles (same list in memory and on Spark)."""
    y, t = roles.outcome, roles.treatment
    out = [
        DiagnosticTarget("mu_y1", "mu_y1", y, 1, "r2"),
        DiagnosticTarget("mu_y0", "mu_y0", y, 0, "r2"),
    ]
    metric = "auc" if mediator_kind == "binary" else "r2"
    for m, c1, c0 in mediator_column_names(roles) if roles.has_mediator else []:
        out += [DiagnosticTarget(c1, c1, m, 1, metric), DiagnosticTarget(c0, c0, m, 0, metric)]
    if roles.has_mediator:
        out += [
            DiagnosticTarget("mu_y1m", "mu_y1m", y, 1, "r2"),
            DiagnosticTarget("eta", "eta", "mu_y1m", 0, "r2"),
        ]
    out.append(DiagnosticTarget("propensity", "propensity", t, None, "auc"))
    if roles.has_mediator:
        out.append(DiagnosticTarget("propensity_mx", "propensity_mx", t, None, "auc"))
    return out


def _finite_or_none(x: float | None) -> float | None:
    return float(x) if x is not None and np.isfinite(x) else None


def binned_auc(pos_counts: np.ndarray, neg_counts: np.ndarray) -> float:
    """AUC from histograms of the scores of positives and negatives over the same ordered bins.

    AUC = (sum_b pos_b (neg_{<b} + neg_b / 2)) / (n_pos n_neg): pairs in the same bin count as
    ties. Exact when every bin holds one distinct score.

    Parameters
    ----------
    pos_counts, neg_counts : ndarray of shape (n_bins,)
        Counts per bin, bins in increasing score order.

    Returns
    -------
    float
        NaN when a class is empty.
    """
    pos = np.asarray(pos_counts, dtype=np.float64)
    neg = np.asarray(neg_counts, dtype=np.float64)
    n_pos, n_neg = pos.sum(), neg.sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    below = np.cumsum(neg) - neg
    return float((pos * (below + 0.5 * neg)).sum() / (n_pos * n_neg))


def _r2(y: np.ndarray, p: np.ndarray) -> float:
    if len(y) < 2:
        return float("nan")
    sst = float(((y - y.mean()) ** 2).sum())
    return 1.0 - float(((y - p) ** 2).sum()) / sst if sst > 0 else float("nan")


def overlap_record(
    low: float | None, high: float | None, share_outside: float | None
) -> dict[str, float | None]:
    """The ``overlap`` entry of one propensity column: ``{"min", "max", "share_outside"}``.

    ``share_outside`` is the share of units outside :data:`OVERLAP_BOUNDS`; ``None`` for
    values that are missing or not finite.
    """
    return {
        "min": _finite_or_none(low),
        "max": _finite_or_none(high),
        "share_outside": _finite_or_none(share_outside),
    }


def overlap_summary(p: np.ndarray) -> dict[str, float | None]:
    """Min, max and share outside [0.05, 0.95] of propensities; shape (n,) in."""
    p = np.asarray(p, dtype=np.float64)
    if not len(p):
        return overlap_record(None, None, None)
    lo, hi = OVERLAP_BOUNDS
    return overlap_record(p.min(), p.max(), ((p < lo) | (p > hi)).mean())


def overlap_mask(propensity: np.ndarray, trim: float) -> np.ndarray:
    """Units with enough overlap to be tested: propensity in ``[trim, 1 - trim]``.

    The rule of Crump, Hotz, Imbens and Mitnik (2008, "Nonparametric tests for treatment effect
    heterogeneity", Review of Economics and Statistics), who test heterogeneity on the units
    whose propensity lies in [0.1, 0.9]. Where the propensity is near 0 or 1 the doubly robust
    score of a unit is dominated by an inverse weight (up to ``1 / propensity_clip``) times the
    outcome model's extrapolation error in the sparse arm: its leaf means are unbiased but so
    skewed that most samples show a spurious leaf difference and the symmetric score replicates
    do not reproduce it (issue "inference": confounded-null, total target).

    Parameters
    ----------
    propensity : ndarray of shape (n,)
        Estimated P(T = 1 | X).
    trim : float in [0, 0.5)
        0: every unit.

    Returns
    -------
    ndarray of bool, shape (n,)
    """
    e = np.asarray(propensity, dtype=np.float64)
    if not 0.0 <= float(trim) < 0.5:
        raise ConfigError(f"trim={trim!r}: give a number in [0, 0.5)")
    if trim == 0:
        return np.ones(len(e), dtype=bool)
    return (e >= trim) & (e <= 1.0 - trim)


def model_quality(metric: str, by_fold: Sequence[float | None]) -> dict[str, Any]:
    """The ``models`` entry of one nuisance model: ``{"metric", "by_fold", "mean"}``.

    ``mean`` is the mean over the folds where the measure is defined (``None`` if none is).
    """
    values = [None if v is None else float(v) for v in by_fold]
    defined = [v for v in values if v is not None]
    return {
        "metric": metric,
        "by_fold": values,
        "mean": float(np.mean(defined)) if defined else None,
    }


def nuisance_diagnostics(
    effects: pd.DataFrame,
    frame: pd.DataFrame,
    roles: Roles,
    *,
    mediator_kind: str,
    n_folds: int,
) -> dict[str, Any]:
    """Out-of-fold quality of every nuisance model per fold, and propensity overlap.

    R2 = 1 - sum (y - p)^2 / sum (y - mean y)^2 for regression models, ROC AUC for classifiers,
    on the held-out rows of each fold (the model's arm only for arm models; ``eta`` is scored
    against ``mu_y1m`` among controls). ``None`` where undefined (constant target, one class).

    Parameters
    ----------
    effects : DataFrame
        The effects table, row-aligned with ``frame``.
    frame : DataFrame
        The units (treatment, outcome, mediators).
    roles : Roles
    mediator_kind : {"none", "continuous", "binary"}
    n_folds : int

    Returns
    -------
    dict
        ``{"models": {name: {"metric", "by_fold", "mean"}}, "overlap": {column: {"min", "max",
        "share_outside"}}}``, JSON-serialisable.
    """
    fold = effects["fold"].to_numpy()
    T = frame[roles.treatment].to_numpy(dtype=np.float64)
    models: dict[str, Any] = {}
    for d in diagnostic_targets(roles, mediator_kind):
        src = effects if d.target == "mu_y1m" else frame
        y_all = src[d.target].to_numpy(dtype=np.float64)
        p_all = effects[d.prediction].to_numpy(dtype=np.float64)
        by_fold: list[float | None] = []
        for k in range(n_folds):
            rows = fold == k
            if d.arm is not None:
                rows &= T == d.arm
            y, p = y_all[rows], p_all[rows]
            if d.metric == "r2":
                value = _r2(y, p)
            else:
                value = float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else float("nan")
            by_fold.append(_finite_or_none(value))
        models[d.name] = model_quality(d.metric, by_fold)
    overlap = {"propensity": overlap_summary(effects["propensity"].to_numpy())}
    if roles.has_mediator:
        overlap["propensity_mx"] = overlap_summary(effects["propensity_mx"].to_numpy())
    return {"models": models, "overlap": overlap}


def learner_diagnostics(spec: NuisanceSpec, models: FoldModels) -> dict[str, Any]:
    """The learner settings and the ``auto`` choices, as recorded in the diagnostics.

    Returns
    -------
    dict
        ``estimator``, ``design``, ``learner`` (a name or the estimator's class name),
        ``learners`` (per model group), and ``learner_choice``: per nuisance model the chosen
        candidate, its metric, the cross-validated loss of every candidate, the rows and inner
        folds they were compared on (empty unless a group uses ``auto``).
    """
    return {
        "estimator": spec.estimator,
        "design": spec.design,
        "learner": describe_learner(spec.learner),
        "learners": {g: describe_learner(spec.learner_of(g)) for g in NUISANCE_GROUPS},
        "learner_choice": {k: c.to_dict() for k, c in sorted(models.choices.items())},
    }


def effects_diagnostics(
    spec: NuisanceSpec,
    models: FoldModels,
    *,
    mediator_kind: str,
    n_folds: int,
    n_units: int,
    quality: Mapping[str, Any],
    training_rows: Sequence[Mapping[str, Any]],
    density_ratio: Mapping[str, Any] | None = None,
    timings: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """The ``diagnostics`` record of the effects step (in memory and on Spark).

    Parameters
    ----------
    spec : NuisanceSpec
    models : FoldModels
        The models of one training set (their ``auto`` choices are recorded).
    mediator_kind : {"none", "continuous", "binary"}
    n_folds : int
    n_units : int
    quality : mapping
        ``{"models": {name: model_quality(...)}, "overlap": {column: overlap_record(...)}}``,
        as :func:`nuisance_diagnostics` returns it.
    training_rows : sequence of mapping
        Per training set: ``{"fold": k or None, "models": {model: rows}}``.
    density_ratio : mapping, optional
        :func:`~mlearner_dist.core.effects.density_ratio_summary` (with a mediator).
    timings : mapping, optional
        Seconds per phase (the Spark backend records them).

    Returns
    -------
    dict
        JSON-serialisable: :func:`learner_diagnostics`, then ``mediator_kind``, ``n_folds``,
        ``n_units``, ``cross_fitted``, ``models``, ``overlap``, ``density_ratio`` (with a
        mediator), ``training_rows`` and ``timings`` (when given).
    """
    out: dict[str, Any] = {
        **learner_diagnostics(spec, models),
        "mediator_kind": mediator_kind,
        "n_folds": int(n_folds),
        "n_units": int(n_units),
        "cross_fitted": spec.estimator == "nested",
        "models": dict(quality["models"]),
        "overlap": dict(quality["overlap"]),
    }
    if density_ratio is not None:
        out["density_ratio"] = dict(density_ratio)
    out["training_rows"] = [dict(r) for r in training_rows]
    if timings is not None:
        out["timings"] = dict(timings)
    return out
