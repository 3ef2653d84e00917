"""Seed-stability summary: agreement of re-runs with the reported partition."""

from __future__ import annotations

import numpy as np
import pytest

from mlearner_dist.core.stability import SeedRun, summarise_stability
from mlearner_dist.exceptions import MLearnerError


def test_identical_partitions_agree_fully_and_relabelling_does_not_matter():
    leaf = np.repeat([1, 2, 3], 50)
    runs = [
        SeedRun(1, 0.001, leaf.copy(), ("a", "b", "c"), ("X1",)),
        SeedRun(2, 0.002, 4 - leaf, ("c", "b", "a"), ("X1",)),  # the same groups, other labels
    ]
    out = summarise_stability(leaf, ["a", "b", "c"], 0.01, runs)
    assert out["ari"] == [1.0, 1.0] and out["share_declared"] == 1.0
    assert out["rule_recurrence"] == {"a": 1.0, "b": 1.0, "c": 1.0}
    assert out["variables"] == {"X1": 1.0}


def test_unrelated_partitions_and_partial_recurrence():
    rng = np.random.default_rng(0)
    leaf = np.repeat([1, 2], 500)
    runs = [
        SeedRun(1, 0.2, rng.integers(0, 2, 1000), ("a",), ("X5",)),
        SeedRun(2, 0.001, leaf, ("a", "b"), ("X1", "X2")),
    ]
    out = summarise_stability(leaf, ["a", "b"], 0.01, runs)
    assert abs(out["ari"][0]) < 0.05 and out["ari"][1] == 1.0
    assert out["share_declared"] == 0.5
    assert out["rule_recurrence"] == {"a": 1.0, "b": 0.5}
    assert out["variables"] == {"X1": 0.5, "X2": 0.5, "X5": 0.5}


def test_bad_input():
    with pytest.raises(MLearnerError, match="at least one"):
        summarise_stability(np.zeros(3), [], 0.05, [])
    with pytest.raises(MLearnerError, match="leaf labels for"):
        summarise_stability(np.zeros(3), [], 0.05, [SeedRun(1, 0.1, np.zeros(2), (), ())])


def test_mlearner_reports_seed_stability_on_a_clear_signal():
    from mlearner_dist.core.estimator import MLearner
    from mlearner_dist.datasets import simulate

    frame = simulate("simple-all", 500, seed=4, noise_sd=0.01)
    covs = [f"X{i}" for i in range(1, 11)]
    kw = {"calibration": "fixed", "threshold": 0.01, "k_values": (2, 3), "n_bootstrap": 50,
          "sensitivity": False, "learner": "linear"}
    model = MLearner(stability_seeds=3, **kw).fit(
        frame[covs], treatment=frame["T"], mediator=frame["M"], outcome=frame["Y"]
    )
    st = model.stability_
    assert st["n_seeds"] == 3 and len(st["ari"]) == 3
    assert model.declared_ and st["share_declared"] >= 2 / 3
    assert st["median_ari"] > 0.5, st
    off = MLearner(stability_seeds=0, **kw).fit(
        frame[covs], treatment=frame["T"], mediator=frame["M"], outcome=frame["Y"]
    )
    assert off.stability_ is None
