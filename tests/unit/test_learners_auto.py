"""The ``auto`` learner, estimator objects, the binary-mediator density ratio and its truncation."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import ExtraTreesRegressor
from sklearn.linear_model import LogisticRegression, Ridge
from threadpoolctl import threadpool_limits

from mlearner_dist.core import learners as learners_mod
from mlearner_dist.core.effects import (
    compute_effects,
    cross_fit_effects,
    density_ratio,
    density_ratio_summary,
)
from mlearner_dist.core.learners import choose_learner, make_learner, predict_response
from mlearner_dist.core.nuisance import (
    EFFECT_MODELS,
    NuisanceSpec,
    auto_candidates_of,
    binary_propensity_mx,
)
from mlearner_dist.core.roles import Roles
from mlearner_dist.datasets import simulate
from mlearner_dist.exceptions import ConfigError

COVS = tuple(f"X{i}" for i in range(1, 11))
ROLES = Roles("unit_id", "T", "Y", ("M",), COVS)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with threadpool_limits(limits=1):
        yield


def _frame(n: int, seed: int, p: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.normal(size=(n, p)), columns=[f"x{i}" for i in range(p)])


def _choose(X: pd.DataFrame, y: np.ndarray, task: str = "regression"):
    return choose_learner(
        task, X, y, unit_ids=np.arange(len(y)), numeric=list(X.columns), categorical=[]
    )


def test_auto_picks_the_linear_model_on_small_linear_data():
    X = _frame(300, 0)
    y = X.to_numpy() @ np.array([1.0, -0.5, 0.3, 0.0, 0.0]) + np.random.default_rng(1).normal(
        0, 1, 300
    )
    choice = _choose(X, y)
    assert choice.chosen == "linear", choice
    assert set(choice.losses) == {
        "constant",
        "linear",
        "spline",
        "linear_boosting",
        "hist_gradient_boosting_early_stopping",
    }
    assert choice.losses["linear"] < choice.losses["constant"]
    assert choice.n_folds == 3 and choice.n_rows == 300


def test_auto_picks_boosting_on_large_nonlinear_data():
    X = _frame(20_000, 2)
    x = X.to_numpy()
    # an interaction and a step: no additive (spline) or linear model gets these
    y = 2.0 * ((x[:, 0] > 0) & (x[:, 1] > 0)) * (x[:, 0] + x[:, 1]) + np.sin(3 * x[:, 2])
    y = y + np.random.default_rng(3).normal(0, 0.3, len(y))
    choice = _choose(X, y)
    assert choice.chosen in ("hist_gradient_boosting_early_stopping", "linear_boosting"), choice
    simple = min(choice.losses["linear"], choice.losses["spline"])
    assert choice.losses[choice.chosen] < 0.5 * simple
    assert choice.n_folds == 2


def test_auto_picks_the_constant_model_on_noise_and_classifies_by_log_loss():
    X = _frame(400, 4)
    y = np.random.default_rng(5).normal(size=400)
    assert _choose(X, y).chosen == "constant"
    t = (np.random.default_rng(6).uniform(size=400) < 0.5).astype(float)
    choice = _choose(X, t, "classification")
    assert choice.metric == "log_loss" and choice.chosen == "constant"
    # the constant's log loss is that of the training share: about log 2
    assert choice.losses["constant"] == pytest.approx(np.log(2), abs=0.02)


def test_auto_decides_once_on_the_first_fold_and_records_the_choice(monkeypatch):
    calls: list[str] = []
    real = learners_mod.choose_learner

    def counting(task, X, y, **kw):
        calls.append(task)
        return real(task, X, y, **kw)

    monkeypatch.setattr("mlearner_dist.core.nuisance.choose_learner", counting)
    df = simulate("simple-all", 1500, seed=2, noise_sd=1.0)
    _, diag = cross_fit_effects(df, ROLES, NuisanceSpec(), n_folds=3, seed=1)
    # gaussian mediator density: no propensity_mx classifier
    keys = {"mu_m1__M", "mu_m0__M", "mu_y1m", "direct", "baseline", "contrast"}
    assert set(diag["learner_choice"]) == keys
    assert len(calls) == len(keys)  # one selection per nuisance model, not per fold
    for key, entry in diag["learner_choice"].items():
        assert entry["chosen"] in entry["cv_loss"]
        assert entry["cv_loss"][entry["chosen"]] <= 1.05 * min(entry["cv_loss"].values())
        if key in EFFECT_MODELS:
            # the effect models are never chosen constant (auto_candidates_of)
            assert "constant" not in entry["cv_loss"]
            continue
        # one-SE rule: never worse than the constant model, never far from the best
        assert entry["cv_loss"][entry["chosen"]] <= entry["cv_loss"]["constant"]
    assert diag["learner"] == "auto"
    json.dumps(diag, allow_nan=False)
    # linear data at n = 1,500: the mediator and outcome models are not boosted
    assert diag["learner_choice"]["mu_y1m"]["chosen"] in ("linear", "spline", "linear_boosting")


def test_effect_models_have_no_constant_candidate_unless_asked():
    spec = NuisanceSpec()
    assert auto_candidates_of("contrast", spec) == tuple(
        c for c in spec.auto_candidates if c != "constant"
    )
    assert auto_candidates_of("direct", spec)[0] == "linear"
    # the nuisances keep the constant, and the switch restores it for the effect models
    assert auto_candidates_of("mu_y1m", spec) == spec.auto_candidates
    assert auto_candidates_of("baseline", spec)[0] == "constant"
    on = NuisanceSpec(constant_effect_models="allowed")
    assert auto_candidates_of("contrast", on) == on.auto_candidates
    # auto: observational designs keep it, unless excluded
    observational = NuisanceSpec(design="observational")
    assert auto_candidates_of("direct", observational) == observational.auto_candidates
    off = NuisanceSpec(design="observational", constant_effect_models="excluded")
    assert "constant" not in auto_candidates_of("contrast", off)
    # nothing but the constant: it stays
    only = NuisanceSpec(auto_candidates=("constant",))
    assert auto_candidates_of("contrast", only) == ("constant",)
    with pytest.raises(ConfigError, match="constant_effect_models"):
        NuisanceSpec(constant_effect_models="no")


def test_a_weak_subgroup_effect_is_not_estimated_constant():
    """mediator-slope at noise sd 1 (randomised): the contrast's CV losses are within 1% of the
    constant's.

    With the constant allowed, the one-standard-error rule chooses it and every unit's indirect
    effect is the same; without it the indirect effect varies, and is larger where S = 1.
    """
    df = simulate("mediator-slope", 3000, seed=10000, noise_sd=1.0)
    s = df["in_subgroup"].to_numpy() == 1
    found = {}
    for rule in ("allowed", "excluded"):
        eff, diag = cross_fit_effects(
            df, ROLES, NuisanceSpec(constant_effect_models=rule), n_folds=3, seed=1
        )
        eff = eff.set_index("unit_id").loc[df["unit_id"]]
        found[rule] = (diag["learner_choice"]["contrast"], eff["indirect"].to_numpy())
    choice, ind = found["allowed"]
    assert choice["chosen"] == "constant"
    assert np.ptp(ind[eff["fold"].to_numpy() == 0]) < 1e-12
    choice, ind = found["excluded"]
    assert "constant" not in choice["cv_loss"]
    # shrunk (true difference 1; measured 0.07), but ordered: steps 2-4 have something to find
    assert ind[s].mean() - ind[~s].mean() > 0.05, (ind[s].mean(), ind[~s].mean())
    assert np.corrcoef(ind, s)[0, 1] > 0.2


def test_estimator_objects_are_accepted_per_model_group():
    df = simulate("simple-all", 600, seed=4, noise_sd=1.0)
    spec = NuisanceSpec(
        learner="linear",
        model_outcome=ExtraTreesRegressor(n_estimators=20, random_state=0),
        model_mediator=Ridge(alpha=1.0),
        model_propensity=LogisticRegression(C=0.1),
    )
    eff, diag = cross_fit_effects(df, ROLES, spec, n_folds=2, seed=0)
    assert diag["learners"] == {
        "outcome": "ExtraTreesRegressor",
        "mediator": "Ridge",
        "propensity": "LogisticRegression",
    }
    assert diag["learner_choice"] == {}
    assert np.isfinite(eff["score_indirect"]).all()
    with pytest.raises(ConfigError, match="needs predict_proba; give a classifier"):
        make_learner(Ridge(), "classification", numeric=["x"], categorical=[])
    with pytest.raises(ConfigError, match="is a classifier but the nuisance model is a regression"):
        make_learner(LogisticRegression(), "regression", numeric=["x"], categorical=[])
    with pytest.raises(ConfigError, match="model_outcome=3 is neither a learner name"):
        NuisanceSpec(model_outcome=3)
    with pytest.raises(ConfigError, match="auto_candidates"):
        NuisanceSpec(auto_candidates=("linear", "xgboost"))
    with pytest.raises(ConfigError, match="resolve 'auto' with choose_learner first"):
        make_learner("auto", "regression", numeric=["x"], categorical=[])


def test_new_learner_names_fit_with_categoricals():
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"x": rng.normal(size=500), "g": rng.choice(["a", "b"], 500)})
    y = np.sin(X["x"]) + (X["g"] == "a")
    for kind in ("spline", "linear_boosting", "hist_gradient_boosting_early_stopping", "constant"):
        model = make_learner(kind, "regression", numeric=["x"], categorical=["g"]).fit(X, y)
        p = predict_response(model, X, "regression")
        r2 = 1 - np.mean((p - y) ** 2) / y.var()
        assert (r2 > 0.8) if kind != "constant" else abs(r2) < 1e-2, kind


def test_binary_density_ratio_is_the_closed_form_of_the_mediator_models():
    # hand computation: e = 0.4; unit 1: m = 1, p1 = 0.8, p0 = 0.2 -> q1 = 0.8, q0 = 0.2,
    # r = 0.4 0.8 / (0.4 0.8 + 0.6 0.2) = 0.32 / 0.44; ratio (1-r)/r e/(1-e) = q0/q1 = 0.25
    # unit 2: m = 0, p1 = 0.8, p0 = 0.2 -> q1 = 0.2, q0 = 0.8, ratio 4
    m = np.array([1.0, 0.0])
    p1, p0, e = np.array([0.8, 0.8]), np.array([0.2, 0.2]), np.array([0.4, 0.4])
    r = binary_propensity_mx(m, p1, p0, e)
    np.testing.assert_allclose(r, [0.32 / 0.44, 0.08 / 0.56])
    np.testing.assert_allclose(density_ratio(e, r, 0.0), [0.25, 4.0])


def test_gaussian_density_ratio_is_the_ratio_of_normal_densities():
    from scipy.stats import norm

    from mlearner_dist.core.nuisance import gaussian_propensity_mx

    m, mu1, mu0 = np.array([0.3, 2.0]), np.array([1.0, 1.0]), np.array([0.0, 0.5])
    e = np.array([0.6, 0.6])
    r = gaussian_propensity_mx(m, mu1, mu0, (1.5, 0.8), e)
    ratio = norm.pdf(m, mu0, 1.5) / norm.pdf(m, mu1, 0.8)
    np.testing.assert_allclose(density_ratio(e, r, 0.0), ratio, rtol=1e-10)


def test_binary_mediator_scores_use_the_mediator_models_not_a_classifier():
    rng = np.random.default_rng(8)
    n = 2000
    x = rng.normal(size=n)
    t = (rng.permutation(n) < n // 2).astype(int)
    p = 1 / (1 + np.exp(-(0.5 * x + 1.0 * t - 0.5)))
    m = (rng.uniform(size=n) < p).astype(float)
    y = 1 + 2 * m + x + rng.normal(0, 1, n)
    df = pd.DataFrame({"unit_id": np.arange(n), "T": t, "M": m, "Y": y, "x": x})
    roles = Roles("unit_id", "T", "Y", ("M",), ("x",))
    eff, diag = cross_fit_effects(df, roles, NuisanceSpec(learner="linear"), n_folds=2, seed=0)
    assert diag["mediator_kind"] == "binary"
    assert "propensity_mx" not in diag["learner_choice"]
    q1 = np.where(m == 1, eff["mu_m1"], 1 - eff["mu_m1"])
    q0 = np.where(m == 1, eff["mu_m0"], 1 - eff["mu_m0"])
    ratio = density_ratio(eff["propensity"], eff["propensity_mx"], 0.01)
    np.testing.assert_allclose(ratio, q0 / q1, rtol=1e-9)


def test_density_ratio_truncation_and_its_count():
    frame = pd.DataFrame({"id": [1, 2, 3, 4], "T": [1, 1, 1, 0], "Y": [2.0, 1.0, 3.0, 0.0]})
    nuis = pd.DataFrame(
        {
            "unit_id": [1, 2, 3, 4],
            "mu_y1": 1.0,
            "mu_y0": 0.5,
            "mu_m1": 0.0,
            "mu_m0": 0.0,
            "mu_y1m": 1.5,
            "eta": 1.0,
            "propensity": 0.5,
            # ratios (1-r)/r: 1, 19 (truncated to 10), 1/19
            "propensity_mx": [0.5, 0.05, 0.95, 0.5],
        }
    )
    roles = Roles("id", "T", "Y", ("M",), ())
    kw = {"estimator": "nested", "propensity_clip": 0.01}
    out = compute_effects(nuis, frame, roles, max_density_ratio=10.0, **kw)
    raw = compute_effects(nuis, frame, roles, **kw)
    # psi_cross = T/e w (Y - mu_y1m) + (1-T)/(1-e) (mu_y1m - eta) + eta; unit 2: w = 10 vs 19
    np.testing.assert_allclose(
        out["score_direct"] - raw["score_direct"], [0.0, 2 * (10 - 19) * (1.0 - 1.5), 0.0, 0.0]
    )
    w_raw = density_ratio(nuis["propensity"], nuis["propensity_mx"], 0.01)[:3]
    w = np.minimum(w_raw, 10.0)
    summary = density_ratio_summary(3, w.sum(), (w**2).sum(), 1, w_raw.max(), 10.0)
    assert summary["n_truncated"] == 1 and summary["n_treated"] == 3
    assert summary["share_truncated"] == pytest.approx(1 / 3, rel=1e-5)
    assert summary["mean_weight"] == pytest.approx((1 + 10 + 1 / 19) / 3, rel=1e-5)
    assert summary["indirect_supported"] is False
    assert any("truncated" in r for r in summary["reasons"])
    with pytest.raises(ConfigError, match=r"max_density_ratio=0\.5"):
        compute_effects(nuis, frame, roles, max_density_ratio=0.5, **kw)


def test_overlap_diagnostics_say_when_the_indirect_effect_is_not_supported():
    # Simple-Global with sd 0.01: M = B + T + e, so given X the mediator reveals the arm; the
    # controls' mediator values lie where no treated unit is
    df = simulate("simple-global", 1500, seed=1, noise_sd=0.01)
    _, diag = cross_fit_effects(df, ROLES, NuisanceSpec(learner="linear"), n_folds=2, seed=0)
    assert diag["density_ratio"]["indirect_supported"] is False
    assert diag["density_ratio"]["mean_weight"] < 0.5
    df = simulate("simple-all", 1500, seed=1, noise_sd=1.0)
    _, diag = cross_fit_effects(df, ROLES, NuisanceSpec(), n_folds=2, seed=0)
    assert diag["density_ratio"]["indirect_supported"] is True, diag["density_ratio"]
    assert diag["density_ratio"]["share_truncated"] < 0.01  # the truncation stays rare
