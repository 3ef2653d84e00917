"""Unit keys and the choice of landmarks for the landmark t-SNE (step 1 of the landmark path).

See :mod:`mlearner_dist.core.embedding` for the whole path. A key is a hash of the unit id
and the seed, so the landmarks depend neither on row order nor on the partitioning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mlearner_dist.core.embedding_checks import check_int, check_real, check_vectors
from mlearner_dist.core.folds import unit_uniform
from mlearner_dist.exceptions import MLearnerError

__all__ = [
    "LandmarkPlan",
    "landmark_candidates",
    "plan_landmarks",
    "reference_mask",
    "resolve_keys",
    "select_landmarks",
    "unit_keys",
]


def unit_keys(unit_ids: Any, random_state: int) -> np.ndarray:
    """Pseudo-random keys in [0, 1) that depend only on each unit's id and the seed.

    ``key = unit_uniform(unit_id, "landmark", random_state)`` (the package's one hash of unit ids,
    :func:`mlearner_dist.core.folds.unit_hash`). The same unit gets the same key in every process,
    partition and row order.

    Parameters
    ----------
    unit_ids : array-like, shape (n,)
        Unit identifiers (int or str).
    random_state : int
        Seed.

    Returns
    -------
    ndarray, shape (n,), float64
    """
    seed = check_int("random_state", random_state, 0)
    return unit_uniform(np.asarray(unit_ids), "landmark", seed)


def reference_mask(keys: np.ndarray, n_units: int, reference_size: int) -> np.ndarray:
    """Units of the reference sample: ``key < reference_size / n_units`` (all if n is smaller).

    The reference sample (about ``reference_size`` units, chosen by key only) gives the quantile
    bin edges, the principal direction and the codebook, identically in memory and on Dask.

    Returns
    -------
    ndarray of bool, shape (n,)
    """
    return np.asarray(keys) < min(1.0, reference_size / max(n_units, 1))


@dataclass(frozen=True)
class LandmarkPlan:
    """How landmarks are stratified; built once from summaries, applied to every block.

    Attributes
    ----------
    n_units : int
        Total number of units.
    take_all : bool
        True when there are no more units than requested landmarks: every unit is a landmark.
    direction : ndarray, shape (d,)
        Unit vector whose projection ``z = V @ direction`` is stratified by quantile bins (the
        first principal direction of the reference sample; ``[1.0]`` for one effect).
    quantile_edges : ndarray, shape (n_bins - 1,)
        Inner edges of the quantile bins of ``z``.
    quantile_quota : int
        Units taken per quantile bin (smallest keys).
    value_edges : tuple of ndarray
        Per effect column, inner edges of equal-width bins over [min, max]; one unit per bin.
    """

    n_units: int
    take_all: bool
    direction: np.ndarray
    quantile_edges: np.ndarray
    quantile_quota: int
    value_edges: tuple[np.ndarray, ...]


def _principal_direction(V_ref: np.ndarray) -> np.ndarray:
    d = V_ref.shape[1]
    if d == 1 or V_ref.shape[0] < 2:
        out = np.zeros(d)
        out[0] = 1.0
        return out
    centred = V_ref - V_ref.mean(axis=0)
    cov = centred.T @ centred / (V_ref.shape[0] - 1)
    _, vecs = np.linalg.eigh(cov)
    v = vecs[:, -1]
    if v[int(np.argmax(np.abs(v)))] < 0:
        v = -v
    return np.ascontiguousarray(v)


def _project(V: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """``V @ direction`` with a fixed summation order (identical whatever the block)."""
    z = V[:, 0] * direction[0]
    for c in range(1, V.shape[1]):
        z = z + V[:, c] * direction[c]
    return z


def plan_landmarks(
    n_units: int,
    v_min: np.ndarray,
    v_max: np.ndarray,
    V_ref: np.ndarray,
    *,
    n_landmarks: int,
    n_bins: int = 50,
    tail_fraction: float = 0.2,
) -> LandmarkPlan:
    """Stratification for :func:`landmark_candidates`, from summaries only.

    Of the ``n_landmarks``: about ``tail_fraction`` go to equal-width value bins (one unit each,
    split across the d effects; only the bins that the reference sample occupies are counted
    against the budget), 2 d to the extremes, the rest in equal quotas to ``n_bins`` quantile bins
    of the first principal direction. Strata overlap a little, so the effective
    number of landmarks can fall slightly short of ``n_landmarks`` (it is recorded).

    Parameters
    ----------
    n_units : int
        Number of units.
    v_min, v_max : ndarray, shape (d,)
        Column minima and maxima of V.
    V_ref : ndarray, shape (r, d)
        Reference sample (:func:`reference_mask`), in ascending key order.
    n_landmarks : int
        Requested landmarks.
    n_bins : int
        Quantile bins.
    tail_fraction : float
        Share of landmarks spent on the value bins, in [0, 0.9].

    Returns
    -------
    LandmarkPlan
    """
    d = V_ref.shape[1]
    direction = _principal_direction(V_ref)
    if n_units <= n_landmarks:
        return LandmarkPlan(
            n_units, True, direction, np.empty(0), 0, tuple(np.empty(0) for _ in range(d))
        )
    n_value = round(tail_fraction * n_landmarks)
    per_col = max(2, n_value // d) if n_value > 0 else 0
    value_edges = tuple(
        np.linspace(float(v_min[c]), float(v_max[c]), per_col + 1)[1:-1]
        if per_col > 0
        else np.empty(0)
        for c in range(d)
    )
    n_bins = max(1, min(n_bins, n_landmarks))
    # empty value bins cost nothing: budget only the bins the reference sample occupies, so a
    # heavy tail (many empty equal-width bins) does not shrink the number of landmarks
    occupied = sum(
        int(np.unique(np.searchsorted(edges, V_ref[:, c], side="right")).size) if edges.size else 0
        for c, edges in enumerate(value_edges)
    )
    rest = max(n_bins, n_landmarks - occupied - 2 * d)
    quota = max(1, rest // n_bins)
    z_ref = _project(V_ref, direction)
    edges = np.quantile(z_ref, np.linspace(0.0, 1.0, n_bins + 1)[1:-1])
    return LandmarkPlan(n_units, False, direction, edges, quota, value_edges)


def _head_by_key(strata: np.ndarray, keys: np.ndarray, quota: int) -> np.ndarray:
    """Positions of the ``quota`` smallest keys within every stratum."""
    order = np.lexsort((keys, strata))
    s = strata[order]
    first = np.r_[0, np.flatnonzero(s[1:] != s[:-1]) + 1]
    starts = np.repeat(first, np.diff(np.r_[first, s.size]))
    rank = np.arange(s.size) - starts
    return order[rank < quota]


def landmark_candidates(V: np.ndarray, keys: np.ndarray, plan: LandmarkPlan) -> np.ndarray:
    """Rows of a block that can be landmarks; applied to the union of all blocks' candidates, the
    same rule gives the final landmarks (the per-stratum smallest keys of the union are the global
    ones), so the choice is exact whatever the partitioning.

    Parameters
    ----------
    V : ndarray, shape (b, d)
        Effect vectors of one block (or of the union of candidates).
    keys : ndarray, shape (b,)
        Unit keys (:func:`unit_keys`).
    plan : LandmarkPlan

    Returns
    -------
    ndarray of int
        Sorted row positions within the block.
    """
    if V.shape[0] == 0:
        return np.empty(0, dtype=np.int64)
    if plan.take_all:
        return np.arange(V.shape[0])
    picks = [
        _head_by_key(
            np.searchsorted(plan.quantile_edges, _project(V, plan.direction), side="right"),
            keys,
            plan.quantile_quota,
        )
    ]
    for c, edges in enumerate(plan.value_edges):
        if edges.size:
            picks.append(_head_by_key(np.searchsorted(edges, V[:, c], side="right"), keys, 1))
        picks.append(np.array([np.lexsort((keys, V[:, c]))[0], np.lexsort((keys, -V[:, c]))[0]]))
    return np.unique(np.concatenate(picks))


def select_landmarks(
    V: np.ndarray,
    n_landmarks: int,
    random_state: int = 0,
    *,
    keys: np.ndarray | None = None,
    n_bins: int = 50,
    tail_fraction: float = 0.2,
    reference_size: int = 100_000,
) -> np.ndarray:
    """Stratified landmark sample that keeps the tails of the effect distribution.

    Parameters
    ----------
    V : ndarray, shape (n, d)
        Effect vectors.
    n_landmarks : int
        Requested number of landmarks (the effective number can be slightly lower, see
        :func:`plan_landmarks`; all units when ``n <= n_landmarks``).
    random_state : int
        Seed of the keys when ``keys`` is not given.
    keys : ndarray, shape (n,), optional
        Unit keys (:func:`unit_keys`); default: uniform draws from ``random_state`` by row.
    n_bins, tail_fraction : see :func:`plan_landmarks`.
    reference_size : int
        Size of the key-chosen reference sample for quantiles and principal direction.

    Returns
    -------
    ndarray of int, shape (m,)
        Row indices of the landmarks, in ascending key order.
    """
    V = check_vectors(V)
    n_landmarks = check_int("n_landmarks", n_landmarks, 5)
    n_bins = check_int("n_bins", n_bins, 1)
    tail_fraction = check_real("tail_fraction", tail_fraction, 0.0, 0.9)
    reference_size = check_int("reference_size", reference_size, 10)
    keys = resolve_keys(keys, V.shape[0], random_state)
    ref = reference_mask(keys, V.shape[0], reference_size)
    ref_idx = np.flatnonzero(ref)
    ref_idx = ref_idx[np.argsort(keys[ref_idx], kind="stable")]
    plan = plan_landmarks(
        V.shape[0],
        V.min(axis=0),
        V.max(axis=0),
        V[ref_idx],
        n_landmarks=n_landmarks,
        n_bins=n_bins,
        tail_fraction=tail_fraction,
    )
    idx = landmark_candidates(V, keys, plan)
    return idx[np.argsort(keys[idx], kind="stable")]


def resolve_keys(keys: np.ndarray | None, n: int, random_state: int) -> np.ndarray:
    """The unit keys to use: ``keys`` checked against ``n``, or uniform draws from the seed.

    Parameters
    ----------
    keys : ndarray, shape (n,), optional
        Keys from :func:`unit_keys`; without them (in memory, no ids) the keys are
        ``default_rng(random_state).random(n)`` by row.
    n : int
        Rows of the effect vectors.
    random_state : int

    Returns
    -------
    ndarray of float64, shape (n,)

    Raises
    ------
    MLearnerError
        ``keys`` of another shape.
    """
    if keys is None:
        seed = check_int("random_state", random_state, 0)
        return np.random.default_rng(seed).random(n)
    keys = np.asarray(keys, dtype=np.float64)
    if keys.shape != (n,):
        raise MLearnerError(f"keys must have shape ({n},) like V's rows, got {keys.shape}")
    return keys
