"""Distance kernel of step 2 against scipy.spatial.distance and hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist, pdist, squareform

from mlearner_dist.core.distances import (
    distance_power,
    effect_distances,
    effect_distances_blockwise,
)
from mlearner_dist.exceptions import ConfigError, MLearnerError


def test_hand_computed_one_effect() -> None:
    v = np.array([0.0, 1.0, 3.0])
    expected2 = np.array([[0.0, 1.0, 3.0], [1.0, 0.0, 2.0], [3.0, 2.0, 0.0]])
    np.testing.assert_array_equal(effect_distances(v, kernel_power=2), expected2)
    np.testing.assert_array_equal(effect_distances(v, kernel_power=4), expected2**2)


def test_hand_computed_two_effects() -> None:
    A = np.array([[0.0, 0.0], [3.0, 4.0]])
    B = np.array([[0.0, 4.0]])
    np.testing.assert_array_equal(effect_distances(A, B, kernel_power=2), [[4.0], [3.0]])
    np.testing.assert_array_equal(effect_distances(A, B, kernel_power=4), [[16.0], [9.0]])


@pytest.mark.parametrize("d", [1, 2, 3])
def test_matches_scipy(d: int) -> None:
    rng = np.random.default_rng(d)
    A = rng.normal(size=(60, d)) * np.array([1.0, 100.0, 1e-3])[:d]
    B = rng.normal(size=(25, d))
    np.testing.assert_allclose(
        effect_distances(A, B, kernel_power=2), cdist(A, B, "euclidean"), rtol=1e-13, atol=0
    )
    np.testing.assert_allclose(
        effect_distances(A, B, kernel_power=4), cdist(A, B, "sqeuclidean"), rtol=1e-13, atol=0
    )
    np.testing.assert_allclose(
        effect_distances(A, kernel_power=2), squareform(pdist(A, "euclidean")), rtol=1e-13,
        atol=0,
    )
    np.testing.assert_allclose(
        effect_distances(A, kernel_power=4), squareform(pdist(A, "sqeuclidean")), rtol=1e-13,
        atol=0,
    )


@pytest.mark.parametrize("kernel_power", [2, 4])
def test_exactly_symmetric_with_zero_diagonal(kernel_power: int) -> None:
    rng = np.random.default_rng(7)
    V = rng.normal(size=(80, 3)) * 1e3
    D = effect_distances(V, kernel_power=kernel_power)
    assert np.array_equal(D, D.T)
    assert np.all(np.diag(D) == 0.0)
    assert np.all(D[~np.eye(80, dtype=bool)] > 0)


@pytest.mark.parametrize("block_size", [1, 7, 64, 10_000])
@pytest.mark.parametrize("kernel_power", [2, 4])
def test_blockwise_equals_full_bit_for_bit(block_size: int, kernel_power: int) -> None:
    rng = np.random.default_rng(3)
    A = rng.standard_t(3, size=(131, 2))
    B = rng.standard_t(3, size=(40, 2))
    full = effect_distances(A, B, kernel_power=kernel_power)
    blocks = effect_distances_blockwise(A, B, kernel_power=kernel_power, block_size=block_size)
    assert np.array_equal(full, blocks)
    # a block computed alone is the same block of the full matrix
    assert np.array_equal(effect_distances(A[50:60], B, kernel_power=kernel_power), full[50:60])


def test_distance_power_mapping() -> None:
    assert distance_power(2) == 1
    assert distance_power(4) == 2


@pytest.mark.parametrize("bad", [1, 3, True, 2.5, "2"])
def test_bad_kernel_power(bad: object) -> None:
    with pytest.raises(ConfigError, match="kernel_power must be 2"):
        effect_distances(np.zeros(3), kernel_power=bad)  # type: ignore[arg-type]


def test_bad_inputs() -> None:
    with pytest.raises(MLearnerError, match="A has 1 row"):
        effect_distances(np.array([0.0, np.nan, 1.0]))
    with pytest.raises(MLearnerError, match="B has 1 row"):
        effect_distances(np.zeros(3), np.array([np.inf]))
    with pytest.raises(MLearnerError, match="same number of effect columns"):
        effect_distances(np.zeros((3, 2)), np.zeros((3, 1)))
    with pytest.raises(MLearnerError, match=r"A must be a \(n, d\) array"):
        effect_distances(np.zeros((2, 2, 2)))
    with pytest.raises(ConfigError, match="block_size must be >= 1"):
        effect_distances_blockwise(np.zeros(3), block_size=0)
    with pytest.raises(ConfigError, match="block_size must be a positive integer"):
        effect_distances_blockwise(np.zeros(3), block_size=2.0)  # type: ignore[arg-type]
