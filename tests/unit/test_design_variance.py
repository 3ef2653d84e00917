"""Design-based variances of leaf means (weights, clusters) against statsmodels WLS/OLS."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from mlearner_dist.core.design_variance import (
    Design,
    cluster_sums,
    combine_cluster_sums,
    design_pvalue,
    leaf_covariance_from_sums,
    leaf_mean_covariance,
    mean_covariance,
    wald_equal_means,
)
from mlearner_dist.core.score_test import score_test
from mlearner_dist.exceptions import InputValidationError


def _data(seed, n=600, n_leaves=3, n_clusters=40):
    rng = np.random.default_rng(seed)
    cluster = rng.integers(0, n_clusters, size=n)
    leaf = rng.integers(0, n_leaves, size=n)
    s = 0.3 * (leaf == 1) + rng.normal(size=n_clusters)[cluster] + rng.standard_exponential(n)
    w = rng.uniform(0.2, 3.0, size=n)
    return s, leaf, cluster, w


def _statsmodels(s, leaf, *, weight=None, cluster=None, cov="HC1"):
    X = pd.get_dummies(pd.Series(leaf), dtype=float).to_numpy()
    model = sm.WLS(s, X, weights=weight) if weight is not None else sm.OLS(s, X)
    if cluster is None:
        fit = model.fit(cov_type=cov)
    else:
        kw = {"groups": cluster, "use_correction": cov == "HC1"}
        fit = model.fit(cov_type="cluster", cov_kwds=kw)
    return np.asarray(fit.params), np.asarray(fit.cov_params())


@pytest.mark.parametrize("cov", ["HC0", "HC1"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("clustered", [False, True])
def test_leaf_covariance_equals_statsmodels(cov, weighted, clustered):
    s, leaf, cluster, w = _data(3)
    design = Design(cluster=cluster if clustered else None, weight=w if weighted else None)
    _, means, V, counts = leaf_mean_covariance(s, leaf, design, covariance=cov)
    b, V_sm = _statsmodels(
        s, leaf, weight=w if weighted else None, cluster=cluster if clustered else None, cov=cov
    )
    np.testing.assert_allclose(means, b, rtol=1e-10)
    np.testing.assert_allclose(V, V_sm, rtol=1e-8, atol=1e-14)
    assert counts.sum() == len(s)


@pytest.mark.parametrize("weighted", [False, True])
def test_single_mean_equals_statsmodels_cluster(weighted):
    s, _, cluster, w = _data(4)
    S = np.column_stack([s, 2 * s + np.sin(np.arange(len(s)))])
    mean, cov = mean_covariance(S, Design(cluster=cluster, weight=w if weighted else None))
    for j in range(2):
        b, V = _statsmodels(
            S[:, j], np.zeros(len(s)), weight=w if weighted else None, cluster=cluster
        )
        assert mean[j] == pytest.approx(b[0], rel=1e-12)
        assert cov[j, j] == pytest.approx(V[0, 0], rel=1e-9)


def test_default_design_is_the_unit_formula():
    s, leaf, _, _ = _data(5)
    mean, cov = mean_covariance(s)
    assert mean[0] == pytest.approx(s.mean())
    assert np.sqrt(cov[0, 0]) == pytest.approx(s.std(ddof=1) / np.sqrt(len(s)), rel=1e-12)
    # equal weights and no clusters: the score test's p-value
    p = design_pvalue(s, leaf, Design(weight=np.full(len(s), 2.0)))
    assert p == pytest.approx(score_test(s, leaf)["score"].pvalue, rel=1e-9)


def test_wald_equals_statsmodels_cluster_wald():
    s, leaf, cluster, w = _data(6, n_leaves=4)
    s = s + 0.2 * (leaf == 2)
    _, means, V, _ = leaf_mean_covariance(s, leaf, Design(cluster=cluster, weight=w))
    stat, df = wald_equal_means(means, V)
    X = pd.get_dummies(pd.Series(leaf), dtype=float).to_numpy()
    fit = sm.WLS(s, X, weights=w).fit(cov_type="cluster", cov_kwds={"groups": cluster})
    r = np.hstack([np.eye(3), -np.ones((3, 1))])
    ref = fit.wald_test(r, use_f=False, scalar=True)
    assert df == 3
    assert stat == pytest.approx(float(ref.statistic), rel=1e-8)
    assert design_pvalue(s, leaf, Design(cluster=cluster, weight=w)) == pytest.approx(
        float(ref.pvalue), rel=1e-7, abs=1e-14
    )


def test_cluster_sums_combine_across_parts():
    s, leaf, cluster, w = _data(7)
    whole = leaf_covariance_from_sums(cluster_sums(s, leaf, cluster, w))
    parts = [cluster_sums(s[i::3], leaf[i::3], cluster[i::3], w[i::3]) for i in range(3)]
    merged = leaf_covariance_from_sums(combine_cluster_sums(parts))
    for a, b in zip(whole, merged, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_fewer_clusters_than_leaves_has_fewer_df_and_one_cluster_no_test():
    rng = np.random.default_rng(8)
    s = rng.normal(size=60)
    leaf = np.repeat([0, 1, 2], 20)
    one = design_pvalue(s, leaf, Design(cluster=np.zeros(60, dtype=np.int64)))
    assert one == 1.0


def test_design_rejects_bad_weights_and_misaligned_arrays():
    with pytest.raises(InputValidationError, match="positive finite weight"):
        Design(weight=np.array([1.0, 0.0]))
    with pytest.raises(InputValidationError, match="row-align"):
        mean_covariance(np.ones(3), Design(cluster=np.array([0, 1], dtype=np.int64)))


def test_type_one_error_of_a_cluster_level_partition():
    """Leaves defined by a cluster-level covariate (whole clusters in each leaf), scores with a
    cluster random effect (ICC 0.1, clusters of 20, G = 60), no leaf difference: the unit-level
    Wald test rejects far too often, the cluster-robust one holds alpha = 0.05 (R = 400; measured
    0.3475 unit-level, 0.0625 cluster-robust, bound 0.05 + 3 sd = 0.083)."""
    R, G, m = 400, 60, 20
    cluster = np.repeat(np.arange(G), m)
    leaf = cluster % 3  # a covariate of the cluster
    rng = np.random.default_rng(2026)
    rej_unit = rej_cluster = 0
    for _ in range(R):
        s = rng.normal(scale=np.sqrt(0.1 / 0.9), size=G)[cluster] + rng.normal(size=G * m)
        rej_unit += score_test(s, leaf)["score"].pvalue < 0.05
        rej_cluster += design_pvalue(s, leaf, Design(cluster=cluster)) < 0.05
    bound = 0.05 + 3 * np.sqrt(0.05 * 0.95 / R)
    assert rej_cluster / R <= bound
    assert rej_unit / R > 0.2
