"""Step 2: the effect vector and its 2-D t-SNE embedding, exact for small n, by landmarks above.

Exact path (``n <= exact_max_n``): the full n x n matrix of effect differences
(:mod:`mlearner_dist.core.distances`) and openTSNE on it, as the reference does with Rtsne
(2-D, perplexity 30, random N(0, 1e-4) initialisation; 2000 iterations under
``fidelity: reference``).

Iterations (``fidelity: ours``, issue 16). Rtsne steps with a fixed learning rate of 200 and
needs its 2000 iterations; openTSNE steps with ``learning_rate = n / exaggeration`` (``n / 12``
while exaggerated, then ``n``), which scales the step to the data and converges in a few hundred
iterations (Belkina et al. 2019, "Automated optimized parameters for t-SNE"; openTSNE's defaults).
The rule is openTSNE's own schedule: ``n_iter = 750`` in all, the first
``min(250, n_iter // 3) = 250`` with exaggeration 12. Measured on simple-all (n = 1,000, one
thread): 1.3 s instead of 3.5 s for 2000 iterations. The K-means labels of a t-SNE of a 1-D
effect are not a stable function of the settings: multiplying the initialisation by 1 + 1e-6
or running openTSNE on two threads instead of one already moves the adjusted Rand index between
the labels of the 2000-iteration schedule down to 0.26 and 0.27 (K = 3, seed 0;
``perturbation_1000`` in benchmarks/results_selection.json), so the schedules are compared by
cluster homogeneity (tests/unit/test_embedding_quality.py) and by the decisions of the whole
selection (benchmarks/quality_selection.py, results_quality.json).

Landmark path (``n > exact_max_n``), where nothing n x n exists:

1. landmarks are chosen by :func:`select_landmarks`: equal quotas from quantile bins of the effect
   (of its first principal direction for several effects), one unit from each equal-width value
   bin of every effect (so the sparse tails are represented far beyond their share of units) and
   the extreme units of every effect. Within a stratum the units with the smallest *unit keys* win;
   a key is a hash of the unit id and the seed (:func:`unit_keys`), so the choice depends neither
   on row order nor on how the data are partitioned;
2. openTSNE embeds the landmarks from their (m x m) distance matrix;
3. a codebook of at most ``grid_size`` representative effect vectors (quantiles and an even value
   grid for one effect, a key-ordered random sample for several; plus every landmark, which keeps
   its fitted position) is placed once by openTSNE's out-of-sample ``transform`` against the FIXED
   landmark embedding;
4. every unit is placed from the codebook alone (:meth:`LandmarkEmbedding.transform`): linear
   interpolation between the two codebook neighbours of a single effect unless they sit on
   different sides of a gap in the embedding (then the nearest), nearest codebook point (KD-tree)
   for several effects. A unit's position is a function of its effect vector only, and costs
   O(log G) per unit whatever the number of landmarks.

openTSNE's silent choices are pinned here and recorded in the returned ``info`` dictionary: the
effective perplexity (openTSNE lowers it on small sets), the number of neighbours, the neighbour
method (exact neighbours from the precomputed matrix), the gradient method (Barnes-Hut below 10,000
points, FFT above, as openTSNE would pick, but explicit) and an explicit thread count.
"""

from __future__ import annotations

import logging
import math
import pickle
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from numbers import Integral, Real
from typing import Any

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from mlearner_dist.core.distances import (
    distance_power,
    effect_distances,
    effect_distances_blockwise,
)
from mlearner_dist.core.folds import unit_uniform
from mlearner_dist.exceptions import ConfigError, MLearnerError

__all__ = [
    "EFFECT_NAMES",
    "LandmarkEmbedding",
    "LandmarkPlan",
    "build_codebook",
    "combine_partial_sums",
    "effect_matrix",
    "embed",
    "embed_exact",
    "exact_partial_sums",
    "fit_landmark_embedding",
    "landmark_candidates",
    "plan_landmarks",
    "reference_mask",
    "scale_from_partials",
    "select_landmarks",
    "unit_keys",
]

logger = logging.getLogger(__name__)

EFFECT_NAMES = ("indirect", "direct", "total")
SCALINGS = ("standardize", "none")
INITIALIZATIONS = ("random", "spectral")

