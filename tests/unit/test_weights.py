"""Analysis (sampling) weights: weighted nuisance fits, means and variances; equal = none."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from mlearner_dist.core.effects import cross_fit_effects
from mlearner_dist.core.estimator import MLearner, average_effects
from mlearner_dist.core.nuisance import NuisanceSpec
from mlearner_dist.core.roles import Roles
from mlearner_dist.datasets import simulate

XCOLS = tuple(f"X{i}" for i in range(1, 11))
FAST = {
    "n_iter": 300,
    "k_values": (2, 3),
    "cv_folds": 5,
    "n_bootstrap": 20,
    "n_replicates": 49,
    "learner": "linear",
    "stability_seeds": 0,
    "sensitivity": False,
}


def test_sampling_weights_recover_the_population_average_effect():
    """Units with X1 <= 0 are sampled with probability 1/4 (weight 4): the weighted average of
    the scores estimates the population average NIE, the unweighted one the sample's."""
    pop = simulate("simple-all", 12_000, seed=5, noise_sd=1.0)
    keep = (pop["X1"] > 0) | (np.random.default_rng(6).uniform(size=len(pop)) < 0.25)
    df = pop[keep].reset_index(drop=True).assign(w=lambda d: np.where(d["X1"] > 0, 1.0, 4.0))
    truth = float(pop["true_indirect"].mean())
    roles = Roles("unit_id", "T", "Y", ("M",), XCOLS, weight="w")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        eff, _ = cross_fit_effects(df, roles, NuisanceSpec(learner="linear"), n_folds=5, seed=0)
    weighted = average_effects(eff)["indirect"]
    unweighted = average_effects(eff.drop(columns=["design_weight"]))["indirect"]
    assert weighted["ci_low"] < truth < weighted["ci_high"]
    assert unweighted["ci_low"] > truth  # the oversampled X1 > 0 units have the larger NIE


def test_weights_equal_to_two_give_the_unweighted_analysis():
    df = simulate("simple-part", 600, seed=3, noise_sd=1.0).assign(w=2.0)
    plain_roles = Roles("unit_id", "T", "Y", ("M",), XCOLS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = MLearner(**FAST).fit_frame(df, plain_roles)
        twos = MLearner(**FAST).fit(
            df[list(XCOLS)],
            treatment=df["T"],
            outcome=df["Y"],
            mediator=df["M"],
            unit_id=df["unit_id"],
            weight=df["w"],
        )
    assert "design_weight" in twos.effects_.columns
    cols = ["indirect", "direct", "total", "score_indirect", "score_total"]
    np.testing.assert_allclose(twos.effects_[cols], plain.effects_[cols], rtol=1e-12)
    assert twos.p_leaf_ == pytest.approx(plain.p_leaf_, rel=1e-9)
    assert twos.declared_ == plain.declared_
    for name in ("indirect", "direct", "total"):
        for key in ("estimate", "ci_low", "ci_high"):
            assert twos.average_effects_[name][key] == pytest.approx(
                plain.average_effects_[name][key], rel=1e-9
            )
    a = pd.json_normalize(plain.subgroups_).drop(columns=["leaf"], errors="ignore")
    b = pd.json_normalize(twos.subgroups_).drop(columns=["leaf"], errors="ignore")
    assert list(a.columns) == list(b.columns)
    num = [c for c in a.columns if pd.api.types.is_numeric_dtype(a[c])]
    np.testing.assert_allclose(b[num].to_numpy(float), a[num].to_numpy(float), rtol=1e-8)


def test_varying_weights_change_the_nuisance_fits():
    df = simulate("simple-all", 600, seed=4, noise_sd=1.0)
    df["w"] = np.where(df["X2"] > 0, 3.0, 1.0)
    spec = NuisanceSpec(learner="linear")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        weighted, _ = cross_fit_effects(
            df, Roles("unit_id", "T", "Y", ("M",), XCOLS, weight="w"), spec, n_folds=3, seed=0
        )
        plain, _ = cross_fit_effects(
            df, Roles("unit_id", "T", "Y", ("M",), XCOLS), spec, n_folds=3, seed=0
        )
    assert not np.allclose(weighted["indirect"], plain["indirect"])
