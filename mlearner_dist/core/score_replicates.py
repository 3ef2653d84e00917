"""Null replicates built on the doubly robust scores: a calibration that keeps the confounding.

The null calibration of :mod:`mlearner_dist.core.calibration` re-randomises the treatment, which
makes ``T`` independent of ``X`` in every replicate: in an observational design the replicates
lose the confounding the observed data have, and the calibration no longer describes the
observed statistic. The replicates here leave the data, the nuisance fits and the unit effects
alone and act on the cross-fitted efficient-influence-function scores only.

Construction (one replicate, ``b = 1..B``)
------------------------------------------
With the effects table's scores ``s_i = (s_i^ind, s_i^dir, s_i^tot)`` and their means
``sbar``, draw multipliers ``w_i`` iid with mean 0 and variance 1 (Rademacher signs by default),
one per unit (one per cluster, shared by its units, in a cluster-randomised design: the wild
cluster bootstrap) and shared by the three scores, and set

    s*_i = sbar + w_i (s_i - sbar).

Everything else (covariates, treatment, mediator, outcome, nuisance predictions, the unit effects
that the embedding uses, the propensity model that absorbed the confounding) is the observed one.
The selection (embedding -> K-means -> trees -> leaf merging -> score test -> choice of K and
tree) is then re-run with the replicate scores in place of the observed ones; every step that
does not read the scores is deterministic given the unit effects and its seed, so a caller may
re-run it or reuse the observed result (the same thing, computed once).

Why it is a null distribution, and why it keeps the confounding
--------------------------------------------------------------
* Conditional on the data, ``E[s*_i | data] = sbar`` for every unit: in a replicate every leaf of
  every partition has the same expected score, whatever the partition. The replicate is a draw
  from the hypothesis "no heterogeneity of the effect" with the observed scores' heteroskedastic
  spread (``Var(s*_i | data) = (s_i - sbar)^2``): the wild (multiplier) bootstrap of a test of
  equal means.
* The scores were computed with the fitted propensity (observational designs) and the outcome and
  mediator models, so confounding is adjusted where it enters, in the scores, and the replicates
  inherit that adjustment: nothing in a replicate re-randomises ``T``. The observed statistic and
  its replicates are both functions of the *same* confounding-adjusted scores. (The permutation
  replicates instead compare a confounded observed statistic with unconfounded replicates.)
* Under the null of no heterogeneity, ``s_i = tau + u_i`` with ``E[u_i | X_i] ~= 0`` (second-order
  bias of the nuisance fits aside). If ``u_i`` is symmetric given ``X_i`` and independent of the
  selected partition, ``w_i u_i`` has the law of ``u_i`` and the B + 1 values of ``p_leaf`` are
  exchangeable, so :func:`~mlearner_dist.core.calibration.null_threshold` and the Monte Carlo
  p-value are exact; without symmetry they are asymptotically valid (the wild bootstrap of a mean
  needs only finite variance). Cross-fitting makes ``u_i`` (unit ``i``'s own noise) independent of
  its own unit effect, which the models fitted on the other folds give; the remaining dependence
  is that unit ``i`` helped train the models that predict the effects of units in other folds.
* The statistic is invariant to adding a constant to every score, and ``sbar`` enters a
  replicate only as such a constant: the estimated average effect cannot bias the calibration
  (the permutation replicates' estimated shifts ``dM``, ``dY`` have no counterpart here).
* Composite nulls (e.g. simple-null1: constant indirect effect, heterogeneous direct effect) keep
  their structure: the replicates keep the observed unit effects and the observed scores' spread
  leaf by leaf, only the leaf means of the tested score are equalised.

What this calibration does not cover: a leaf difference of ``E[s | X]`` that comes from a biased
nuisance fit (e.g. a propensity model that misses the confounder) is not heterogeneity of the
effect but is present in the observed scores and absent from the replicates. Doubly robust scores
make that bias a product of two nuisance errors; the study of issue "inference" measures the Type I
error on the confounded null.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from mlearner_dist.exceptions import InputValidationError, MLearnerError

__all__ = [
    "MULTIPLIERS",
    "SCORE_COLUMNS",
    "monte_carlo_se",
    "multiplier_weights",
    "score_null_pleaf",
    "score_null_replicate",
]

SCORE_COLUMNS = ("score_indirect", "score_direct", "score_total")
MULTIPLIERS = ("rademacher", "normal", "mammen")


def multiplier_weights(n: int, rng: np.random.Generator, kind: str = "rademacher") -> np.ndarray:
    """``n`` iid multipliers with mean 0 and variance 1.

    Parameters
    ----------
    n : int
    rng : numpy.random.Generator
    kind : {"rademacher", "normal", "mammen"}
        Random signs (+1/-1 with probability 1/2; the default: exact for symmetric scores);
        standard normal; Mammen's two-point law (also third moment 1:
        ``-(sqrt5 - 1)/2`` with probability ``(sqrt5 + 1)/(2 sqrt5)``, else ``(sqrt5 + 1)/2``).

    Returns
    -------
    ndarray of float, shape (n,)
    """
    if kind not in MULTIPLIERS:
        raise MLearnerError(f"multiplier={kind!r}: choose one of {list(MULTIPLIERS)}")
    if not isinstance(rng, np.random.Generator):
        raise MLearnerError(
            f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), got "
            f"{type(rng).__name__}"
        )
    if kind == "rademacher":
        return rng.integers(0, 2, size=n).astype(float) * 2.0 - 1.0
    if kind == "normal":
        return rng.standard_normal(n)
    r5 = math.sqrt(5.0)
    lo, hi = -(r5 - 1.0) / 2.0, (r5 + 1.0) / 2.0
    p_lo = (r5 + 1.0) / (2.0 * r5)
    return np.where(rng.random(n) < p_lo, lo, hi)


def score_null_replicate(
    effects: pd.DataFrame,
    *,
    rng: np.random.Generator,
    multiplier: str = "rademacher",
    columns: Sequence[str] = SCORE_COLUMNS,
) -> pd.DataFrame:
    """One null replicate of the effects table: centred scores times random multipliers.

    ``s*_i = sbar + w_i (s_i - sbar)`` for every score column (module docstring), the same
    ``w_i`` for all the scores of unit ``i`` (their joint dependence is kept). With a
    ``design_cluster`` column (a cluster-randomised design) the multipliers are drawn per
    cluster, ``w_i = w_{c(i)}``, so the dependence of the scores within a cluster is kept (the
    wild cluster bootstrap). Columns that are
    absent or entirely NaN (the indirect and direct scores without a mediator) are left as they
    are; every other column (unit effects, nuisance predictions, ids) is copied unchanged.

    Parameters
    ----------
    effects : DataFrame, shape (n, ...)
        The effects table (:func:`mlearner_dist.core.effects.compute_effects`).
    rng : numpy.random.Generator
    multiplier : {"rademacher", "normal", "mammen"}
        See :func:`multiplier_weights`.
    columns : sequence of str
        The score columns to replace.

    Returns
    -------
    DataFrame, shape (n, effects' columns)

    Raises
    ------
    InputValidationError
        No usable score column, or a score column with some (not all) values missing.
    """
    if not isinstance(effects, pd.DataFrame):
        raise MLearnerError(f"effects must be the effects DataFrame, got {type(effects).__name__}")
    usable = []
    problems = []
    for c in columns:
        if c not in effects.columns:
            continue
        v = effects[c].to_numpy(dtype=float)
        bad = ~np.isfinite(v)
        if bad.all():
            continue
        if bad.any():
            problems.append(
                f"column {c!r} has {int(bad.sum())} missing/non-finite scores among {v.size}; "
                "recompute the effects table"
            )
        usable.append(c)
    if not usable and not problems:
        problems.append(
            f"effects has none of the score columns {list(columns)} with values: pass the effects "
            "table with its doubly robust scores"
        )
    if problems:
        raise InputValidationError(problems)
    if "design_cluster" in effects.columns:
        # a cluster-randomised design: one multiplier per cluster, shared by its units
        codes = effects["design_cluster"].to_numpy(dtype=np.int64)
        w = multiplier_weights(int(codes.max()) + 1, rng, multiplier)[codes]
    else:
        w = multiplier_weights(len(effects), rng, multiplier)
    out = effects.copy()
    for c in usable:
        v = effects[c].to_numpy(dtype=float)
        mean = float(v.mean())
        out[c] = mean + w * (v - mean)
    return out


def score_null_pleaf(
    select: Callable[[pd.DataFrame, int], float],
    effects: pd.DataFrame,
    *,
    n_replicates: int,
    random_state: int,
    multiplier: str = "rademacher",
    map_fn: Callable[..., Sequence[Any]] | None = None,
) -> list[float]:
    """``p_leaf`` of the selection re-run on ``n_replicates`` score replicates.

    Replicate ``b`` draws its multipliers from ``numpy.random.default_rng([random_state, b])``,
    so the sample does not depend on the order or place replicates run in.

    Parameters
    ----------
    select : callable
        ``select(replicate_effects, b) -> p_leaf``: the selection's score-dependent steps (leaf
        merging, score tests, choice of K and tree) on the replicate effects table; ``b`` lets it
        seed any randomised step.
    effects : DataFrame
        The observed effects table.
    n_replicates : int, >= 1
    random_state : int
    multiplier : {"rademacher", "normal", "mammen"}
    map_fn : callable, optional
        ``map_fn(func, items) -> list`` (e.g. a Dask client's map + gather); default runs the
        replicates one after another.

    Returns
    -------
    list of float, length n_replicates
    """
    if isinstance(n_replicates, bool) or not isinstance(n_replicates, (int, np.integer)):
        raise MLearnerError(f"n_replicates={n_replicates!r}: give an integer >= 1")
    if n_replicates < 1:
        raise MLearnerError(f"n_replicates={n_replicates}: give an integer >= 1")

    def one(b: int) -> float:
        rng = np.random.default_rng([int(random_state), int(b)])
        rep = score_null_replicate(effects, rng=rng, multiplier=multiplier)
        p = float(select(rep, b))
        if not 0.0 <= p <= 1.0:
            raise MLearnerError(f"select returned {p!r} for replicate {b}: not a p-value")
        return p

    reps = list(range(int(n_replicates)))
    if map_fn is None:
        return [one(b) for b in reps]
    return [float(p) for p in map_fn(one, reps)]


def monte_carlo_se(mc_pvalue: float, n_replicates: int) -> float:
    """Monte Carlo standard error of a Monte Carlo p-value, ``sqrt(p (1 - p) / B)``.

    The Monte Carlo p-value ``(1 + #{null <= observed}) / (B + 1)`` estimates the p-value an
    infinite number of replicates would give; its sampling error over the draw of the B
    replicates is binomial, with this standard error (``p`` the estimate itself).

    Parameters
    ----------
    mc_pvalue : float in [0, 1]
    n_replicates : int, >= 1

    Returns
    -------
    float
    """
    p = float(mc_pvalue)
    if not 0.0 <= p <= 1.0:
        raise MLearnerError(f"mc_pvalue={mc_pvalue!r}: not a p-value in [0, 1]")
    if isinstance(n_replicates, bool) or not isinstance(n_replicates, (int, np.integer)):
        raise MLearnerError(f"n_replicates={n_replicates!r}: give an integer >= 1")
    if n_replicates < 1:
        raise MLearnerError(f"n_replicates={n_replicates}: give an integer >= 1")
    return float(math.sqrt(p * (1.0 - p) / int(n_replicates)))
