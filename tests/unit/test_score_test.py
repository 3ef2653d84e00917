"""Robust Wald test of equal leaf means of the doubly robust scores."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from scipy import stats

from mlearner_dist.core.score_test import (
    combine_score_aggregates,
    score_aggregates,
    score_pvalue,
    score_test,
    score_test_from_aggregates,
)
from mlearner_dist.exceptions import InputValidationError, MLearnerError, SmallSubgroupWarning


def _statsmodels_wald(s, leaf, cov):
    """Joint Wald test that every leaf coefficient of ``s ~ C(leaf)`` is zero, HC covariance."""
    df = pd.DataFrame({"s": s, "leaf": leaf})
    fit = smf.ols("s ~ C(leaf)", df).fit(cov_type=cov)
    names = [c for c in fit.params.index if c.startswith("C(leaf)")]
    r = np.zeros((len(names), len(fit.params)))
    for i, c in enumerate(names):
        r[i, list(fit.params.index).index(c)] = 1.0
    w = fit.wald_test(r, use_f=False, scalar=True)
    return float(w.statistic), float(w.pvalue), len(names)


@pytest.mark.parametrize("cov", ["HC0", "HC1"])
@pytest.mark.parametrize(
    ("seed", "n", "n_leaves", "offset", "effect"),
    [(0, 300, 2, 0.0, 0.3), (1, 500, 4, 1e3, 0.2), (2, 120, 5, -50.0, 0.0), (3, 2000, 3, 0.0, 0.1)],
)
def test_wald_equals_statsmodels_hc(cov, seed, n, n_leaves, offset, effect):
    rng = np.random.default_rng(seed)
    leaf = rng.choice(n_leaves, size=n)
    # heteroskedastic, skewed scores: the case the robust variance is for
    s = offset + effect * (leaf == 1) + rng.standard_exponential(n) * (1 + leaf)
    stat, p, df = _statsmodels_wald(s, leaf, cov)
    res = score_test({"total": s}, leaf, covariance=cov)["total"]
    assert res.df == df == n_leaves - 1
    assert res.statistic == pytest.approx(stat, rel=1e-8)
    assert res.pvalue == pytest.approx(p, rel=1e-7, abs=1e-12)
    assert res.n_units == n and res.n_leaves == n_leaves


def test_statistic_is_the_contrast_form():
    """W = (Rb)'(RVR')^{-1}(Rb) for the leaf means b and V = diag(v) (HC0), any contrasts R."""
    rng = np.random.default_rng(5)
    leaf = rng.choice(["a", "b", "c", "d"], size=400)
    s = rng.normal(size=400) + (leaf == "c") * 0.3
    res = score_test(s, leaf, covariance="HC0")["score"]
    b = np.array([s[leaf == k].mean() for k in "abcd"])
    v = np.array([((s[leaf == k] - s[leaf == k].mean()) ** 2).sum() for k in "abcd"])
    v = v / np.array([(leaf == k).sum() for k in "abcd"]) ** 2
    r = np.array([[1, -1, 0, 0], [0, 1, -1, 0], [0, 0, 1, -1]], dtype=float)
    d = r @ b
    w = float(d @ np.linalg.solve(r @ np.diag(v) @ r.T, d))
    assert res.statistic == pytest.approx(w, rel=1e-10)
    assert res.pvalue == pytest.approx(stats.chi2.sf(w, 3), rel=1e-10)
    assert res.leaf_means["c"] == pytest.approx(b[2])
    assert res.leaf_se["a"] == pytest.approx(np.sqrt(v[0]))


def test_effects_table_scores_are_tested_separately_and_nan_scores_skipped():
    rng = np.random.default_rng(6)
    n = 600
    leaf = rng.integers(0, 3, n)
    table = pd.DataFrame(
        {
            "unit_id": np.arange(n),
            "indirect": rng.normal(size=n),
            "score_total": rng.normal(size=n) + (leaf == 2),
            "score_indirect": rng.normal(size=n),
            "score_direct": np.full(n, np.nan),  # e.g. absent
        }
    )
    out = score_test(table, leaf)
    assert sorted(out) == ["indirect", "total"]
    assert out["total"].pvalue < 1e-6
    assert out["indirect"].pvalue > 1e-3
    assert out["total"].to_dict()["df"] == 2


def test_aggregates_from_partitions_and_from_sums_give_the_same_test():
    rng = np.random.default_rng(7)
    n = 1000
    leaf = rng.choice(["x", "y", "z"], size=n)
    s = {"indirect": 50.0 + rng.normal(size=n) + 0.2 * (leaf == "y"), "total": rng.normal(size=n)}
    whole = score_aggregates(s, leaf)
    assert list(whole.columns) == ["score", "leaf", "n", "sum", "sumsq", "mean", "m2"]
    parts = [score_aggregates({k: v[i::3] for k, v in s.items()}, leaf[i::3]) for i in range(3)]
    merged = combine_score_aggregates(parts)
    pd.testing.assert_frame_equal(
        merged.drop(columns=["sum", "sumsq"]),
        whole.drop(columns=["sum", "sumsq"]),
        check_exact=False,
        rtol=1e-9,
    )
    for name in ("indirect", "total"):
        p_whole = score_test_from_aggregates(whole, score=name).pvalue
        p_merged = score_test_from_aggregates(merged, score=name).pvalue
        p_sums = score_test_from_aggregates(whole.drop(columns=["mean", "m2"]), score=name).pvalue
        assert p_merged == pytest.approx(p_whole, rel=1e-8)
        assert p_sums == pytest.approx(p_whole, rel=1e-6)
    assert score_pvalue(s["indirect"], leaf) == pytest.approx(
        score_test_from_aggregates(whole, score="indirect").pvalue
    )


def test_invariant_to_a_constant_shift_and_calibrated_under_the_null():
    rng = np.random.default_rng(8)
    leaf = rng.integers(0, 4, 500)
    s = rng.normal(size=500)
    assert score_pvalue(s + 123.0, leaf) == pytest.approx(score_pvalue(s, leaf), rel=1e-9)
    # 400 null data sets with heteroskedastic scores: rejection rate at 5% within 3 sd
    rej = 0
    for _ in range(400):
        lf = rng.integers(0, 4, 400)
        sc = rng.standard_t(5, 400) * (1 + lf)
        rej += score_pvalue(sc, lf) < 0.05
    rate = rej / 400
    assert rate <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / 400)


@pytest.mark.parametrize("seed", range(5))
def test_fast_pvalue_equals_the_aggregate_test(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 400))
    leaf = rng.choice(["p", "q", "r", "s"], size=n, p=[0.5, 0.3, 0.19, 0.01])
    s = rng.standard_exponential(n) + (leaf == "q") * 0.3
    for cov in ("HC0", "HC1"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SmallSubgroupWarning)
            want = score_test(s, leaf, covariance=cov)["score"].pvalue
        assert score_pvalue(s, leaf, covariance=cov) == pytest.approx(want, rel=1e-9, abs=1e-15)
        codes = pd.factorize(leaf)[0]
        assert score_pvalue(s, codes, covariance=cov) == pytest.approx(want, rel=1e-9, abs=1e-15)


def test_degenerate_cases():
    # one leaf: nothing to test
    r = score_test(np.arange(10.0), np.zeros(10))["score"]
    assert r.pvalue == 1.0 and r.df == 0
    # two zero-variance leaves with different means are infinite evidence
    s = np.array([1.0, 1.0, 1.0, 2.0, 2.0, 0.5, -0.4, 0.2])
    lf = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    r = score_test(s, lf)["score"]
    assert r.pvalue == 0.0 and r.to_dict()["statistic"] is None
    # one zero-variance leaf: its mean is the reference, W = sum_others (m - ref)^2 / v
    s, lf = s[[0, 1, 2, 5, 6, 7]], lf[[0, 1, 2, 5, 6, 7]]
    r = score_test(s, lf, covariance="HC0")["score"]
    v = ((s[3:] - s[3:].mean()) ** 2).sum() / 9
    assert r.statistic == pytest.approx((s[3:].mean() - 1.0) ** 2 / v)
    # all constant and equal: no evidence
    assert score_pvalue(np.ones(6), np.array([0, 0, 0, 1, 1, 1])) == 1.0
    # a singleton leaf is left out with a warning
    s = np.r_[np.random.default_rng(0).normal(size=20), 9.0]
    lf = np.r_[np.repeat([0, 1], 10), 2]
    with pytest.warns(SmallSubgroupWarning, match=r"leaves \[2\] have fewer than 2 units"):
        r = score_test(s, lf)["score"]
    assert r.n_leaves == 2 and r.n_units == 20


def test_bad_input_is_reported_clearly():
    with pytest.raises(InputValidationError, match="score 'score' has 3 values but leaf has 4"):
        score_test(np.zeros(3), np.zeros(4))
    with pytest.raises(InputValidationError, match="'total' has 1 missing/non-finite"):
        score_test({"total": [1.0, np.nan]}, [0, 1])
    with pytest.raises(InputValidationError, match="leaf has missing values"):
        score_test([1.0, 2.0], [0, None])
    with pytest.raises(MLearnerError, match="covariance='HC3'"):
        score_test([1.0, 2.0], [0, 1], covariance="HC3")
    agg = score_aggregates({"a": [1.0, 2.0], "b": [3.0, 1.0]}, [0, 1])
    with pytest.raises(MLearnerError, match="say which one with score="):
        score_test_from_aggregates(agg)
    with pytest.raises(MLearnerError, match=r"score='c' is not in the aggregates"):
        score_test_from_aggregates(agg, score="c")
    with pytest.raises(InputValidationError, match="repeated leaves"):
        score_test_from_aggregates(pd.concat([agg, agg]), score="a")
    with pytest.raises(InputValidationError, match="lacks column"):
        score_test_from_aggregates(agg[["score", "leaf", "n"]], score="a")
    with pytest.warns(SmallSubgroupWarning):
        assert score_test_from_aggregates(agg, score="a").pvalue == 1.0  # n=1 leaves: untestable


def test_score_pvalue_with_a_cluster_design_equals_statsmodels_and_the_aggregates():
    import statsmodels.api as sm

    from mlearner_dist.core.design_variance import (
        Design,
        cluster_sums,
        combine_cluster_sums,
    )
    from mlearner_dist.core.score_test import score_test_from_cluster_sums

    rng = np.random.default_rng(11)
    n = 900
    cluster = rng.integers(0, 45, size=n)
    leaf = rng.integers(0, 3, size=n)
    s = 0.1 * (leaf == 2) + rng.normal(size=45)[cluster] + rng.normal(size=n)
    p = score_pvalue(s, leaf, design=Design(cluster=cluster))
    X = pd.get_dummies(pd.Series(leaf), dtype=float).to_numpy()
    fit = sm.OLS(s, X).fit(cov_type="cluster", cov_kwds={"groups": cluster})
    r = np.array([[1.0, 0.0, -1.0], [0.0, 1.0, -1.0]])
    assert p == pytest.approx(float(fit.wald_test(r, use_f=False, scalar=True).pvalue), rel=1e-7)
    parts = [cluster_sums(s[i::4], leaf[i::4], cluster[i::4]) for i in range(4)]
    res = score_test_from_cluster_sums(combine_cluster_sums(parts), score="total")
    assert res.pvalue == pytest.approx(p, rel=1e-9) and res.covariance == "CR1"
    assert res.n_units == n and res.df == 2
