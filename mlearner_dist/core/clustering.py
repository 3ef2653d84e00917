"""Step 3: K-means on the 2-D embedding for every K, with restarts we control.

The restart strategy is shared by the in-memory path (scikit-learn's Lloyd) and the Dask path
(dask-ml's Lloyd), because dask-ml's ``n_init`` does not restart Lloyd and its k-means|| always
seeds from row 0:

1. ``n_init`` sets of k-means++ seeds are drawn from a *seed sample* of the embedding (at most
   ``sample_size`` points chosen by unit key, so the same on any partitioning), each with its own
   seed derived from ``random_state`` (:func:`initial_centers`);
2. every restart runs Lloyd to convergence on the seed sample (cheap, in memory), and the restart
   with the smallest within-cluster sum of squares on the sample wins (ties: the lowest index);
3. when the sample is not all the data, Lloyd continues on all points from the winning centres
   (scikit-learn in memory, dask-ml on Dask), so the expensive pass runs once per K, not n_init
   times;
4. labels are the nearest final centre, renumbered in a canonical order (by the centre's first,
   then second coordinate; :func:`canonical_labels`), and our own within-cluster sum of squares
   over all points is reported (:func:`within_cluster_ss`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from functools import lru_cache

import numpy as np
from sklearn.cluster import KMeans, kmeans_plusplus
from threadpoolctl import ThreadpoolController

from mlearner_dist.exceptions import ConfigError, MLearnerError

#: Up to this many points, Lloyd runs on one OpenMP thread: on small inputs (every seed-sample
#: restart) thread start-up and contention for shared cores cost far more than they save.
SINGLE_THREAD_MAX_N = 50_000


@lru_cache(maxsize=1)
def _controller() -> ThreadpoolController:
    # threadpoolctl scans the loaded libraries on every threadpool_limits() call (about 4 ms
    # here, 40 times per selection); one controller, built once, limits without rescanning
    return ThreadpoolController()


@contextlib.contextmanager
def _one_thread(n_points: int) -> Iterator[None]:
    """One OpenMP thread for Lloyd on up to ``SINGLE_THREAD_MAX_N`` points, else unchanged."""
    if n_points > SINGLE_THREAD_MAX_N:
        yield
        return
    with _controller().limit(limits=1, user_api="openmp"):
        yield

__all__ = [
    "assign",
    "best_restart",
    "canonical_labels",
    "check_ks",
    "initial_centers",
    "kmeans_for_k",
    "lloyd",
    "squared_distances",
    "within_cluster_ss",
]


def _check_points(Y: np.ndarray) -> np.ndarray:
    Y = np.asarray(Y, dtype=np.float64)
    if Y.ndim != 2 or Y.shape[0] == 0:
        raise MLearnerError(f"K-means needs a non-empty (n, d) array, got shape {Y.shape}")
    if not np.isfinite(Y).all():
        raise MLearnerError("K-means input has missing or non-finite values")
    return Y


def check_ks(ks: Sequence[int], n: int) -> list[int]:
    """The K range as ints, checked: not empty, every K >= 2 and at most ``n`` units.

    Raises
    ------
    ConfigError
        Empty range or a K below 2.
    MLearnerError
        More clusters than units.
    """
    ks = [int(k) for k in ks]
    if not ks:
        raise ConfigError("the K range is empty: set cluster.k_min <= cluster.k_max")
    bad = [k for k in ks if k < 2]
    if bad:
        raise ConfigError(f"K must be at least 2, got {bad}: raise cluster.k_min")
    if max(ks) > n:
        raise MLearnerError(
            f"K = {max(ks)} clusters asked of {n} units: lower cluster.k_max or use more units"
        )
    return ks


def initial_centers(
    sample: np.ndarray, k: int, n_init: int, random_state: int
) -> list[np.ndarray]:
    """``n_init`` independent sets of k-means++ seeds drawn from ``sample``.

    Parameters
    ----------
    sample : ndarray, shape (s, d)
        Seed sample (s >= k), in a fixed order (ascending unit key).
    k : int
        Number of clusters.
    n_init : int
        Number of restarts (>= 1).
    random_state : int
        Base seed; restart ``r`` of K ``k`` uses the seed sequence ``(random_state, k, r)``.

    Returns
    -------
    list of ndarray, each shape (k, d)
    """
    sample = _check_points(sample)
    if n_init < 1:
        raise ConfigError(f"cluster.n_init must be >= 1, got {n_init}")
    if sample.shape[0] < k:
        raise MLearnerError(f"the seed sample has {sample.shape[0]} points, fewer than K = {k}")
    out = []
    for r in range(n_init):
        seed = np.random.SeedSequence([int(random_state), int(k), r]).generate_state(1)[0]
        centers, _ = kmeans_plusplus(sample, n_clusters=k, random_state=int(seed))
        out.append(np.asarray(centers, dtype=np.float64))
    return out


def within_cluster_ss(Y: np.ndarray, labels: np.ndarray, centers: np.ndarray) -> float:
    """Within-cluster sum of squared Euclidean distances to the assigned centres.

    Parameters
    ----------
    Y : ndarray, shape (n, d)
    labels : ndarray of int, shape (n,)
    centers : ndarray, shape (k, d)

    Returns
    -------
    float
        Correctly rounded (``math.fsum``), so any split of the units into blocks whose
        :func:`squared_distances` are summed exactly gives the same bits.
    """
    return math.fsum(squared_distances(Y, labels, centers).tolist())


def squared_distances(Y: np.ndarray, labels: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Squared Euclidean distance of every point to its assigned centre.

    Parameters
    ----------
    Y : ndarray, shape (n, d)
    labels : ndarray of int, shape (n,)
    centers : ndarray, shape (k, d)

    Returns
    -------
    ndarray, shape (n,)
        ``sum_j (Y[i, j] - centers[labels[i], j]) ** 2``, summed over j in a fixed order.
    """
    Y = np.asarray(Y, dtype=np.float64)
    diff = Y - np.asarray(centers, dtype=np.float64)[np.asarray(labels, dtype=np.int64)]
    out = np.zeros(Y.shape[0])
    for j in range(Y.shape[1]):
        out += diff[:, j] * diff[:, j]
    return out


