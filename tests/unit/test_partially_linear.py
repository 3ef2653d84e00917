"""The partially linear outcome model given the mediator (learner ``partially_linear``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from mlearner_dist.core.learners import choose_learner, make_learner, predict_response
from mlearner_dist.core.partially_linear import PartiallyLinearRegressor
from mlearner_dist.exceptions import ConfigError

XS = [f"X{i}" for i in range(1, 6)]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with threadpool_limits(limits=1):
        yield


def _treated(n: int, seed: int) -> pd.DataFrame:
    """simple-part's treated arm: M shifted by S (X1 + X2), Y = M + the same S (X1 + X2) + ..."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, len(XS))), columns=XS)
    s = ((X.X1 > 0) & (X.X2 > 0)) * (X.X1 + X.X2)
    m = X.X3 + X.X4 + 0.5 * X.X1 + 0.5 * X.X2 + s + rng.normal(size=n)
    y = 1 + m + 0.5 * X.X3 + 0.5 * X.X4 + s + rng.normal(size=n)
    return X.assign(M=m, Y=y, s=s)


def _fit(kind: str, df: pd.DataFrame):
    return make_learner(
        kind, "regression", numeric=[*XS, "M"], categorical=[], linear_columns=("M",)
    ).fit(df[[*XS, "M"]], df["Y"].to_numpy())


def test_slope_is_recovered_where_the_pooled_ridge_slope_is_biased():
    df = _treated(2500, 0)
    pl = _fit("partially_linear", df).named_steps["model"]
    assert abs(pl.theta_[0] - 1.0) < 3 * pl.theta_se_[0] + 0.02, (pl.theta_, pl.theta_se_)
    assert 0.005 < pl.theta_se_[0] < 0.1
    # the ridge on (M, X) absorbs part of the nonlinear S (X1 + X2) into the slope of M
    ridge = _fit("linear", df).named_steps["model"]
    assert ridge.coef_[-1] / df["M"].std() > 1.1


def test_extrapolation_to_the_other_arms_mediator_values_follows_the_slope():
    df = _treated(2500, 1)
    # the controls' mediator: no shift s; the true mu_Y(1, m, x) there is 1 + m + ... + s
    ctrl = df.assign(M=df.M - df.s)
    truth = 1 + ctrl.M + 0.5 * ctrl.X3 + 0.5 * ctrl.X4 + ctrl.s
    bias = {}
    for kind in ("partially_linear", "linear_boosting"):
        pred = predict_response(_fit(kind, df), ctrl[[*XS, "M"]], "regression")
        bias[kind] = float(np.mean((pred - truth)[ctrl.s > 0]))
    assert abs(bias["partially_linear"]) < 0.5 * abs(bias["linear_boosting"]), bias
    assert abs(bias["partially_linear"]) < 0.3, bias


def test_without_mediator_columns_or_for_classification_it_is_linear_boosting():
    df = _treated(400, 2)
    for task, y in (("regression", df["Y"]), ("classification", (df["Y"] > 1).astype(int))):
        pipe = make_learner(
            "partially_linear", task, numeric=XS, categorical=[], linear_columns=("M",)
        )
        ref = make_learner("linear_boosting", task, numeric=XS, categorical=[])
        assert type(pipe.named_steps["model"]) is type(ref.named_steps["model"])
        pipe.fit(df[XS], y.to_numpy())


def test_only_mediator_columns_gives_a_constant_component():
    df = _treated(300, 3)
    pipe = make_learner(
        "partially_linear", "regression", numeric=["M"], categorical=[], linear_columns=("M",)
    ).fit(df[["M"]], df["Y"].to_numpy())
    p = predict_response(pipe, df[["M"]], "regression")
    coef = np.polyfit(df["M"], df["Y"], 1)
    np.testing.assert_allclose(p, np.polyval(coef, df["M"]), atol=0.15)


def test_weights_enter_the_slope():
    rng = np.random.default_rng(4)
    n = 2000
    X = pd.DataFrame({"X1": rng.normal(size=n)})
    m = X.X1 + rng.normal(size=n)
    group = rng.random(n) < 0.5
    y = np.where(group, 2.0, 0.5) * m + X.X1 + rng.normal(0, 0.1, n)
    comp = make_learner("linear", "regression", numeric=["X1"], categorical=[])
    frame = X.assign(M=m)
    w = np.where(group, 1.0, 1e-6)
    pl = PartiallyLinearRegressor(["M"], comp).fit(frame, y, sample_weight=w)
    assert abs(pl.theta_[0] - 2.0) < 0.05, pl.theta_


def test_auto_prefers_it_on_partially_linear_data_and_not_on_a_varying_slope():
    df = _treated(2500, 5)
    cands = ("linear", "partially_linear", "linear_boosting")

    def choose(y: np.ndarray) -> str:
        return choose_learner(
            "regression",
            df[[*XS, "M"]],
            y,
            unit_ids=np.arange(len(df)),
            numeric=[*XS, "M"],
            categorical=[],
            candidates=cands,
            linear_columns=("M",),
        ).chosen

    assert choose(df["Y"].to_numpy()) == "partially_linear"
    # the slope of M depends on X1 > 0 (mediator-slope): the partially linear model is wrong
    varying = (1 + 2 * (df.X1 > 0)) * df.M + np.random.default_rng(6).normal(size=len(df))
    assert choose(varying.to_numpy()) != "partially_linear"
    # a model without the mediator never fits the candidate
    c = choose_learner(
        "regression",
        df[XS],
        df["Y"].to_numpy(),
        unit_ids=np.arange(len(df)),
        numeric=XS,
        categorical=[],
        candidates=cands,
        linear_columns=("M",),
    )
    assert "partially_linear" not in c.losses


def test_bad_settings_are_named():
    df = _treated(50, 7)
    comp = make_learner("linear", "regression", numeric=XS, categorical=[])
    with pytest.raises(ConfigError, match="at least one linear column"):
        PartiallyLinearRegressor([], comp).fit(df[[*XS, "M"]], df["Y"])
    with pytest.raises(ConfigError, match="columns \\['Z'\\] are not in X"):
        PartiallyLinearRegressor(["Z"], comp).fit(df[[*XS, "M"]], df["Y"])
    with pytest.raises(ConfigError, match="at least 2 inner folds"):
        PartiallyLinearRegressor(["M"], comp, n_folds=1).fit(df[[*XS, "M"]], df["Y"])
    with pytest.raises(ConfigError, match="takes a DataFrame"):
        PartiallyLinearRegressor(["M"], comp).fit(df[[*XS, "M"]].to_numpy(), df["Y"])


def test_cross_fitting_offers_it_to_the_outcome_model_given_the_mediator_only():
    from mlearner_dist.core.effects import cross_fit_effects
    from mlearner_dist.core.nuisance import NuisanceSpec
    from mlearner_dist.core.roles import Roles
    from mlearner_dist.datasets import simulate

    roles = Roles("unit_id", "T", "Y", ("M",), tuple(f"X{i}" for i in range(1, 11)))
    df = simulate("simple-part", 600, seed=3, noise_sd=1.0)
    spec = NuisanceSpec(auto_candidates=("linear", "partially_linear", "linear_boosting"))
    eff, diag = cross_fit_effects(df, roles, spec, n_folds=3, seed=3)
    choices = diag["learner_choice"]
    assert "partially_linear" in choices["mu_y1m"]["cv_loss"]
    for key, choice in choices.items():
        if key != "mu_y1m":
            assert "partially_linear" not in choice["cv_loss"], key
    assert np.isfinite(eff[["indirect", "direct", "score_indirect"]].to_numpy()).all()
