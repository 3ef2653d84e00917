"""Merging the first two moments of groups computed on different partitions.

A group's moments are ``(n, sum, sumsq, mean, m2)`` with ``m2`` the sum of squared deviations from
the mean. Two partial groups merge exactly (Chan, Golub and LeVeque 1979):

    n = n_a + n_b,   delta = mean_b - mean_a,
    mean = mean_a + delta n_b / n,   m2 = m2_a + m2_b + delta^2 n_a n_b / n,

so the interaction tests and the DR-score tests get the same per-cell statistics from Spark or
Dask partitions as from all rows at once.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence

import numpy as np
import pandas as pd

__all__ = ["cell_mean_m2", "merge_moment_rows", "merge_moments"]


def merge_moments(a: Sequence[float], b: Sequence[float]) -> list[float]:
    """The moments ``(n, sum, sumsq, mean, m2)`` of the union of two disjoint groups."""
    n_a, s_a, q_a, mu_a, m2_a = a
    n_b, s_b, q_b, mu_b, m2_b = b
    n = n_a + n_b
    d = mu_b - mu_a
    return [n, s_a + s_b, q_a + q_b, mu_a + d * n_b / n, m2_a + m2_b + d * d * n_a * n_b / n]


def merge_moment_rows(
    rows: Iterable[tuple[Hashable, Sequence[float]]],
) -> dict[Hashable, list[float]]:
    """Merge ``(key, moments)`` rows into one moments entry per key (insertion order kept)."""
    acc: dict[Hashable, list[float]] = {}
    for key, moments in rows:
        acc[key] = list(moments) if key not in acc else merge_moments(acc[key], moments)
    return acc


def cell_mean_m2(cells: pd.DataFrame, have_moments: bool) -> tuple[np.ndarray, np.ndarray]:
    """Each cell's mean and ``m2`` from its moments: the columns themselves, or from sums.

    With ``have_moments`` the ``mean`` and ``m2`` columns are used (two-pass accurate); otherwise
    ``mean = sum / n`` and ``m2 = sumsq - sum^2 / n``. ``m2`` is clipped at 0 (rounding).
    """
    if have_moments:
        mean = cells["mean"].to_numpy(dtype=float)
        m2 = cells["m2"].to_numpy(dtype=float)
    else:
        n = cells["n"].to_numpy(dtype=float)
        s = cells["sum"].to_numpy(dtype=float)
        mean = s / n
        m2 = cells["sumsq"].to_numpy(dtype=float) - s * s / n
    return mean, np.maximum(m2, 0.0)
