"""Sensitivity of the indirect effect to M-Y confounding (Imai, Keele and Yamamoto 2010)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from mlearner_dist.core.sensitivity import acme_curve, sensitivity_analysis
from mlearner_dist.exceptions import MLearnerError


def lsem(n: int, rho: float, seed: int, beta2: float = 1.0, gamma: float = 0.5) -> pd.DataFrame:
    """The linear SEM with corr(e_2, e_3) = rho: the truth is ACME = beta2 * gamma."""
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n)
    g = rng.choice(["a", "b", "c"], n)
    t = rng.integers(0, 2, n)
    e = rng.multivariate_normal([0, 0], [[1, rho], [rho, 1]], size=n)
    m = 0.3 + beta2 * t + 0.5 * x1 + (g == "b") * 0.4 + e[:, 0]
    y = 1.0 + 0.2 * t + gamma * m - 0.3 * x1 + (g == "c") * 0.2 + e[:, 1]
    return pd.DataFrame({"T": t, "M": m, "Y": y, "x1": x1, "g": g})


ROLES = {"treatment": "T", "mediator": "M", "outcome": "Y", "covariates": ["x1", "g"]}


def test_at_rho_zero_it_is_the_product_of_the_two_ols_fits():
    df = lsem(3000, 0.0, 1)
    X = pd.get_dummies(df[["x1", "g"]], drop_first=True, dtype=float)
    fm = sm.OLS(df["M"], sm.add_constant(pd.concat([df["T"], X], axis=1))).fit()
    fy = sm.OLS(df["Y"], sm.add_constant(pd.concat([df[["T", "M"]], X], axis=1))).fit()
    out = acme_curve(df, rho=[0.0], n_bootstrap=20, **ROLES)
    assert out["estimate"][0] == pytest.approx(fm.params["T"] * fy.params["M"], rel=1e-9)


def test_rho_zero_is_the_residual_correlation_of_the_total_and_mediator_fits():
    df = lsem(3000, 0.3, 2)
    X = sm.add_constant(
        pd.concat([df["T"], pd.get_dummies(df[["x1", "g"]], drop_first=True, dtype=float)], axis=1)
    )
    e1 = sm.OLS(df["Y"], X).fit().resid
    e2 = sm.OLS(df["M"], X).fit().resid
    out = acme_curve(df, rho=[0.0, 0.5], n_bootstrap=20, **ROLES)
    assert out["rho_zero"] == pytest.approx(np.corrcoef(e1, e2)[0, 1], rel=1e-9)
    # and the curve is zero there (the closed form's root)
    at = acme_curve(df, rho=[out["rho_zero"]], n_bootstrap=5, **ROLES)
    assert abs(at["estimate"][0]) < 1e-12


def test_the_curve_recovers_the_truth_at_the_true_rho():
    df = lsem(200_000, 0.4, 3)
    out = acme_curve(df, rho=[0.0, 0.4], n_bootstrap=30, max_rows=20_000, **ROLES)
    naive, at_truth = out["estimate"]
    assert at_truth == pytest.approx(0.5, abs=0.02)
    assert naive > 0.5 + 0.2  # ignoring the confounding overstates the indirect effect
    assert out["bootstrap_rows"] == 20_000


def test_intervals_and_the_rho_at_which_they_cover_zero():
    df = lsem(4000, 0.0, 4)
    out = acme_curve(df, n_bootstrap=200, **ROLES)
    est, lo, hi = map(np.asarray, (out["estimate"], out["ci_low"], out["ci_high"]))
    assert np.all(lo <= est) and np.all(est <= hi)
    i0 = out["rho"].index(0.0)
    assert lo[i0] > 0  # a clear indirect effect without confounding
    r = out["rho_ci_covers_zero"]
    assert r is not None and 0 < r <= out["rho_zero"] + 0.05
    covers = (lo <= 0) & (hi >= 0)
    rho = np.asarray(out["rho"])
    assert not covers[np.abs(rho) < abs(r)].any()


def test_per_subgroup_curves_and_small_groups():
    df = lsem(3000, 0.2, 5)
    leaf = np.where(df["x1"] > 0, 1, 2)
    leaf[:10] = 3
    out = sensitivity_analysis(
        df, leaf, {1: "x1 > 0", 2: "x1 <= 0", 3: "tiny"}, n_bootstrap=20, min_size=30, **ROLES
    )
    assert out["whole"]["n"] == 3000
    by_leaf = {s["leaf"]: s for s in out["subgroups"]}
    assert by_leaf[1]["n"] + by_leaf[2]["n"] == 2990
    assert "no sensitivity curve" in by_leaf[3]["note"]


def test_bad_input():
    df = lsem(200, 0.0, 6)
    with pytest.raises(MLearnerError, match="rho must lie in"):
        acme_curve(df, rho=[1.0], **ROLES)
    with pytest.raises(MLearnerError, match="too few"):
        acme_curve(df.assign(T=1), **ROLES)