#: openTSNE switches from Barnes-Hut to FFT gradients at this many points; we pin the same rule.
FFT_MIN_POINTS = 10_000
#: Early exaggeration phase (Rtsne's stop_lying_iter), counted inside ``n_iter``: the first
#: ``min(EARLY_EXAGGERATION_ITER, n_iter // 3)`` iterations (250 of 750, openTSNE's own schedule).
EARLY_EXAGGERATION_ITER = 250
#: Early exaggeration factor (Rtsne's and openTSNE's 12).
EARLY_EXAGGERATION = 12.0
#: openTSNE ``transform`` settings used to place the codebook (openTSNE's own defaults).
TRANSFORM_SETTINGS: dict[str, Any] = {
    "perplexity": 5.0,
    "k": 25,
    "n_iter": 250,
    "learning_rate": 0.1,
    "exaggeration": 1.5,
    "initialization": "median",
}
#: Codebook points placed by one openTSNE ``transform`` call (bounds the distance block in memory).
TRANSFORM_CHUNK = 2000
#: In 1-D, interpolate between codebook neighbours only if their embedded distance is at most this
#: multiple of the median embedded distance between consecutive codebook points.
GAP_FACTOR = 5.0

DistanceFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


# --- validation helpers ------------------------------------------------------------------------


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or int(value) < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_real(name: str, value: Any, low: float, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not low <= float(value) <= high:
        raise ConfigError(f"{name} must be a number in [{low}, {high}], got {value!r}")
    return float(value)


def _check_vectors(V: Any, name: str = "V") -> np.ndarray:
    arr = np.asarray(V, dtype=np.float64) if not isinstance(V, np.ndarray) else V
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[1] < 1 or arr.shape[1] > 3:
        raise MLearnerError(
            f"{name} must be an (n, d) array of effect vectors with 1 <= d <= 3, got shape "
            f"{arr.shape}: build it with effect_matrix()"
        )
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).any(axis=1).sum())
        raise MLearnerError(
            f"{name} has {bad} row(s) with NaN or infinite effects: drop or impute those units "
            f"before the embedding"
        )
    return arr


def _check_common(
    perplexity: float, n_iter: int, kernel_power: int, n_jobs: int, theta: float, init: str
) -> tuple[float, int, int, int, float]:
    perplexity = _check_real("perplexity", perplexity, 1.0)
    n_iter = _check_int("n_iter", n_iter, 1)
    distance_power(kernel_power)
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, Integral) or int(n_jobs) < 1:
        raise ConfigError(
            f"n_jobs must be an explicit positive integer, got {n_jobs!r} (openTSNE's -1 counts "
            f"the host's cores, not the container's)"
        )
    theta = _check_real("theta", theta, 0.0, 1.0)
    if init not in INITIALIZATIONS:
        raise ConfigError(f"initialization must be one of {INITIALIZATIONS}, got {init!r}")
    return perplexity, n_iter, int(kernel_power), int(n_jobs), theta


# --- the effect vector -------------------------------------------------------------------------


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


# --- unit keys and landmark selection ----------------------------------------------------------


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
    seed = _check_int("random_state", random_state, 0)
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
    V = _check_vectors(V)
    n_landmarks = _check_int("n_landmarks", n_landmarks, 5)
    n_bins = _check_int("n_bins", n_bins, 1)
    tail_fraction = _check_real("tail_fraction", tail_fraction, 0.0, 0.9)
    reference_size = _check_int("reference_size", reference_size, 10)
    keys = _resolve_keys(keys, V.shape[0], random_state)
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


def _resolve_keys(keys: np.ndarray | None, n: int, random_state: int) -> np.ndarray:
    if keys is None:
        seed = _check_int("random_state", random_state, 0)
        return np.random.default_rng(seed).random(n)
    keys = np.asarray(keys, dtype=np.float64)
    if keys.shape != (n,):
        raise MLearnerError(f"keys must have shape ({n},) like V's rows, got {keys.shape}")
    return keys


# --- t-SNE -------------------------------------------------------------------------------------


def _effective_perplexity(perplexity: float, n: int) -> tuple[float, int]:
    """Perplexity actually used and neighbours (openTSNE: k = min(n - 1, floor(3 perplexity)))."""
    eff = min(perplexity, (n - 1) / 3.0)
    if eff < perplexity:
        logger.warning(
            "perplexity %.2f is too large for %d points; using %.2f (recorded in the embedding "
            "info)",
            perplexity,
            n,
            eff,
        )
    k = max(1, min(n - 1, int(3 * eff)))
    return eff, k


