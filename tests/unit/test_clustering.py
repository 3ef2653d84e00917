"""Step 3 in memory: K-means restarts, canonical labels, WCSS."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score
from threadpoolctl import threadpool_limits

from mlearner_dist.core.clustering import (
    assign,
    canonical_labels,
    initial_centers,
    kmeans_for_k,
    within_cluster_ss,
)
from mlearner_dist.exceptions import ConfigError, MLearnerError


def blobs(n_per: list[int], centers: list[tuple[float, float]], sd: float, seed: int):
    rng = np.random.default_rng(seed)
    Y = np.vstack([rng.normal(c, sd, size=(m, 2)) for m, c in zip(n_per, centers, strict=True)])
    truth = np.repeat(np.arange(len(n_per)), n_per)
    return Y, truth


def test_hand_computed_wcss_and_canonical_order() -> None:
    Y = np.array([[0.0, 0.0], [0.0, 2.0], [10.0, 0.0], [12.0, 0.0]])
    labels, centers = assign(Y, np.array([[11.0, 0.0], [0.0, 1.0]]))
    assert labels.tolist() == [0, 0, 1, 1]  # renumbered: the centre with smaller x is 0
    np.testing.assert_array_equal(centers, [[0.0, 1.0], [11.0, 0.0]])
    assert within_cluster_ss(Y, labels, centers) == 4.0
    # ties on the first coordinate are broken by the second
    assert canonical_labels(np.array([[1.0, 5.0], [1.0, -5.0], [0.0, 9.0]])).tolist() == [2, 1, 0]


def test_wcss_matches_direct_computation() -> None:
    Y, _ = blobs([300, 200, 100], [(0, 0), (4, 0), (0, 5)], 1.0, 1)
    for k, (labels, centers, wcss) in kmeans_for_k(Y, [2, 3, 4], n_init=5).items():
        assert centers.shape == (k, 2)
        d2 = cdist(Y, centers, "sqeuclidean")
        assert np.array_equal(labels, d2.argmin(axis=1))
        assert wcss == pytest.approx(d2.min(axis=1).sum(), rel=1e-12)
        # converged Lloyd: centres are the means of their clusters
        means = np.array([Y[labels == j].mean(axis=0) for j in range(k)])
        np.testing.assert_allclose(centers, means, atol=1e-3)


def test_restarts_beat_or_equal_a_single_kmeanspp_start() -> None:
    # nine blobs of unequal size on a grid: single k-means++ starts often merge two blobs
    grid = [(3.0 * i, 3.0 * j) for i in range(3) for j in range(3)]
    Y, truth = blobs([60, 20, 150, 40, 90, 30, 120, 50, 70], grid, 0.6, 2)
    ours = kmeans_for_k(Y, [9], n_init=10, random_state=0)[9]
    with threadpool_limits(limits=1, user_api="openmp"):
        singles = [KMeans(9, init="k-means++", n_init=1, max_iter=50, random_state=s).fit(Y)
                   .inertia_ for s in range(20)]
    assert all(ours[2] <= w * (1 + 1e-9) for w in singles)
    assert max(singles) > ours[2] * 1.05  # some single starts do get stuck
    assert adjusted_rand_score(ours[0], truth) > 0.95
    # best of 10 includes restart 0, the n_init=1 run
    one = kmeans_for_k(Y, [9], n_init=1, random_state=0)[9]
    assert ours[2] <= one[2]


def test_labels_are_invariant_to_row_order() -> None:
    Y, _ = blobs([200, 150, 100], [(0, 0), (3, 1), (1, 4)], 1.2, 3)
    keys = np.random.default_rng(0).random(Y.shape[0])
    perm = np.random.default_rng(1).permutation(Y.shape[0])
    for sample_size in (10_000, 120):  # all in the seed sample; a seed sample plus full Lloyd
        a = kmeans_for_k(Y, [2, 3, 5], sample_order=keys, sample_size=sample_size)
        b = kmeans_for_k(Y[perm], [2, 3, 5], sample_order=keys[perm], sample_size=sample_size)
        for k in a:
            assert np.array_equal(a[k][0][perm], b[k][0])
            np.testing.assert_allclose(a[k][1], b[k][1], rtol=1e-12)
            # canonical: centres sorted by first coordinate
            assert np.all(np.diff(a[k][1][:, 0]) >= 0)


def test_seed_sample_path_matches_whole_path_on_separated_data() -> None:
    Y, truth = blobs([400, 300, 300], [(0, 0), (10, 0), (0, 10)], 0.5, 4)
    keys = np.random.default_rng(2).random(Y.shape[0])
    whole = kmeans_for_k(Y, [3], sample_order=keys)[3]
    part = kmeans_for_k(Y, [3], sample_order=keys, sample_size=50)[3]
    assert np.array_equal(whole[0], part[0])
    assert adjusted_rand_score(whole[0], truth) == 1.0
    assert part[2] == pytest.approx(whole[2], rel=1e-9)


def test_initial_centers_are_reproducible_and_distinct() -> None:
    Y, _ = blobs([100, 100], [(0, 0), (5, 5)], 1.0, 5)
    a = initial_centers(Y, 3, 4, random_state=7)
    b = initial_centers(Y, 3, 4, random_state=7)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert len({x.tobytes() for x in a}) == 4
    rows = {tuple(r) for r in Y}
    assert all(tuple(c) in rows for x in a for c in x)  # k-means++ seeds are data points


def test_bad_inputs() -> None:
    Y = np.zeros((5, 2))
    with pytest.raises(ConfigError, match="K range is empty"):
        kmeans_for_k(Y, [])
    with pytest.raises(ConfigError, match="K must be at least 2"):
        kmeans_for_k(Y, [1, 2])
    with pytest.raises(MLearnerError, match="K = 6 clusters asked of 5 units"):
        kmeans_for_k(Y, [6])
    with pytest.raises(MLearnerError, match="non-finite"):
        kmeans_for_k(np.array([[0.0, np.nan]] * 3), [2])
    with pytest.raises(MLearnerError, match="non-empty"):
        kmeans_for_k(np.zeros((0, 2)), [2])
    with pytest.raises(ConfigError, match="n_init must be >= 1"):
        initial_centers(Y, 2, 0, 0)
