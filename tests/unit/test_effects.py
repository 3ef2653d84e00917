"""Step 1 in memory: learners, nuisance models, effects, scores and diagnostics."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from mlearner_dist.core.effects import (
    binned_auc,
    compute_effects,
    cross_fit_effects,
    effect_columns,
)
from mlearner_dist.core.folds import stable_uniform
from mlearner_dist.core.learners import make_learner, predict_response
from mlearner_dist.core.nuisance import NuisanceSpec, select_training_rows
from mlearner_dist.core.roles import Roles
from mlearner_dist.exceptions import ConfigError, InputValidationError, StageError

COVS = tuple(f"X{i}" for i in range(1, 11))
ROLES = Roles("unit_id", "T", "Y", ("M",), COVS)
FAST = {"max_iter": 40}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One OpenMP thread: the 2-core test machine is shared, and oversubscribed OpenMP
    histogram boosting is 10-20 times slower there."""
    with threadpool_limits(limits=1):
        yield


def simulate(n: int, scenario: str = "simple_all", seed: int = 0, noise: float = 0.01):
    """The paper's scenarios: (frame, true indirect effect)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 10))
    T = (rng.permutation(n) < n // 2).astype(np.int64)
    S = ((X[:, 0] > 0) & (X[:, 1] > 0)).astype(float)
    B = X[:, 2] + X[:, 3] + 0.5 * X[:, 0] + 0.5 * X[:, 1]
    shift = S * (X[:, 0] + X[:, 1])
    if scenario == "null":
        M = B + rng.normal(0, noise, n)
    else:
        M = B + shift * T + rng.normal(0, noise, n)
    lin = 1 + 0.5 * X[:, 2] + 0.5 * X[:, 3]
    if scenario == "complex_all":
        L0 = lin + B + rng.normal(0, noise, n)
        Y = 1 / (1 + np.exp(lin + M + rng.normal(0, noise, n)))
        truth = 1 / (1 + np.exp(L0 + shift)) - 1 / (1 + np.exp(L0))
    else:
        Y = lin + M + rng.normal(0, noise, n)
        truth = shift if scenario == "simple_all" else np.zeros(n)
    df = pd.DataFrame(X, columns=list(COVS))
    df["T"], df["M"], df["Y"] = T, M, Y
    df["unit_id"] = np.arange(n) * 3 + 1
    return df, truth


def _fit(df, roles=ROLES, n_folds=3, **spec):
    spec.setdefault("learner_params", FAST)
    return cross_fit_effects(df, roles, NuisanceSpec(**spec), n_folds=n_folds, seed=7)


def _aligned(eff, df):
    return eff.set_index("unit_id").loc[df["unit_id"].to_numpy()]


@pytest.mark.parametrize("estimator", ["nested", "reference"])
def test_indirect_plus_direct_is_total_exactly_and_columns_follow_the_contract(estimator):
    df, _ = simulate(1200)
    eff, diag = _fit(df, estimator=estimator)
    assert list(eff.columns) == effect_columns(ROLES, estimator)
    assert np.array_equal(eff["indirect"] + eff["direct"], eff["total"])
    assert eff["unit_id"].is_monotonic_increasing and len(eff) == len(df)
    assert set(eff["fold"]) == {0, 1, 2}
    json.dumps(diag, allow_nan=False)
    assert diag["cross_fitted"] is (estimator == "nested")


def test_nested_recovers_the_indirect_effect_and_ignores_input_order():
    df, truth = simulate(3000)
    eff, diag = _fit(df)
    e = _aligned(eff, df)
    assert np.corrcoef(e["indirect"], truth)[0, 1] > 0.8
    # NDE = 0: no systematic direct effect, and smaller than the indirect effect
    assert abs(e["direct"].mean()) < 0.05
    assert np.abs(e["direct"]).mean() < 0.5 * np.abs(truth).mean()
    assert diag["models"]["mu_y1m"]["mean"] > 0.95
    assert diag["overlap"]["propensity"] == {"min": 0.5, "max": 0.5, "share_outside": 0.0}
    shuffled = df.sample(frac=1.0, random_state=3)
    eff2, _ = _fit(shuffled)
    pd.testing.assert_frame_equal(eff, eff2)


def test_null_scenario_gives_indirect_centred_on_zero():
    df, _ = simulate(2000, "null")
    eff, _ = _fit(df)
    ref, _ = _fit(df, estimator="reference")
    lin, _ = _fit(df, learner="linear", learner_params={})
    sd_y = df["Y"].std()
    assert abs(eff["indirect"].mean()) < 0.02 * sd_y
    # unit-level noise of boosted nuisances at n = 2000: no wider than the reference's plug-in
    # (measured 0.105 vs 0.115 sd_y), and next to nothing for a correctly specified linear model
    assert np.abs(eff["indirect"]).mean() < 0.12 * sd_y
    assert np.abs(eff["indirect"]).mean() < np.abs(ref["indirect"]).mean()
    assert np.abs(lin["indirect"]).mean() < 0.01 * sd_y


@pytest.mark.slow
@pytest.mark.parametrize(
    "scenario",
    [
        "simple_all",
        pytest.param(
            "complex_all",
            marks=pytest.mark.xfail(
                strict=True,
                raises=AssertionError,
                reason="target not met yet: nested RMSE/sd 0.37 (reference 0.50) on complex-all "
                "with boosting; 0.344 with the auto learner (benchmarks/bench_accuracy.py, "
                "rmse_indirect); tuning the boosting (300-500 iterations, smaller steps) gave "
                "0.35-0.42",
            ),
        ),
    ],
)
def test_recovery_at_n_20000_meets_the_target(scenario):
    df, truth = simulate(20_000, scenario, seed=1)
    rmse = {}
    for est in ("nested", "reference"):
        eff, _ = cross_fit_effects(df, ROLES, NuisanceSpec(estimator=est), n_folds=5, seed=1)
        err = _aligned(eff, df)["indirect"].to_numpy() - truth
        rmse[est] = np.sqrt(np.mean(err**2)) / truth.std()
    if scenario == "complex_all":
        # checked first: the xfail below concerns only the 0.25 target
        assert rmse["nested"] < rmse["reference"], rmse
    assert rmse["nested"] <= 0.25, rmse


def test_binary_mediator_matches_a_hand_computed_case():
    # one categorical covariate g; P(M=1 | T, g) and Y = 1 + 2 M + 3 [g = b] exactly
    p = {("a", 1): 0.8, ("a", 0): 0.3, ("b", 1): 0.5, ("b", 0): 0.4}
    rows = []
    for (g, t), pm in p.items():
        n1 = round(200 * pm)
        for m in [1] * n1 + [0] * (200 - n1):
            rows.append({"g": g, "T": t, "M": m, "Y": 1 + 2 * m + 3 * (g == "b")})
    df = pd.DataFrame(rows)
    df["unit_id"] = [f"u{i}" for i in range(len(df))]
    roles = Roles("unit_id", "T", "Y", ("M",), ("g",))
    spec = {"learner": "linear", "learner_params": {"C": 1e8, "alphas": (1e-10,)}}
    eff, diag = cross_fit_effects(df, roles, NuisanceSpec(**spec), n_folds=2, seed=0)
    assert diag["mediator_kind"] == "binary"
    e = eff.merge(df[["unit_id", "g"]], on="unit_id")
    for g in ("a", "b"):
        sub = e[e["g"] == g]
        # NIE(g) = (mu_Y(1,1,g) - mu_Y(1,0,g)) (P(M=1|T=1,g) - P(M=1|T=0,g)) = 2 (p1 - p0)
        # folds hold different shares, so compare with the training folds' frequencies
        for k in (0, 1):
            rows_k = sub[sub["fold"] == k]
            train = df.merge(eff[["unit_id", "fold"]], on="unit_id")
            train = train[(train["fold"] != k) & (train["g"] == g)]
            p1 = train.loc[train["T"] == 1, "M"].mean()
            p0 = train.loc[train["T"] == 0, "M"].mean()
            np.testing.assert_allclose(rows_k["indirect"], 2 * (p1 - p0), atol=2e-3)
            np.testing.assert_allclose(rows_k["direct"], 0.0, atol=2e-3)
            np.testing.assert_allclose(rows_k["mu_m1"], p1, atol=1e-3)


def test_no_mediator_path_estimates_the_total_effect_only():
    df, truth = simulate(2000, seed=4)
    # no mediator: Y = 1 + B + S (X1 + X2) T + e, truth is the total effect
    df["Y"] = 1 + df["X3"] + df["X4"] + 0.5 * df["X1"] + 0.5 * df["X2"] + truth * df["T"]
    roles = Roles("unit_id", "T", "Y", (), COVS)
    eff, diag = _fit(df, roles=roles)
    assert list(eff.columns) == effect_columns(roles)
    assert "mu_m1" not in eff and "eta" not in eff
    assert eff[["indirect", "direct", "score_indirect", "score_direct"]].isna().all().all()
    np.testing.assert_array_equal(eff["total"], eff["mu_y1"] - eff["mu_y0"])
    assert np.corrcoef(_aligned(eff, df)["total"], truth)[0, 1] > 0.9
    assert set(diag["models"]) == {"mu_y1", "mu_y0", "propensity"}


def test_observational_design_fits_a_propensity_model():
    df, _ = simulate(2000, seed=5)
    e_true = 1 / (1 + np.exp(-1.5 * df["X1"]))
    df["T"] = (np.random.default_rng(9).uniform(size=len(df)) < e_true).astype(int)
    eff, diag = _fit(df, design="observational")
    e = _aligned(eff, df)
    assert np.corrcoef(e["propensity"], e_true)[0, 1] > 0.8
    assert diag["models"]["propensity"]["mean"] > 0.7
    assert diag["overlap"]["propensity"]["share_outside"] > 0.0


def test_scores_match_a_hand_computation():
    frame = pd.DataFrame({"id": [1, 2, 3], "T": [1, 0, 1], "Y": [2.0, 1.0, 2.0]})
    nuis = pd.DataFrame(
        {
            "unit_id": [1, 2, 3],
            "mu_y1": 1.5,
            "mu_y0": 1.0,
            "mu_m1": 0.0,
            "mu_m0": 0.0,
            "mu_y1m": 1.8,
            "eta": 1.2,
            "propensity": [0.5, 0.5, 0.001],
            "propensity_mx": 0.8,
        }
    )
    roles = Roles("id", "T", "Y", ("M",), ())
    out = compute_effects(nuis, frame, roles, estimator="nested", propensity_clip=0.01)
    # row 1: psi1 = 2.5, psi0 = 1, psi_cross = 2 (0.2/0.8)(1)(0.2) + 1.2 = 1.3
    # row 2: psi1 = 1.5, psi0 = 2 (0) + 1 = 1, psi_cross = 2 (1.8 - 1.2) + 1.2 = 2.4
    # row 3: e clipped to 0.01: psi1 = 0.5/0.01 + 1.5 = 51.5, psi_cross = 100 (0.25)(0.01/0.99)(0.2)
    #        + 1.2, psi0 = 1
    pc3 = 100 * 0.25 * (0.01 / 0.99) * 0.2 + 1.2
    np.testing.assert_allclose(out["score_total"], [1.5, 0.5, 50.5])
    np.testing.assert_allclose(out["score_indirect"], [1.2, -0.9, 51.5 - pc3])
    np.testing.assert_allclose(out["score_direct"], [0.3, 1.4, pc3 - 1])
    np.testing.assert_allclose(out["indirect"], 0.3)
    np.testing.assert_allclose(out["direct"], 0.2)


def test_row_budget_keeps_the_smallest_draws_per_arm_and_logs(caplog):
    df, _ = simulate(1000, seed=2)
    with caplog.at_level(logging.INFO, logger="mlearner_dist.core.nuisance"):
        controls, treated, pooled, counts = select_training_rows(df, ROLES, row_budget=200, seed=3)
    assert counts == (500, 500)
    assert len(controls) == len(treated) == len(pooled) == 200
    u = pd.Series(stable_uniform(df["unit_id"], 3), index=df["unit_id"])
    for arm, got in ((0, controls), (1, treated)):
        ids = df.loc[df["T"] == arm, "unit_id"]
        expected = np.sort(u[ids].nsmallest(200).index.to_numpy())
        np.testing.assert_array_equal(got["unit_id"].to_numpy(), expected)
    assert pooled["T"].sum() == 100  # stratified: the treated share is kept
    assert "keeps 200 of 500 training units" in caplog.text
    _, diag = _fit(df, row_budget=150, n_folds=2)
    for fold in diag["training_rows"]:
        assert max(fold["models"].values()) <= 150


def test_learners_handle_categoricals_and_give_probabilities():
    rng = np.random.default_rng(0)
    n = 600
    X = pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "colour": rng.choice(["red", "green", "blue"], n),
            "flag": rng.uniform(size=n) < 0.5,
        }
    )
    y = 2.0 * (X["colour"] == "red") + X["x"] + X["flag"]
    for kind in ("hist_gradient_boosting", "random_forest", "linear"):
        reg = make_learner(kind, "regression", numeric=["x"], categorical=["colour", "flag"])
        r2 = 1 - np.mean((predict_response(reg.fit(X, y), X, "regression") - y) ** 2) / y.var()
        assert r2 > 0.9, kind
        clf = make_learner(kind, "classification", numeric=["x"], categorical=["colour", "flag"])
        p = predict_response(clf.fit(X, (y > 1).astype(int)), X, "classification")
        assert p.min() >= 0 and p.max() <= 1 and np.corrcoef(p, y)[0, 1] > 0.7, kind


def test_binned_auc_equals_the_rank_auc_when_bins_are_fine():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    y = rng.uniform(size=500) < 0.4
    s = np.round(rng.uniform(size=500) + 0.3 * y, 2)  # ties included
    grid = np.unique(s)
    pos = np.array([(s[y] == g).sum() for g in grid])
    neg = np.array([(s[~y] == g).sum() for g in grid])
    assert binned_auc(pos, neg) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_bad_inputs_raise_clear_errors():
    df, _ = simulate(200)
    spec = NuisanceSpec(learner_params=FAST)
    with pytest.raises(ConfigError, match="learner kind 'xgboost' is unknown"):
        make_learner("xgboost", "regression", numeric=["x"], categorical=[])
    with pytest.raises(ConfigError, match="task 'ranking' is unknown"):
        make_learner("linear", "ranking", numeric=["x"], categorical=[])
    with pytest.raises(ConfigError, match=r"learner_params \['depth'\]"):
        make_learner("linear", "regression", numeric=["x"], categorical=[], params={"depth": 3})
    with pytest.raises(ConfigError, match="learner='xgb' is unknown"):
        NuisanceSpec(learner="xgb")
    with pytest.raises(ConfigError, match=r"propensity_clip=0\.7"):
        NuisanceSpec(propensity_clip=0.7)
    with pytest.raises(ConfigError, match="n_folds=1"):
        cross_fit_effects(df, ROLES, spec, n_folds=1, seed=0)
    with pytest.raises(InputValidationError, match="column 'Z' \\(mediator\\) is not in"):
        cross_fit_effects(df, Roles("unit_id", "T", "Y", ("Z",), COVS), spec, n_folds=2, seed=0)
    bad = df.assign(T=df["T"] + 1)
    with pytest.raises(InputValidationError, match="must be coded 0/1"):
        cross_fit_effects(bad, ROLES, spec, n_folds=2, seed=0)
    dup = df.assign(unit_id=0)
    with pytest.raises(InputValidationError, match="duplicated ids"):
        cross_fit_effects(dup, ROLES, spec, n_folds=2, seed=0)
    nan = df.assign(Y=np.where(np.arange(len(df)) < 3, np.nan, df["Y"]))
    with pytest.raises(InputValidationError, match="'Y' \\(outcome\\) has 3 missing"):
        cross_fit_effects(nan, ROLES, spec, n_folds=2, seed=0)
    with pytest.raises(InputValidationError, match="training folds of fold"):
        cross_fit_effects(df.iloc[:3], ROLES, spec, n_folds=3, seed=0)
    eff, _ = cross_fit_effects(df, ROLES, spec, n_folds=2, seed=0)
    with pytest.raises(StageError, match="not row-aligned"):
        compute_effects(
            eff.iloc[::-1],
            df.sort_values("unit_id"),
            ROLES,
            estimator="nested",
            propensity_clip=0.01,
        )
    with pytest.raises(ConfigError, match="estimator='plugin' is unknown"):
        compute_effects(eff, df, ROLES, estimator="plugin", propensity_clip=0.01)


def stratified_trial(n: int = 4000, tau: float = 1.0, seed: int = 3) -> pd.DataFrame:
    """Two equal strata randomised with treated shares 0.2 and 0.8; Y = 2 s + tau T + noise.

    Pooled over strata the treated are mostly in stratum 1, so a constant propensity (the
    overall share) gives E[score_total] = tau + 2 (0.8 - 0.2) = tau + 1.2 when the outcome models
    do not see the stratum; the stratum shares give tau.
    """
    rng = np.random.default_rng(seed)
    s = np.repeat([0, 1], n // 2)
    t = np.concatenate(
        [rng.permutation(n // 2) < share * (n // 2) for share in (0.2, 0.8)]
    ).astype(np.int64)
    return pd.DataFrame(
        {
            "unit_id": np.arange(n),
            "site": np.where(s == 1, "b", "a"),
            "X1": rng.normal(size=n),
            "T": t,
            "Y": 2.0 * s + tau * t + rng.normal(size=n),
        }
    )


def test_randomised_propensity_is_the_stratum_share_and_unbiases_the_total_score():
    df = stratified_trial()
    plain = Roles("unit_id", "T", "Y", (), ("X1",))
    strata = Roles("unit_id", "T", "Y", (), ("X1",), strata=("site",))
    eff, _ = _fit(df, strata, learner="constant")
    naive, _ = _fit(df, plain, learner="constant")
    site = _aligned(eff, df).assign(site=df["site"].to_numpy())
    assert np.allclose(site.loc[site["site"] == "a", "propensity"], 0.2)
    assert np.allclose(site.loc[site["site"] == "b", "propensity"], 0.8)
    assert np.allclose(naive["propensity"], 0.5)
    sizes = pd.crosstab(site["site"], site["fold"]).to_numpy()
    assert (sizes.max(axis=1) - sizes.min(axis=1)).max() <= 1  # folds balanced within strata
    se = eff["score_total"].std() / np.sqrt(len(eff))
    assert abs(eff["score_total"].mean() - 1.0) < 4 * se
    assert abs(naive["score_total"].mean() - 2.2) < 0.15  # the bias of ignoring the strata


def test_the_strata_enter_the_outcome_models_as_features():
    """Y = 2 s + T + noise with X1 independent of the stratum s: the outcome models see the
    stratum (categorical feature), so their predictions differ by about 2 between the strata."""
    df = stratified_trial()
    strata = Roles("unit_id", "T", "Y", (), ("X1",), strata=("site",))
    eff, _ = _fit(df, strata, learner="linear")
    site = _aligned(eff, df).assign(site=df["site"].to_numpy())
    gap = site.groupby("site")[["mu_y0", "mu_y1"]].mean().diff().iloc[-1]
    assert gap.to_numpy() == pytest.approx([2.0, 2.0], abs=0.15)
    # a stratum that is also a covariate is one feature, not two
    both = Roles("unit_id", "T", "Y", (), ("X1", "site"), strata=("site",))
    eff_both, _ = _fit(df, both, learner="linear")
    assert np.allclose(eff_both["mu_y0"], eff["mu_y0"])

def test_a_stratum_with_one_arm_stops_the_effects():
    df = stratified_trial(n=400)
    df.loc[df["site"] == "a", "T"] = 0
    roles = Roles("unit_id", "T", "Y", (), ("X1",), strata=("site",))
    with pytest.raises(InputValidationError, match="site='a' has 200 units, all control"):
        _fit(df, roles, learner="constant")


def test_diagnostics_record_is_built_by_the_one_builder():
    """cross_fit_effects returns effects_diagnostics(...) with the model-quality pieces."""
    from mlearner_dist.core.nuisance_diagnostics import diagnostic_targets

    df, _ = simulate(300, seed=4)
    _, diag = _fit(df, learner="linear")
    keys = "estimator design learner learners learner_choice mediator_kind n_folds n_units"
    keys += " cross_fitted models overlap density_ratio training_rows"
    assert list(diag) == keys.split()
    assert list(diag["models"]) == [d.name for d in diagnostic_targets(ROLES, "continuous")]
    for rec in diag["models"].values():
        assert list(rec) == ["metric", "by_fold", "mean"] and len(rec["by_fold"]) == 3
        defined = [v for v in rec["by_fold"] if v is not None]
        assert rec["mean"] == (float(np.mean(defined)) if defined else None)
    assert list(diag["overlap"]) == ["propensity", "propensity_mx"]
    assert list(diag["overlap"]["propensity"]) == ["min", "max", "share_outside"]