def canonical_labels(centers: np.ndarray) -> np.ndarray:
    """Permutation that renumbers clusters by their centre (first, then second coordinate).

    Parameters
    ----------
    centers : ndarray, shape (k, d)

    Returns
    -------
    ndarray of int, shape (k,)
        ``new_label[old_label]``.
    """
    centers = np.asarray(centers, dtype=np.float64)
    order = np.lexsort(tuple(centers[:, j] for j in range(centers.shape[1] - 1, -1, -1)))
    new = np.empty(len(order), dtype=np.int64)
    new[order] = np.arange(len(order))
    return new


def lloyd(Y: np.ndarray, init: np.ndarray, max_iter: int) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd iterations from fixed seeds (scikit-learn; one OpenMP thread up to
    ``SINGLE_THREAD_MAX_N`` points, which gives the same result as several threads).

    Parameters
    ----------
    Y : ndarray, shape (n, d)
    init : ndarray, shape (k, d)
    max_iter : int

    Returns
    -------
    labels : ndarray of int, shape (n,)
    centers : ndarray, shape (k, d)
    """
    km = KMeans(
        n_clusters=init.shape[0], init=init, n_init=1, max_iter=int(max_iter),
        algorithm="lloyd", tol=1e-4,
    )
    with _one_thread(Y.shape[0]):
        km.fit(Y)
    return km.labels_.astype(np.int64), np.asarray(km.cluster_centers_, dtype=np.float64)


def kmeans_for_k(
    Y: np.ndarray,
    ks: Sequence[int],
    *,
    n_init: int = 10,
    max_iter: int = 50,
    random_state: int = 0,
    sample_order: np.ndarray | None = None,
    sample_size: int = 20_000,
) -> dict[int, tuple[np.ndarray, np.ndarray, float]]:
    """K-means for every K with our restart strategy (module docstring).

    Parameters
    ----------
    Y : ndarray, shape (n, d)
        Points (the embedding).
    ks : sequence of int
        Numbers of clusters (each >= 2).
    n_init : int
        Restarts per K.
    max_iter : int
        Lloyd iterations per restart.
    random_state : int
        Seed of the k-means++ seeds.
    sample_order : ndarray, shape (n,), optional
        Sort keys (unit keys) that choose the seed sample: the ``sample_size`` smallest. Default:
        row order.
    sample_size : int
        Size of the seed sample.

    Returns
    -------
    dict
        ``{k: (labels (n,), centers (k, d), wcss)}`` with canonical labels.
    """
    Y = _check_points(Y)
    ks = check_ks(ks, Y.shape[0])
    if sample_order is None:
        idx = np.arange(min(sample_size, Y.shape[0]))
    else:
        idx = np.argsort(np.asarray(sample_order), kind="stable")[:sample_size]
    sample = Y[idx]
    whole = sample.shape[0] == Y.shape[0]
    out: dict[int, tuple[np.ndarray, np.ndarray, float]] = {}
    for k in ks:
        centers = best_restart(sample, k, n_init=n_init, max_iter=max_iter,
                               random_state=random_state)
        if not whole:
            _, centers = lloyd(Y, centers, max_iter)
        labels, centers = assign(Y, centers)
        out[k] = (labels, centers, within_cluster_ss(Y, labels, centers))
    return out


def best_restart(
    sample: np.ndarray, k: int, *, n_init: int, max_iter: int, random_state: int
) -> np.ndarray:
    """Centres of the best of ``n_init`` k-means++ / Lloyd restarts on the seed sample.

    Parameters
    ----------
    sample : ndarray, shape (s, d)
    k, n_init, max_iter, random_state
        As in :func:`kmeans_for_k`.

    Returns
    -------
    ndarray, shape (k, d)
    """
    best: tuple[np.ndarray, float] | None = None
    with _one_thread(sample.shape[0]):  # once for all restarts (lloyd's own limit is then a no-op)
        for init in initial_centers(sample, k, n_init, random_state):
            labels, centers = lloyd(sample, init, max_iter)
            w = within_cluster_ss(sample, labels, centers)
            if best is None or w < best[1]:
                best = (centers, w)
    assert best is not None
    return best[0]


def assign(Y: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest-centre labels in canonical order, and the centres in that order.

    Parameters
    ----------
    Y : ndarray, shape (n, d)
    centers : ndarray, shape (k, d)

    Returns
    -------
    labels : ndarray of int, shape (n,)
    centers : ndarray, shape (k, d)
        Reordered so that ``centers[label]`` is the centre of ``label``.
    """
    centers = np.asarray(centers, dtype=np.float64)
    perm = canonical_labels(centers)
    ordered = np.empty_like(centers)
    ordered[perm] = centers
    Y = np.asarray(Y, dtype=np.float64)
    d2 = np.zeros((Y.shape[0], ordered.shape[0]))
    for j in range(Y.shape[1]):
        diff = Y[:, j, None] - ordered[None, :, j]
        d2 += diff * diff
    return np.argmin(d2, axis=1).astype(np.int64), ordered