def _tsne_on_distances(
    D: np.ndarray,
    *,
    perplexity: float,
    n_iter: int,
    theta: float,
    random_state: int,
    n_jobs: int,
    initialization: str,
) -> tuple[Any, dict[str, Any]]:
    """openTSNE on a precomputed (n, n) distance matrix; returns the TSNEEmbedding and settings."""
    from openTSNE import TSNE
    from openTSNE.affinity import PerplexityBasedNN

    n = D.shape[0]
    eff, k = _effective_perplexity(perplexity, n)
    affinities = PerplexityBasedNN(
        D,
        perplexity=eff,
        method="exact",
        metric="precomputed",
        k_neighbors=k,
        n_jobs=n_jobs,
        random_state=random_state,
    )
    gradient = "bh" if n < FFT_MIN_POINTS else "fft"
    early = min(EARLY_EXAGGERATION_ITER, n_iter // 3)
    if initialization == "random":
        init: Any = np.random.default_rng(random_state).normal(0.0, 1e-4, (n, 2))
    else:
        init = "spectral"
    # learning rate n / exaggeration in each phase (n / 12, then n), passed explicitly: with it
    # the gradient steps are scaled to the size of the data and a few hundred iterations converge
    # (Belkina et al. 2019; Linderman and Steinerberger 2019); Rtsne's fixed 200 needs thousands
    tsne = TSNE(
        n_components=2,
        perplexity=eff,
        early_exaggeration_iter=early,
        n_iter=n_iter - early,
        early_exaggeration=EARLY_EXAGGERATION,
        learning_rate="auto",
        theta=theta,
        metric="precomputed",
        n_jobs=n_jobs,
        negative_gradient_method=gradient,
        random_state=random_state,
        verbose=False,
    )
    emb = tsne.fit(affinities=affinities, initialization=init)
    info = {
        "perplexity": perplexity,
        "perplexity_effective": eff,
        "k_neighbors": k,
        "neighbors_method": "exact (precomputed distances)",
        "gradient_method": gradient,
        "theta": theta if gradient == "bh" else None,
        "n_iter": n_iter,
        "early_exaggeration_iter": early,
        "early_exaggeration": EARLY_EXAGGERATION,
        "learning_rate": float(n / EARLY_EXAGGERATION),
        "learning_rate_after_exaggeration": float(n),
        "initialization": initialization,
        "n_jobs": n_jobs,
        # 6 significant digits: openTSNE sums the KL divergence over threads, so its last bits
        # vary between runs although the embedding does not (result.json stays identical)
        "kl_divergence": float(f"{float(emb.kl_divergence):.6g}"),
    }
    return emb, info


def _kernel_info(kernel_power: int) -> dict[str, Any]:
    return {
        "kernel_power": kernel_power,
        "distance_supplied": "euclidean" if kernel_power == 2 else "squared euclidean",
    }


def embed_exact(
    V: np.ndarray,
    *,
    perplexity: float = 30.0,
    n_iter: int = 750,
    kernel_power: int = 2,
    random_state: int = 0,
    n_jobs: int = 1,
    theta: float = 0.5,
    initialization: str = "random",
) -> tuple[np.ndarray, dict[str, Any]]:
    """Exact-path t-SNE of all units from the full n x n distance matrix.

    Parameters
    ----------
    V : ndarray, shape (n, d)
        Effect vectors (:func:`effect_matrix`), 4 <= n.
    perplexity : float
        Requested perplexity (lowered to (n - 1) / 3 on small sets, recorded).
    n_iter : int
        Total iterations, the first min(250, n_iter // 3) with early exaggeration 12 (as Rtsne's
        ``max_iter``).
    kernel_power : {2, 4}
        The Gaussian kernel acts on ``||v_i - v_j|| ** kernel_power``; 4 reproduces the reference
        (see :mod:`mlearner_dist.core.distances`).
    random_state : int
        Seed of the N(0, 1e-4) initialisation.
    n_jobs : int
        openTSNE threads (explicit; never -1).
    theta : float
        Barnes-Hut accuracy; 0 evaluates every pair (Rtsne's exact ``theta=0``, O(n^2) per
        iteration).
    initialization : {"random", "spectral"}
        ``random`` as the reference.

    Returns
    -------
    Y : ndarray, shape (n, 2)
    info : dict
        Effective settings (``path="exact"``, perplexity, neighbours, gradient method, ...).
    """
    V = _check_vectors(V)
    perplexity, n_iter, kernel_power, n_jobs, theta = _check_common(
        perplexity, n_iter, kernel_power, n_jobs, theta, initialization
    )
    random_state = _check_int("random_state", random_state, 0)
    n = V.shape[0]
    if n < 4:
        raise MLearnerError(f"the embedding needs at least 4 units, got {n}")
    D = effect_distances(V, kernel_power=kernel_power)
    emb, info = _tsne_on_distances(
        D,
        perplexity=perplexity,
        n_iter=n_iter,
        theta=theta,
        random_state=random_state,
        n_jobs=n_jobs,
        initialization=initialization,
    )
    Y = np.array(emb, dtype=np.float64)
    return Y, {"path": "exact", "n_units": n, **_kernel_info(kernel_power), **info}


# --- landmark path -----------------------------------------------------------------------------


def build_codebook(
    landmark_vectors: np.ndarray,
    V_ref: np.ndarray,
    v_min: np.ndarray,
    v_max: np.ndarray,
    grid_size: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Representative effect vectors that are projected once, with the landmarks among them.

    One effect: the landmarks' values, ``grid_size / 2`` quantiles of the reference sample and
    ``grid_size / 2`` evenly spaced values over [min, max]; several: the landmarks and the first
    ``grid_size`` reference units in key order. Exact duplicates collapse (a landmark wins).

    Parameters
    ----------
    landmark_vectors : ndarray, shape (m, d)
    V_ref : ndarray, shape (r, d)
        Reference sample in ascending key order.
    v_min, v_max : ndarray, shape (d,)
    grid_size : int

    Returns
    -------
    codebook : ndarray, shape (G, d)
        Sorted by value for one effect.
    anchor : ndarray of int, shape (G,)
        Landmark index of each codebook point that is a landmark's vector, else -1.
    """
    m, d = landmark_vectors.shape
    if d == 1:
        half = max(2, grid_size // 2)
        extra = np.concatenate(
            [
                np.quantile(V_ref[:, 0], np.linspace(0.0, 1.0, half)),
                np.linspace(float(v_min[0]), float(v_max[0]), half),
            ]
        )[:, None]
    else:
        extra = V_ref[:grid_size]
    rows = np.vstack([landmark_vectors, extra])
    _, first = np.unique(rows, axis=0, return_index=True)
    keep = np.sort(first)
    codebook = rows[keep]
    anchor = np.where(keep < m, keep, -1)
    if d == 1:
        order = np.argsort(codebook[:, 0], kind="stable")
        codebook, anchor = codebook[order], anchor[order]
    return np.ascontiguousarray(codebook), anchor


class LandmarkEmbedding:
    """Landmark t-SNE with out-of-sample placement through a projected codebook.

    Parameters
    ----------
    n_landmarks : int
        Requested landmarks (>= 5).
    perplexity : float
        Perplexity of the landmark embedding (lowered on small sets; recorded).
    n_iter : int
        Total t-SNE iterations on the landmarks.
    kernel_power : {2, 4}
        Power of the effect difference in the Gaussian kernel.
    grid_size : int
        Codebook size besides the landmarks (>= 10).
    random_state : int
        Seed of the keys (in memory without ids) and of the t-SNE initialisation.
    n_jobs : int
        openTSNE threads.
    theta : float
        Barnes-Hut accuracy (below 10,000 landmarks).
    initialization : {"random", "spectral"}
    n_bins, tail_fraction, reference_size
        Landmark stratification (:func:`plan_landmarks`, :func:`reference_mask`).
    interpolate : bool
        One effect: interpolate between codebook neighbours (else the nearest).
    block_size : int
        Rows per block of the distance computations.

    Attributes
    ----------
    landmark_index_ : ndarray of int or None
        Rows of V that are landmarks, ascending key order (None after :meth:`fit_parts`).
    landmark_vectors_ : ndarray, shape (m, d)
    landmark_embedding_ : ndarray, shape (m, 2)
        Fixed landmark positions (centred as openTSNE's ``transform`` centres them).
    codebook_ : ndarray, shape (G, d)
    codebook_embedding_ : ndarray, shape (G, 2)
    info_ : dict
        Effective settings for result.json's ``embedding`` entry.
    """

    def __init__(
        self,
        *,
        n_landmarks: int = 2000,
        perplexity: float = 30.0,
        n_iter: int = 750,
        kernel_power: int = 2,
        grid_size: int = 2000,
        random_state: int = 0,
        n_jobs: int = 1,
        theta: float = 0.5,
        initialization: str = "random",
        n_bins: int = 50,
        tail_fraction: float = 0.2,
        reference_size: int = 100_000,
        interpolate: bool = True,
        block_size: int = 2048,
    ) -> None:
        self.n_landmarks = n_landmarks
        self.perplexity = perplexity
        self.n_iter = n_iter
        self.kernel_power = kernel_power
        self.grid_size = grid_size
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.theta = theta
        self.initialization = initialization
        self.n_bins = n_bins
        self.tail_fraction = tail_fraction
        self.reference_size = reference_size
        self.interpolate = interpolate
        self.block_size = block_size

    def _validate(self) -> None:
        _check_common(
            self.perplexity,
            self.n_iter,
            self.kernel_power,
            self.n_jobs,
            self.theta,
            self.initialization,
        )
        _check_int("n_landmarks", self.n_landmarks, 5)
        _check_int("grid_size", self.grid_size, 10)
        _check_int("random_state", self.random_state, 0)
        _check_int("n_bins", self.n_bins, 1)
        _check_real("tail_fraction", self.tail_fraction, 0.0, 0.9)
        _check_int("reference_size", self.reference_size, 10)
        _check_int("block_size", self.block_size, 1)

    def plan(
        self, n_units: int, v_min: np.ndarray, v_max: np.ndarray, V_ref: np.ndarray
    ) -> LandmarkPlan:
        """The landmark stratification for these summaries (see :func:`plan_landmarks`)."""
        self._validate()
        return plan_landmarks(
            n_units,
            np.asarray(v_min, dtype=float),
            np.asarray(v_max, dtype=float),
            V_ref,
            n_landmarks=self.n_landmarks,
            n_bins=self.n_bins,
            tail_fraction=self.tail_fraction,
        )

    def fit(self, V: np.ndarray, *, keys: np.ndarray | None = None) -> LandmarkEmbedding:
        """Choose landmarks, embed them, project the codebook.

        Parameters
        ----------
        V : ndarray, shape (n, d)
            Effect vectors.
        keys : ndarray, shape (n,), optional
            Unit keys (:func:`unit_keys`); give them to match the Dask backend exactly.

        Returns
        -------
        self
        """
        self._validate()
        V = _check_vectors(V)
        keys = _resolve_keys(keys, V.shape[0], self.random_state)
        ref_idx = np.flatnonzero(reference_mask(keys, V.shape[0], self.reference_size))
        ref_idx = ref_idx[np.argsort(keys[ref_idx], kind="stable")]
        V_ref = V[ref_idx]
        v_min, v_max = V.min(axis=0), V.max(axis=0)
        plan = self.plan(V.shape[0], v_min, v_max, V_ref)
        idx = landmark_candidates(V, keys, plan)
        idx = idx[np.argsort(keys[idx], kind="stable")]
        self.fit_parts(V[idx], V_ref, v_min, v_max, n_units=V.shape[0])
        self.landmark_index_ = idx
        return self

    def fit_parts(
        self,
        landmark_vectors: np.ndarray,
        V_ref: np.ndarray,
        v_min: np.ndarray,
        v_max: np.ndarray,
        *,
        n_units: int,
        distance_fn: DistanceFn | None = None,
    ) -> LandmarkEmbedding:
        """Fit from driver-sized pieces (what the Dask backend gathers).

        Parameters
        ----------
        landmark_vectors : ndarray, shape (m, d)
            Landmark effect vectors, ascending key order.
        V_ref : ndarray, shape (r, d)
            Reference sample, ascending key order.
        v_min, v_max : ndarray, shape (d,)
            Column minima and maxima over all units.
        n_units : int
            Number of units (recorded).
        distance_fn : callable, optional
            ``(A, B) -> (na, nb)`` distances for this ``kernel_power``; default
            :func:`~mlearner_dist.core.distances.effect_distances_blockwise`. The Dask backend
            passes a dask.array version.

        Returns
        -------
        self
        """
        self._validate()
        VL = _check_vectors(landmark_vectors, "landmark_vectors")
        V_ref = _check_vectors(V_ref, "V_ref")
        m = VL.shape[0]
        if m < 4:
            raise MLearnerError(f"the landmark embedding needs at least 4 landmarks, got {m}")
        kp = int(self.kernel_power)
        if distance_fn is None:

            def distance_fn(A: np.ndarray, B: np.ndarray) -> np.ndarray:
                return effect_distances_blockwise(A, B, kernel_power=kp, block_size=self.block_size)

        D = distance_fn(VL, VL)
        emb, tsne_info = _tsne_on_distances(
            D,
            perplexity=float(self.perplexity),
            n_iter=int(self.n_iter),
            theta=float(self.theta),
            random_state=int(self.random_state),
            n_jobs=int(self.n_jobs),
            initialization=self.initialization,
        )
        del D
        # transform() re-centres the reference embedding in place: centre it once ourselves so
        # the stored landmark positions and the projected codebook share one frame.
        emb -= (np.max(emb, axis=0) + np.min(emb, axis=0)) / 2
        YL = np.array(emb, dtype=np.float64)
        codebook, anchor = build_codebook(VL, V_ref, v_min, v_max, int(self.grid_size))
        Yc = np.empty((codebook.shape[0], 2))
        is_anchor = anchor >= 0
        Yc[is_anchor] = YL[anchor[is_anchor]]
        todo = np.flatnonzero(~is_anchor)
        for start in range(0, todo.size, TRANSFORM_CHUNK):
            rows = todo[start : start + TRANSFORM_CHUNK]
            block = distance_fn(codebook[rows], VL)
            # transform() moves its reference in place: work on a full copy (pickle keeps the
            # affinities and optimizer settings; copy.deepcopy drops them)
            ref = pickle.loads(pickle.dumps(emb))
            Yc[rows] = np.asarray(
                ref.transform(
                    block,
                    perplexity=TRANSFORM_SETTINGS["perplexity"],
                    k=TRANSFORM_SETTINGS["k"],
                    n_iter=TRANSFORM_SETTINGS["n_iter"],
                    learning_rate=TRANSFORM_SETTINGS["learning_rate"],
                    exaggeration=TRANSFORM_SETTINGS["exaggeration"],
                    initialization=TRANSFORM_SETTINGS["initialization"],
                ),
                dtype=np.float64,
            )
        self.landmark_index_ = None
        self.landmark_vectors_ = VL
        self.landmark_embedding_ = YL
        self.codebook_ = codebook
        self.codebook_embedding_ = Yc
        one_d = codebook.shape[1] == 1
        if one_d:
            steps = np.linalg.norm(np.diff(Yc, axis=0), axis=1)
            tol = GAP_FACTOR * float(np.median(steps)) if steps.size else 0.0
            self._bridge = (steps <= tol) if self.interpolate else np.zeros(steps.size, bool)
            self._tree = None
        else:
            self._bridge = None
            self._tree = cKDTree(codebook)
        self.info_ = {
            "path": "landmark",
            "n_units": int(n_units),
            "n_landmarks": m,
            "n_landmarks_requested": int(self.n_landmarks),
            **_kernel_info(kp),
            **tsne_info,
            "grid_size": int(self.grid_size),
            "codebook_size": int(codebook.shape[0]),
            "placement": "interpolate-1d" if one_d and self.interpolate else "nearest",
            "transform": dict(TRANSFORM_SETTINGS),
            "n_bins": int(self.n_bins),
            "tail_fraction": float(self.tail_fraction),
            "reference_size": int(min(self.reference_size, n_units)),
            "random_state": int(self.random_state),
        }
        logger.info(
            "landmark t-SNE: %d landmarks, codebook %d, perplexity %.1f, %s gradients",
            m,
            codebook.shape[0],
            tsne_info["perplexity_effective"],
            tsne_info["gradient_method"],
        )
        return self

    def transform(self, V_block: np.ndarray) -> np.ndarray:
        """Place units from their effect vectors alone (the codebook, never the landmarks).

        Parameters
        ----------
        V_block : ndarray, shape (b, d)

        Returns
        -------
        ndarray, shape (b, 2)
            One effect: ``y = (1 - t) Y_k + t Y_{k+1}`` with ``t = (v - c_k) / (c_{k+1} - c_k)``
            between the codebook neighbours ``c_k <= v <= c_{k+1}`` when they are not separated by
            a gap in the embedding, else the nearest of the two (beyond the ends: the end point).
            Several effects: the nearest codebook point.
        """
        if not hasattr(self, "codebook_"):
            raise MLearnerError("LandmarkEmbedding is not fitted: call fit() or fit_parts()")
        V = _check_vectors(V_block, "V_block")
        if V.shape[1] != self.codebook_.shape[1]:
            raise MLearnerError(
                f"V_block has {V.shape[1]} effect column(s); the embedding was fitted on "
                f"{self.codebook_.shape[1]}"
            )
        return _place(V, self.codebook_, self.codebook_embedding_, self._bridge, self._tree)


def _place(
    V: np.ndarray,
    codebook: np.ndarray,
    Yc: np.ndarray,
    bridge: np.ndarray | None,
    tree: cKDTree | None,
) -> np.ndarray:
    if tree is not None:
        _, idx = tree.query(V, k=1)
        return Yc[idx]
    c = codebook[:, 0]
    v = V[:, 0]
    G = c.size
    if G == 1:
        return np.repeat(Yc, v.size, axis=0)
    r = np.clip(np.searchsorted(c, v, side="left"), 1, G - 1)
    left = r - 1
    t = np.clip((v - c[left]) / (c[r] - c[left]), 0.0, 1.0)
    assert bridge is not None
    use = bridge[left]
    t = np.where(use, t, np.where(t <= 0.5, 0.0, 1.0))
    return (1.0 - t)[:, None] * Yc[left] + t[:, None] * Yc[r]


def fit_landmark_embedding(
    V: np.ndarray,
    *,
    n_landmarks: int = 2000,
    perplexity: float = 30.0,
    n_iter: int = 750,
    kernel_power: int = 2,
    grid_size: int = 2000,
    random_state: int = 0,
    n_jobs: int = 1,
    keys: np.ndarray | None = None,
    **options: Any,
) -> LandmarkEmbedding:
    """Fit a :class:`LandmarkEmbedding` in memory (see the class for the parameters).

    Returns
    -------
    LandmarkEmbedding
        Fitted: ``landmark_index_``, ``landmark_embedding_``, ``transform(V_block) -> (b, 2)``,
        ``info_``.
    """
    model = LandmarkEmbedding(
        n_landmarks=n_landmarks,
        perplexity=perplexity,
        n_iter=n_iter,
        kernel_power=kernel_power,
        grid_size=grid_size,
        random_state=random_state,
        n_jobs=n_jobs,
        **options,
    )
    return model.fit(V, keys=keys)


def embed(
    V: np.ndarray,
    *,
    exact_max_n: int = 5000,
    n_landmarks: int = 2000,
    perplexity: float = 30.0,
    n_iter: int = 750,
    kernel_power: int = 2,
    grid_size: int = 2000,
    random_state: int = 0,
    n_jobs: int = 1,
    keys: np.ndarray | None = None,
    theta: float = 0.5,
    initialization: str = "random",
) -> tuple[np.ndarray, dict[str, Any]]:
    """2-D t-SNE of the effect vectors: exact for ``n <= exact_max_n``, else landmarks.

    Parameters
    ----------
    V : ndarray, shape (n, d)
        Effect vectors (:func:`effect_matrix`).
    exact_max_n : int
        Largest n embedded exactly (full n x n distances).
    n_landmarks, grid_size, keys
        Landmark path (:class:`LandmarkEmbedding`).
    perplexity, n_iter, kernel_power, random_state, n_jobs, theta, initialization
        As in :func:`embed_exact`.

    Returns
    -------
    Y : ndarray, shape (n, 2)
        Landmarks keep their fitted positions; every other unit is placed from the codebook.
    info : dict
        Effective settings, ``info["path"]`` in {"exact", "landmark"}.
    """
    V = _check_vectors(V)
    exact_max_n = _check_int("exact_max_n", exact_max_n, 4)
    if V.shape[0] <= exact_max_n:
        return embed_exact(
            V,
            perplexity=perplexity,
            n_iter=n_iter,
            kernel_power=kernel_power,
            random_state=random_state,
            n_jobs=n_jobs,
            theta=theta,
            initialization=initialization,
        )
    model = fit_landmark_embedding(
        V,
        n_landmarks=n_landmarks,
        perplexity=perplexity,
        n_iter=n_iter,
        kernel_power=kernel_power,
        grid_size=grid_size,
        random_state=random_state,
        n_jobs=n_jobs,
        keys=keys,
        theta=theta,
        initialization=initialization,
    )
    Y = model.transform(V)
    Y[model.landmark_index_] = model.landmark_embedding_
    return Y, dict(model.info_)
