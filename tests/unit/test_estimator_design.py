"""MLearner on a cluster-randomised trial (and with weights): end to end, by cluster."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from mlearner_dist.core.estimator import MLearner
from mlearner_dist.core.roles import Roles
from mlearner_dist.datasets import simulate
from mlearner_dist.exceptions import ConfigError
from mlearner_dist.study import study_roles

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
XCOLS = [f"X{i}" for i in range(1, 11)]


@pytest.fixture(scope="module")
def clustered():
    df = simulate("cluster-alt", 1000, seed=0, noise_sd=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = MLearner(**FAST).fit(
            df[XCOLS],
            treatment=df["T"],
            outcome=df["Y"],
            mediator=df["M"],
            unit_id=df["unit_id"],
            cluster=df["cluster"],
        )
    return df, model


def test_cluster_fit_keeps_clusters_whole_and_reports_cluster_robust_effects(clustered):
    df, m = clustered
    assert m.roles_.cluster == "__C"
    assert "design_cluster" in m.effects_.columns
    halves = m._cross_split_halves
    in_a = set(halves.frames["A"]["__C"])
    assert in_a.isdisjoint(set(halves.frames["B"]["__C"]))
    # folds by cluster: every cluster in one fold
    eff = m.effects_.merge(df, on="unit_id")
    assert (eff.groupby("cluster")["fold"].nunique() == 1).all()
    cal = m.calibration_
    assert cal["honest"] is True and len(cal["directions"]) == 2
    assert m.subgroups_ and all(sg.get("estimated_on") == "holdout" for sg in m.subgroups_)
    total = m.average_effects_["total"]
    assert total["ci_low"] < 1.0 + df["in_subgroup"].mean() < total["ci_high"]


def test_cluster_intervals_are_wider_than_unit_intervals(clustered):
    from mlearner_dist.core.design_variance import DESIGN_COLUMNS
    from mlearner_dist.core.estimator import average_effects

    _, m = clustered
    unit = average_effects(m.effects_.drop(columns=list(DESIGN_COLUMNS), errors="ignore"))
    robust = m.average_effects_
    for name in ("indirect", "total"):
        w_r = robust[name]["ci_high"] - robust[name]["ci_low"]
        w_u = unit[name]["ci_high"] - unit[name]["ci_low"]
        assert w_r > 1.2 * w_u


def test_cluster_design_refuses_the_interaction_statistic():
    df = simulate("cluster-null", 400, seed=1, noise_sd=1.0)
    model = MLearner(
        **{
            **FAST,
            "test_statistic": "interaction",
            "calibration": "fixed",
            "null_replicates": "permutation",
        }
    )
    with pytest.raises(ConfigError, match=r"test\.statistic: dr_score"):
        model.fit_frame(df, study_roles(True, "cluster-null"))


def test_mixed_treatment_within_a_cluster_is_refused_before_any_work():
    from mlearner_dist.exceptions import InputValidationError

    df = simulate("cluster-null", 400, seed=1, noise_sd=1.0)
    df.loc[0, "T"] = 1 - df.loc[0, "T"]
    with pytest.raises(InputValidationError, match=r"'cluster' \(cluster\): 1 of 20 clusters"):
        MLearner(**FAST).fit_frame(df, study_roles(True, "cluster-null"))


def test_no_design_gives_no_design_columns():
    df = simulate("simple-null1", 300, seed=2, noise_sd=1.0)
    roles = Roles("unit_id", "T", "Y", ("M",), tuple(XCOLS))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = MLearner(**{**FAST, "calibration": "fixed"}).fit_frame(df, roles)
    assert not {"design_cluster", "design_weight"} & set(m.effects_.columns)
    assert isinstance(m.effects_, pd.DataFrame) and np.isfinite(m.p_leaf_)


def test_permutation_calibration_re_randomises_clusters(monkeypatch):
    import mlearner_dist.core.calibration as cal

    calls = []
    real = cal.permute_between_clusters

    def spy(t, frame, cluster, strata, rng):
        out = real(t, frame, cluster, strata, rng)
        calls.append(int(pd.Series(out).groupby(frame[cluster].to_numpy()).nunique().max()))
        return out

    monkeypatch.setattr(cal, "permute_between_clusters", spy)
    df = simulate("cluster-null", 400, seed=0, noise_sd=1.0)
    params = {**FAST, "n_replicates": 9, "null_replicates": "permutation"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = MLearner(**params).fit_frame(df, study_roles(True, "cluster-null"))
    assert m.calibration_["mode"] == "null" and len(m.calibration_["null_p_leaf"]) == 9
    assert calls == [1] * 9  # every replicate keeps one arm per cluster


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({"null_replicates": "permutation", "permutation_max_n": 100}, "permutation_max_n"),
        ({"null_max_n": 100}, "null_max_n"),
    ],
)
def test_null_calibration_above_its_limit_falls_back_to_split_and_says_so(params, key):
    """Each kind of null calibration has its own size limit (measured by bench_selection.py);
    above it the split mode runs and result.json's calibration record says why."""
    df = simulate("simple-null1", 200, seed=0, noise_sd=1.0)
    model = MLearner(**{**FAST, **params})
    assert model.fallback_limit() == (key, 100)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = model.fit_frame(df, study_roles(True))
    cal = m.calibration_
    assert cal["mode"] == "split" and cal["requested_mode"] == "null"
    assert f"200 units > calibration.{key}=100" in cal["fallback"]
    assert MLearner(calibration="fixed").fallback_limit() is None
    assert MLearner(honest=False).fallback_limit() is None
