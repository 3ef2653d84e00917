"""Step 2a: distances between effect vectors, full or block by block.

openTSNE (like Rtsne) treats a supplied matrix as *distances* and squares it inside its Gaussian
kernel: the conditional affinity of unit j for unit i is

    p(j | i)  proportional to  exp(-D_ij ** 2 / (2 sigma_i ** 2))

(``openTSNE._tsne.compute_gaussian_perplexity`` evaluates ``exp(-distances[i, j] ** 2 * tau / 2)``
for ``metric="precomputed"`` exactly as for its own Euclidean neighbours). The ``kernel_power`` of
the embedding is therefore the power of the effect difference the kernel finally acts on:

- ``kernel_power=2`` (standard t-SNE, our default): supply ``D_ij = ||v_i - v_j||`` (Euclidean); the
  kernel acts on ``||v_i - v_j|| ** 2``.
- ``kernel_power=4`` (the reference): supply ``D_ij = ||v_i - v_j|| ** 2``, as the reference's R
  code does before calling Rtsne; the kernel acts on ``||v_i - v_j|| ** 4``.

Differences are taken coordinate by coordinate (never through ``|a|^2 + |b|^2 - 2 a.b``), so the
matrices are exactly symmetric with an exactly zero diagonal, and a block computed alone equals the
same block of the full matrix bit for bit.
"""

from __future__ import annotations

import logging

import numpy as np

from mlearner_dist.exceptions import ConfigError, MLearnerError

__all__ = [
    "KERNEL_POWERS",
    "distance_power",
    "effect_distances",
    "effect_distances_blockwise",
]

logger = logging.getLogger(__name__)

#: Allowed ``kernel_power`` values and the power of ``||v_i - v_j||`` supplied to openTSNE for each.
KERNEL_POWERS: dict[int, int] = {2: 1, 4: 2}


def distance_power(kernel_power: int) -> int:
    """Power of the Euclidean effect difference to supply so the kernel acts on ``kernel_power``.

    Parameters
    ----------
    kernel_power : {2, 4}
        Power of ``||v_i - v_j||`` inside the Gaussian kernel: 2 is standard t-SNE, 4 reproduces
        the reference (Rtsne on a matrix of squared differences).

    Returns
    -------
    int
        1 (supply Euclidean distances) for ``kernel_power=2``; 2 (squared) for ``kernel_power=4``.
    """
    if isinstance(kernel_power, bool) or kernel_power not in KERNEL_POWERS:
        raise ConfigError(
            f"kernel_power must be 2 (standard t-SNE) or 4 (the reference's Rtsne behaviour), "
            f"got {kernel_power!r}"
        )
    return KERNEL_POWERS[int(kernel_power)]


def _as_matrix(name: str, a: np.ndarray) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise MLearnerError(
            f"{name} must be a (n, d) array of effect vectors with d >= 1, got shape {arr.shape}"
        )
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).any(axis=1).sum())
        raise MLearnerError(
            f"{name} has {bad} row(s) with NaN or infinite effects: drop or impute them first"
        )
    return arr


def _distance_block(A: np.ndarray, B: np.ndarray, power: int) -> np.ndarray:
    """``||a_i - b_j|| ** power`` for clean (na, d) and (nb, d) float64 arrays."""
    sq = np.zeros((A.shape[0], B.shape[0]), dtype=np.float64)
    for c in range(A.shape[1]):
        diff = A[:, c, None] - B[None, :, c]
        sq += diff * diff
    if power == 2:
        return sq
    return np.sqrt(sq, out=sq)


def effect_distances(
    A: np.ndarray, B: np.ndarray | None = None, *, kernel_power: int = 2
) -> np.ndarray:
    """Distances between effect vectors, in the form openTSNE's precomputed metric expects.

    Parameters
    ----------
    A : ndarray, shape (na, d) or (na,)
        Effect vectors (one row per unit).
    B : ndarray, shape (nb, d) or (nb,), optional
        Second set (e.g. landmarks); ``A`` itself when omitted.
    kernel_power : {2, 4}
        2: ``D_ij = ||a_i - b_j||``; 4: ``D_ij = ||a_i - b_j|| ** 2`` (see the module docstring).

    Returns
    -------
    ndarray, shape (na, nb)
        float64 distances; symmetric with a zero diagonal when ``B`` is omitted.
    """
    power = distance_power(kernel_power)
    A2 = _as_matrix("A", A)
    B2 = A2 if B is None else _as_matrix("B", B)
    if B2.shape[1] != A2.shape[1]:
        raise MLearnerError(
            f"A and B must have the same number of effect columns, got {A2.shape[1]} and "
            f"{B2.shape[1]}"
        )
    return _distance_block(A2, B2, power)


def effect_distances_blockwise(
    A: np.ndarray,
    B: np.ndarray | None = None,
    *,
    kernel_power: int = 2,
    block_size: int = 2048,
) -> np.ndarray:
    """The same matrix as :func:`effect_distances`, computed ``block_size`` rows of ``A`` at a time.

    The numpy twin of the Dask backend's blockwise computation: peak extra memory is one block of
    ``block_size x nb`` values. Every entry is computed by the same arithmetic as the full version,
    so the result is identical.

    Parameters
    ----------
    A, B, kernel_power
        As in :func:`effect_distances`.
    block_size : int
        Rows of ``A`` per block (>= 1).

    Returns
    -------
    ndarray, shape (na, nb)
    """
    if isinstance(block_size, bool) or not isinstance(block_size, int | np.integer):
        raise ConfigError(f"block_size must be a positive integer, got {block_size!r}")
    if block_size < 1:
        raise ConfigError(f"block_size must be >= 1, got {block_size}")
    power = distance_power(kernel_power)
    A2 = _as_matrix("A", A)
    B2 = A2 if B is None else _as_matrix("B", B)
    if B2.shape[1] != A2.shape[1]:
        raise MLearnerError(
            f"A and B must have the same number of effect columns, got {A2.shape[1]} and "
            f"{B2.shape[1]}"
        )
    out = np.empty((A2.shape[0], B2.shape[0]), dtype=np.float64)
    for start in range(0, A2.shape[0], block_size):
        stop = min(start + block_size, A2.shape[0])
        out[start:stop] = _distance_block(A2[start:stop], B2, power)
    return out
