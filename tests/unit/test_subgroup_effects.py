"""Per-subgroup effects: DR score averages (adjusted), the reference's regressions (unadjusted)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from statsmodels.stats.mediation import Mediation

from mlearner_dist.core.roles import Roles
from mlearner_dist.core.subgroup_effects import (
    adjusted_subgroup_effects,
    unadjusted_subgroup_effects,
)
from mlearner_dist.exceptions import InputValidationError, MLearnerError, SmallSubgroupWarning

ROLES = Roles("id", "T", "Y", ("M",), ("X",))
Z975 = 1.959963984540054


def test_adjusted_effects_equal_hand_computation():
    scores = pd.DataFrame(
        {
            "score_indirect": [1.0, 3.0, 2.0, 4.0, 10.0, 12.0],
            "score_direct": [0.0, 1.0, 1.0, 2.0, -1.0, 1.0],
            "score_total": [1.0, 4.0, 3.0, 6.0, 9.0, 13.0],
        }
    )
    leaf = np.array([1, 1, 1, 1, 0, 0])
    out = adjusted_subgroup_effects(scores, leaf).set_index("leaf")
    assert out.loc[1, "n"] == 4 and out.loc[0, "n"] == 2
    # leaf 1: indirect scores 1, 3, 2, 4: mean 2.5, sd sqrt(5/3), se sqrt(5/3)/2
    se = np.sqrt(5 / 3) / 2
    assert out.loc[1, "indirect"] == pytest.approx(2.5)
    assert out.loc[1, "indirect_se"] == pytest.approx(se)
    assert out.loc[1, "indirect_ci_low"] == pytest.approx(2.5 - Z975 * se)
    assert out.loc[1, "indirect_ci_high"] == pytest.approx(2.5 + Z975 * se)
    assert out.loc[1, "total"] == pytest.approx(3.5)
    assert out.loc[1, "direct"] == pytest.approx(1.0)
    # ratio 2.5 / 3.5, influence phi_i = (si - 2.5 - r (st - 3.5)) / 3.5
    r = 2.5 / 3.5
    phi = (np.array([1, 3, 2, 4]) - 2.5 - r * (np.array([1, 4, 3, 6]) - 3.5)) / 3.5
    assert out.loc[1, "prop_mediated"] == pytest.approx(r)
    assert out.loc[1, "prop_mediated_se"] == pytest.approx(phi.std(ddof=1) / 2)
    # leaf 0: total scores 9, 13: mean 11, se 2, CI (7.08, 14.9) excludes 0
    assert out.loc[0, "total_ci_low"] == pytest.approx(11 - Z975 * 2)
    assert out.loc[0, "prop_mediated"] == pytest.approx(11 / 11)
    assert out.loc[1, "note"] == ""


def test_prop_mediated_is_nan_when_total_interval_covers_zero():
    scores = pd.DataFrame(
        {
            "score_indirect": [1.0, -1.0, 2.0, 0.5],
            "score_direct": [0.0, 0.0, -2.0, 0.0],
            "score_total": [1.0, -1.0, 0.0, 0.5],
        }
    )
    out = adjusted_subgroup_effects(scores, np.zeros(4, dtype=int))
    assert out.loc[0, "total_ci_low"] < 0 < out.loc[0, "total_ci_high"]
    assert np.isnan(out.loc[0, "prop_mediated"]) and np.isnan(out.loc[0, "prop_mediated_ci_low"])
    assert "covers 0" in out.loc[0, "note"]


def test_adjusted_without_mediator_and_small_leaves():
    scores = pd.DataFrame({"score_total": [1.0, 2.0, 3.0, 5.0], "score_indirect": np.nan})
    with pytest.warns(SmallSubgroupWarning, match=r"leaves \[7\]"):
        out = adjusted_subgroup_effects(scores, np.array([3, 3, 3, 7])).set_index("leaf")
    assert out.loc[3, "total"] == pytest.approx(2.0)
    assert np.isnan(out.loc[3, "indirect"]) and np.isnan(out.loc[3, "prop_mediated"])
    assert out.loc[7, "total"] == 5.0 and np.isnan(out.loc[7, "total_ci_low"])
    assert "only 1 units" in out.loc[7, "note"]


def test_delta_method_interval_covers_the_true_ratio():
    rng = np.random.default_rng(21)
    sims, n, covered = 300, 400, 0
    cov = [[1.0, 0.6], [0.6, 1.5]]
    for _ in range(sims):
        s = rng.multivariate_normal([0.5, 1.0], cov, size=n)
        out = adjusted_subgroup_effects(
            pd.DataFrame({"score_indirect": s[:, 0], "score_total": s[:, 1]}),
            np.zeros(n, dtype=int),
        )
        covered += out.loc[0, "prop_mediated_ci_low"] <= 0.5 <= out.loc[0, "prop_mediated_ci_high"]
    rate = covered / sims
    sd = np.sqrt(0.95 * 0.05 / sims)
    assert 0.95 - 3 * sd <= rate <= 0.95 + 3 * sd


def test_adjusted_bad_inputs():
    with pytest.raises(InputValidationError, match="score_total"):
        adjusted_subgroup_effects(pd.DataFrame({"x": [1.0]}), [0])
    with pytest.raises(InputValidationError, match="leaf has 2 entries"):
        adjusted_subgroup_effects(pd.DataFrame({"score_total": [1.0]}), [0, 1])
    with pytest.raises(InputValidationError, match="non-finite"):
        adjusted_subgroup_effects(pd.DataFrame({"score_total": [1.0, np.inf]}), [0, 0])
    with pytest.raises(MLearnerError, match="level"):
        adjusted_subgroup_effects(pd.DataFrame({"score_total": [1.0, 2.0]}), [0, 0], level=95)


def _mediation_frame(n: int, seed: int, q: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=n)
    T = rng.integers(0, 2, n)
    df = pd.DataFrame({"id": np.arange(n), "X": X, "T": T})
    y = 0.3 * T + X + rng.normal(size=n)
    for j in range(q):
        m = (0.8 + 0.4 * j) * T + 0.5 * X + rng.normal(size=n)
        df[f"M{j}" if q > 1 else "M"] = m
        y = y + (1.0 - 0.5 * j) * m
    df["Y"] = y
    return df


def test_unadjusted_point_estimates_equal_ols():
    df = _mediation_frame(700, 1)
    leaf = (df["X"] > 0.3).astype(int).to_numpy()
    out = unadjusted_subgroup_effects(df, ROLES, leaf, n_bootstrap=0).set_index("leaf")
    for g in (0, 1):
        d = df[leaf == g]
        a = sm.OLS(d["M"], sm.add_constant(d[["T"]])).fit().params["T"]
        fit = sm.OLS(d["Y"], sm.add_constant(d[["T", "M"]])).fit().params
        assert out.loc[g, "indirect"] == pytest.approx(a * fit["M"], rel=1e-9)
        assert out.loc[g, "direct"] == pytest.approx(fit["T"], rel=1e-9)
        dim = d["Y"][d["T"] == 1].mean() - d["Y"][d["T"] == 0].mean()
        assert out.loc[g, "total"] == pytest.approx(dim, rel=1e-9)  # ab + c' = difference in means
        assert out.loc[g, "prop_mediated"] == pytest.approx(a * fit["M"] / dim, rel=1e-9)
        assert np.isnan(out.loc[g, "total_ci_low"])
        assert "n_bootstrap=0" in out.loc[g, "note"]


def test_unadjusted_agrees_with_statsmodels_mediation():
    df = _mediation_frame(500, 2)
    out = unadjusted_subgroup_effects(df, ROLES, np.zeros(len(df), dtype=int), n_bootstrap=0)
    outcome = sm.OLS.from_formula("Y ~ T + M", df)
    mediator = sm.OLS.from_formula("M ~ T", df)
    np.random.seed(0)  # noqa: NPY002 statsmodels' Mediation draws from the global numpy state
    med = Mediation(outcome, mediator, "T", "M").fit(method="parametric", n_rep=400)
    summary = med.summary()
    acme, ade = summary.loc["ACME (treated)", "Estimate"], summary.loc["ADE (control)", "Estimate"]
    assert out.loc[0, "indirect"] == pytest.approx(acme, abs=0.05)
    assert out.loc[0, "direct"] == pytest.approx(ade, abs=0.05)
    assert out.loc[0, "total"] == pytest.approx(summary.loc["Total effect", "Estimate"], abs=0.05)


def test_unadjusted_several_mediators_sum_the_products():
    df = _mediation_frame(600, 3, q=2)
    roles = Roles("id", "T", "Y", ("M0", "M1"), ("X",))
    out = unadjusted_subgroup_effects(df, roles, np.zeros(600, dtype=int), n_bootstrap=0)
    a = [df[m][df["T"] == 1].mean() - df[m][df["T"] == 0].mean() for m in ("M0", "M1")]
    b = sm.OLS(df["Y"], sm.add_constant(df[["T", "M0", "M1"]])).fit().params
    assert out.loc[0, "indirect"] == pytest.approx(a[0] * b["M0"] + a[1] * b["M1"], rel=1e-9)
    assert out.loc[0, "direct"] == pytest.approx(b["T"], rel=1e-9)


def test_bootstrap_intervals_match_a_loop_bootstrap():
    df = _mediation_frame(400, 4)
    out = unadjusted_subgroup_effects(
        df, ROLES, np.zeros(400, dtype=int), n_bootstrap=1000, random_state=1
    ).iloc[0]
    assert out["n_bootstrap_used"] == 1000
    rng = np.random.default_rng(99)
    ind, tot = [], []
    arr = df[["T", "M", "Y"]].to_numpy()
    for _ in range(1000):
        d = arr[rng.integers(0, 400, 400)]
        t, m, y = d[:, 0], d[:, 1], d[:, 2]
        a = m[t == 1].mean() - m[t == 0].mean()
        coef = np.linalg.lstsq(np.column_stack([np.ones(400), t, m]), y, rcond=None)[0]
        ind.append(a * coef[2])
        tot.append(a * coef[2] + coef[1])
    for name, draws in (("indirect", ind), ("total", tot)):
        lo, hi = np.quantile(draws, [0.025, 0.975])
        width = hi - lo
        assert out[f"{name}_ci_low"] == pytest.approx(lo, abs=0.12 * width)
        assert out[f"{name}_ci_high"] == pytest.approx(hi, abs=0.12 * width)
        assert out[f"{name}_ci_low"] < out[name] < out[f"{name}_ci_high"]


def test_normal_approximation_for_large_leaves_matches_exact_bootstrap():
    df = _mediation_frame(3000, 5)
    leaf = np.zeros(3000, dtype=int)
    exact = unadjusted_subgroup_effects(df, ROLES, leaf, n_bootstrap=1000).iloc[0]
    approx = unadjusted_subgroup_effects(df, ROLES, leaf, n_bootstrap=1000, exact_max_n=1000).iloc[
        0
    ]
    assert "normal approximation" in approx["note"] and exact["note"] == ""
    for name in ("indirect", "direct", "total"):
        width = exact[f"{name}_ci_high"] - exact[f"{name}_ci_low"]
        assert approx[name] == exact[name]
        assert approx[f"{name}_ci_low"] == pytest.approx(exact[f"{name}_ci_low"], abs=0.1 * width)
        assert approx[f"{name}_ci_high"] == pytest.approx(exact[f"{name}_ci_high"], abs=0.1 * width)


def test_unadjusted_without_mediator_is_a_difference_in_means():
    df = _mediation_frame(300, 6)
    roles = Roles("id", "T", "Y", (), ("X",))
    out = unadjusted_subgroup_effects(df, roles, np.zeros(300, dtype=int), n_bootstrap=500).iloc[0]
    t = df["T"] == 1
    dim = df["Y"][t].mean() - df["Y"][~t].mean()
    se = np.sqrt(df["Y"][t].var() / t.sum() + df["Y"][~t].var() / (~t).sum())
    assert out["total"] == pytest.approx(dim, rel=1e-12)
    assert out["total_ci_high"] - out["total_ci_low"] == pytest.approx(2 * Z975 * se, rel=0.15)
    assert np.isnan(out["indirect"]) and np.isnan(out["prop_mediated"])


def test_small_and_one_arm_leaves_warn_and_give_nan():
    df = _mediation_frame(200, 7)
    leaf = np.zeros(200, dtype=int)
    leaf[:5] = 1  # tiny leaf
    leaf[(df["T"] == 1).to_numpy() & (np.arange(200) >= 150)] = 2  # treated units only
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = unadjusted_subgroup_effects(df, ROLES, leaf, n_bootstrap=100).set_index("leaf")
    assert any(issubclass(w.category, SmallSubgroupWarning) for w in caught)
    assert np.isnan(out.loc[1, "indirect"]) and "only 5 units" in out.loc[1, "note"]
    assert np.isnan(out.loc[2, "total"]) and "one arm" in out.loc[2, "note"]
    assert np.isfinite(out.loc[0, "total_ci_low"])


def test_unadjusted_bad_inputs():
    df = _mediation_frame(50, 8)
    leaf = np.zeros(50, dtype=int)
    with pytest.raises(InputValidationError, match="'M'"):
        unadjusted_subgroup_effects(df.drop(columns="M"), ROLES, leaf)
    with pytest.raises(InputValidationError, match="0/1"):
        unadjusted_subgroup_effects(df.assign(T=df["T"] + 1), ROLES, leaf)
    with pytest.raises(InputValidationError, match="non-finite"):
        unadjusted_subgroup_effects(df.assign(Y=np.nan), ROLES, leaf)
    with pytest.raises(MLearnerError, match="n_bootstrap"):
        unadjusted_subgroup_effects(df, ROLES, leaf, n_bootstrap=-1)
    with pytest.raises(InputValidationError, match="leaf has 3 entries"):
        unadjusted_subgroup_effects(df, ROLES, [0, 1, 2])
    with pytest.raises(MLearnerError, match="Roles"):
        unadjusted_subgroup_effects(df, {"treatment": "T"}, leaf)


def test_adjusted_effects_with_a_design_are_cluster_robust_weighted_means():

    from mlearner_dist.core.design_variance import Design

    rng = np.random.default_rng(21)
    n = 800
    cluster = rng.integers(0, 50, size=n)
    leaf = (rng.uniform(size=n) < 0.4).astype(int)
    shock = rng.normal(size=50)[cluster]
    scores = pd.DataFrame(
        {
            "score_indirect": 0.5 + shock + rng.normal(size=n),
            "score_direct": 0.2 + rng.normal(size=n),
            "score_total": 0.7 + shock + rng.normal(size=n),
        }
    )
    w = rng.uniform(0.5, 2.0, size=n)
    design = Design(cluster=cluster, weight=w)
    table = adjusted_subgroup_effects(scores, leaf, design=design)
    for lf in (0, 1):
        row = table[table["leaf"] == lf].iloc[0]
        idx = leaf == lf
        for name in ("indirect", "total"):
            fit = sm.WLS(
                scores[f"score_{name}"][idx].to_numpy(), np.ones(idx.sum()), weights=w[idx]
            )
            fit = fit.fit(cov_type="cluster", cov_kwds={"groups": cluster[idx]})
            assert row[name] == pytest.approx(fit.params[0], rel=1e-10)
            assert row[f"{name}_se"] == pytest.approx(fit.bse[0], rel=1e-9)
        assert np.isfinite(row["prop_mediated"])
    # the default design is the unit formula, and equal weights change nothing
    plain = adjusted_subgroup_effects(scores, leaf)
    twos = adjusted_subgroup_effects(scores, leaf, design=Design(weight=np.full(n, 2.0)))
    for col in ("indirect", "indirect_se", "total_se", "prop_mediated", "prop_mediated_ci_low"):
        np.testing.assert_allclose(plain[col], twos[col], rtol=1e-10)


def test_unadjusted_effects_are_weighted_and_resample_clusters():
    rng = np.random.default_rng(31)
    g, m = 60, 15
    cl = np.repeat(np.arange(g), m)
    t_c = (np.arange(g) % 2).astype(float)
    df = pd.DataFrame({"id": np.arange(g * m), "T": t_c[cl], "school": cl})
    df["M"] = 0.8 * df["T"] + rng.normal(size=g)[cl] + rng.normal(size=g * m)
    df["Y"] = 0.5 * df["M"] + 0.3 * df["T"] + rng.normal(size=g)[cl] + rng.normal(size=g * m)
    df["w"] = rng.uniform(0.5, 3.0, size=len(df))
    leaf = np.zeros(len(df), dtype=int)
    roles = Roles("id", "T", "Y", ("M",), (), weight="w")
    table = unadjusted_subgroup_effects(df, roles, leaf, n_bootstrap=0)
    a = sm.WLS(df["M"], sm.add_constant(df[["T"]]), weights=df["w"]).fit().params["T"]
    fit = sm.WLS(df["Y"], sm.add_constant(df[["T", "M"]]), weights=df["w"]).fit()
    assert table["indirect"].iloc[0] == pytest.approx(a * fit.params["M"], rel=1e-9)
    assert table["direct"].iloc[0] == pytest.approx(fit.params["T"], rel=1e-9)
    plain = Roles("id", "T", "Y", ("M",), ())
    clustered = Roles("id", "T", "Y", ("M",), (), cluster="school")
    unit = unadjusted_subgroup_effects(df, plain, leaf, n_bootstrap=400, random_state=1)
    by_cluster = unadjusted_subgroup_effects(df, clustered, leaf, n_bootstrap=400, random_state=1)
    assert "cluster bootstrap over 60 clusters" in by_cluster["note"].iloc[0]
    assert by_cluster["total"].iloc[0] == pytest.approx(unit["total"].iloc[0])
    width = {
        k: t["total_ci_high"].iloc[0] - t["total_ci_low"].iloc[0]
        for k, t in (("unit", unit), ("cluster", by_cluster))
    }
    assert width["cluster"] > 1.5 * width["unit"]


def test_leaf_density_ratio_flags_the_leaf_whose_mediator_values_do_not_overlap():
    from mlearner_dist.core.effect_summaries import unsupported_subgroups
    from mlearner_dist.core.effects import leaf_density_ratio

    n = 400
    leaf = np.repeat([0, 1], n // 2)
    T = np.tile([1.0, 0.0], n // 2)
    # leaf 0: P(T=1 | M, X) = 1/2 (ratio 1); leaf 1: the treated units' mediator values say
    # "treated" (ratio ~0.001) except one in ten (ratio 49): the weights cannot support it
    r = np.full(n, 0.5)
    ones = np.flatnonzero(leaf == 1)
    r[ones] = 0.999
    r[ones[::20]] = 0.02
    eff = pd.DataFrame({"propensity": np.full(n, 0.5), "propensity_mx": r})
    out = leaf_density_ratio(eff, T, leaf, propensity_clip=0.01, max_density_ratio=10.0)
    assert out[0]["n_treated"] == out[1]["n_treated"] == 100
    assert out[0]["indirect_supported"] and out[0]["relative_ess"] == 1.0
    assert not out[1]["indirect_supported"] and out[1]["n_truncated"] == 10
    lines = unsupported_subgroups(
        {"subgroups": [{"rule": "a", "overlap": out[0]}, {"rule": "b", "overlap": out[1]}]}
    )
    assert len(lines) == 1 and lines[0].startswith("b: ") and "truncated" in lines[0]
