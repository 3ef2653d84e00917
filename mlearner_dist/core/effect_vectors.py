"""The effect vector that is embedded (step 2), and exact, order-independent sums for its scale.

The Dask backend scales partition by partition with :func:`exact_partial_sums`,
:func:`combine_partial_sums` and :func:`scale_from_partials`, so its standard deviations
equal the in-memory :func:`effect_matrix` bit for bit whatever the partitioning.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from fractions import Fraction

import numpy as np
import pandas as pd

from mlearner_dist.exceptions import ConfigError, MLearnerError

__all__ = [
    "EFFECT_NAMES",
    "SCALINGS",
    "combine_partial_sums",
    "effect_matrix",
    "exact_partial_sums",
    "scale_from_partials",
]


EFFECT_NAMES = ("indirect", "direct", "total")

SCALINGS = ("standardize", "none")


def exact_partial_sums(x: np.ndarray) -> dict[int, int]:
    """Exact (error-free) partial sums of a float64 array, for order-independent reductions.

    Each value is split exactly as ``x = M * 2 ** (e - 53)`` with an integer mantissa ``M``
    (``|M| < 2 ** 53``); the mantissas are summed exactly per exponent ``e``. Combining the parts of
    any partition of the data with :func:`combine_partial_sums` gives the correctly rounded sum,
    the same bit for bit whatever the partitioning or order.

    Parameters
    ----------
    x : ndarray, shape (n,)
        Finite float64 values.

    Returns
    -------
    dict of int to int
        ``{e: sum of M over values with exponent e}``.
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    out: dict[int, int] = {}
    step = 1 << 24  # keeps every float64 bincount below 2 ** 53, hence exact
    for start in range(0, x.size, step):
        chunk = x[start : start + step]
        mant, expo = np.frexp(chunk)
        M = np.ldexp(mant, 53).astype(np.int64)
        hi = M >> 26
        lo = M - (hi << 26)
        exps, inv = np.unique(expo, return_inverse=True)
        hs = np.bincount(inv, weights=hi.astype(np.float64), minlength=exps.size)
        ls = np.bincount(inv, weights=lo.astype(np.float64), minlength=exps.size)
        for e, h, lo_sum in zip(exps.tolist(), hs.tolist(), ls.tolist(), strict=True):
            out[e] = out.get(e, 0) + (int(h) << 26) + int(lo_sum)
    return out


def combine_partial_sums(parts: Iterable[dict[int, int]]) -> float:
    """Correctly rounded total of several :func:`exact_partial_sums` results.

    Parameters
    ----------
    parts : iterable of dict
        Partial sums of disjoint pieces of the data.

    Returns
    -------
    float
        The sum of all the pieces' values, rounded once.
    """
    total: dict[int, int] = {}
    for p in parts:
        for e, s in p.items():
            total[e] = total.get(e, 0) + int(s)
    total = {e: s for e, s in total.items() if s != 0}
    if not total:
        return 0.0
    emin = min(total)
    acc = sum(s << (e - emin) for e, s in total.items())
    return float(Fraction(acc) * Fraction(2) ** (emin - 53))


def scale_from_partials(n: int, sum_of_squared_deviations: float, name: str = "effect") -> float:
    """Sample standard deviation ``sqrt(SS / (n - 1))``, refusing a constant column.

    Parameters
    ----------
    n : int
        Number of units (>= 2).
    sum_of_squared_deviations : float
        ``sum_i (x_i - mean) ** 2``.
    name : str
        Column name, for the error message.

    Returns
    -------
    float
    """
    if n < 2:
        raise MLearnerError(f"scaling='standardize' needs at least 2 units, got {n}")
    sd = math.sqrt(sum_of_squared_deviations / (n - 1))
    if not sd > 0.0:
        raise MLearnerError(
            f"effect column {name!r} is constant (standard deviation 0): it cannot be "
            f"standardised; drop it from embed.effects or use scaling='none'"
        )
    return sd


def _standard_deviation(x: np.ndarray, name: str) -> float:
    n = x.size
    mean = combine_partial_sums([exact_partial_sums(x)]) / n if n else 0.0
    ss = combine_partial_sums([exact_partial_sums((x - mean) ** 2)])
    return scale_from_partials(n, ss, name)


def effect_matrix(effects: pd.DataFrame, which: Sequence[str], scaling: str) -> np.ndarray:
    """The per-unit effect vectors that are embedded.

    Parameters
    ----------
    effects : pandas.DataFrame, shape (n, ...)
        The effects table (columns ``indirect``, ``direct``, ``total``; see docs/architecture.md).
    which : sequence of str
        1 to 3 distinct names among ``indirect``, ``direct``, ``total``.
    scaling : {"standardize", "none"}
        ``standardize`` divides each column by its sample standard deviation
        ``s_j = sqrt(sum_i (x_ij - mean_j) ** 2 / (n - 1))`` (no centring: distances ignore it),
        computed with exact sums so a distributed computation gives the same bits.

    Returns
    -------
    ndarray, shape (n, d), float64
        ``V[i, j] = x_ij / s_j`` (or ``x_ij``), rows in the frame's order.
    """
    if not isinstance(effects, pd.DataFrame):
        raise MLearnerError(f"effects must be a pandas DataFrame, got {type(effects).__name__}")
    names = [which] if isinstance(which, str) else list(which)
    problems = []
    if not 1 <= len(names) <= 3 or len(set(names)) != len(names):
        problems.append(f"which must name 1 to 3 distinct effects, got {names}")
    unknown = [w for w in names if w not in EFFECT_NAMES]
    if unknown:
        problems.append(f"unknown effect(s) {unknown}: choose among {list(EFFECT_NAMES)}")
    if scaling not in SCALINGS:
        problems.append(f"scaling must be one of {list(SCALINGS)}, got {scaling!r}")
    if problems:
        raise ConfigError("; ".join(problems))
    missing = [w for w in names if w not in effects.columns]
    if missing:
        raise MLearnerError(
            f"effects table lacks column(s) {missing} (found {list(effects.columns)[:12]}): "
            f"run the effects stage first, or without a mediator embed only 'total'"
        )
    cols = []
    for w in names:
        x = pd.to_numeric(effects[w], errors="coerce").to_numpy(dtype=np.float64)
        bad = int((~np.isfinite(x)).sum())
        if bad:
            raise MLearnerError(
                f"effect column {w!r} has {bad} missing or non-finite value(s) of {x.size}: "
                f"without a mediator only 'total' is defined; otherwise drop those units"
            )
        if scaling == "standardize":
            x = x / _standard_deviation(x, w)
        cols.append(x)
    if not cols[0].size:
        raise MLearnerError("effects table has no rows")
    return np.column_stack(cols)
