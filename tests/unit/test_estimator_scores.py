"""MLearner with the DR-score decision (fidelity: ours) and score replicates, end to end."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from mlearner_dist.config import estimator_params, load_config
from mlearner_dist.core.estimator import (
    MLearner,
    cross_split_directions,
    cross_split_halves,
    cross_split_stability,
)
from mlearner_dist.core.roles import Roles
from mlearner_dist.datasets import SCENARIOS, simulate
from mlearner_dist.exceptions import ConfigError

ROLES = Roles("unit_id", "T", "Y", ("M",), tuple(f"X{i}" for i in range(1, 11)))
FAST = {"n_iter": 300, "k_values": (2, 3, 4), "cv_folds": 5, "n_bootstrap": 20, "n_replicates": 49}


def _fit(scenario, n, seed, noise_sd, **params):
    df = simulate(scenario, n, seed=seed, noise_sd=noise_sd)
    model = MLearner(**{**FAST, "design": SCENARIOS[scenario].design, "random_state": seed})
    model.set_params(**params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return df, model.fit_frame(df, ROLES)


def test_cross_split_record_is_what_was_tested_and_agrees_with_declared():
    df, m = _fit("mediator-slope", 1000, 0, 1.0)
    df = df.sort_values("unit_id").reset_index(drop=True)
    cal = m.calibration_
    assert cal["mode"] == "null" and cal["replicates"] == "scores" and cal["honest"] is True
    assert cal["n_replicates"] == 49 and cal["threshold"] == m.threshold_ == 0.05
    dirs = {d["direction"]: d for d in cal["directions"]}
    assert set(dirs) == {"A->B", "B->A"}
    for d in dirs.values():
        null = np.asarray(d["null_p_leaf"])
        assert len(null) == 49
        assert d["mc_pvalue"] == pytest.approx((1 + np.sum(null <= d["p_observed"])) / 50)
        assert d["mc_se"] == pytest.approx(np.sqrt(d["mc_pvalue"] * (1 - d["mc_pvalue"]) / 49))
    # Bonferroni over the two directions is the decision p-value, and the top-level one
    p_dec = min(1.0, 2 * min(d["mc_pvalue"] for d in dirs.values()))
    assert cal["p_decision"] == cal["mc_pvalue"] == m.p_leaf_ == pytest.approx(p_dec)
    assert m.declared_ == (m.p_leaf_ < m.threshold_)
    # the halves partition the units and are the split_sample halves
    assert cal["halves"]["A"] + cal["halves"]["B"] == len(df)
    # what is reported is the winning direction's tested tree, estimated on its test half
    win = dirs[cal["chosen_on_discovery"]["direction"]]
    assert m.reported_tree_.to_dict() == win["tree"]
    assert m.chosen_["variables"] == win["chosen"]["variables"]
    assert len(m.subgroups_) == m.reported_tree_.n_leaves
    assert all(sg["estimated_on"] == "holdout" for sg in m.subgroups_)
    assert sum(sg["n"] for sg in m.subgroups_) == cal["n_holdout"]
    # both targets side by side; the top-level decision is the indirect target's
    ind, tot = m.targets_["indirect"], m.targets_["total"]
    assert (ind["p_leaf"], ind["threshold"], ind["declared"]) == (
        m.p_leaf_,
        m.threshold_,
        m.declared_,
    )
    assert tot["chosen"]["response"] == "score_total"
    assert tot["declared"] == (tot["p_leaf"] < tot["threshold"])
    assert {d["direction"] for d in tot["directions"]} == {"A->B", "B->A"}
    # seed stability re-runs the cross-split decision (the default calibration) with other seeds
    st = m.stability_
    assert st is not None and st["n_seeds"] == m.stability_seeds == 5
    assert len(st["p_leaf"]) == len(st["ari"]) == 5
    assert st["share_declared"] == pytest.approx(np.mean(np.asarray(st["p_leaf"]) < 0.05))
    tests, _ = cross_split_directions(
        m, cross_split_halves(m, df, ROLES), ROLES, "indirect", seed=st["seeds"][0]
    )
    assert st["p_leaf"][0] == pytest.approx(min(1.0, 2 * min(t.mc_pvalue for t in tests)))
    # family-wise: Bonferroni over the two targets
    m.familywise = True
    fw = m._targets(df, ROLES, m.selection_, map_fn=None)
    for t in ("indirect", "total"):
        assert fw[t]["p_familywise"] == pytest.approx(min(1.0, 2 * fw[t]["p_leaf"]))
        assert fw[t]["declared"] == (fw[t]["p_familywise"] < 0.05)


def test_cross_split_needs_enough_replicates_to_ever_declare():
    with pytest.raises(ConfigError, match=r"n_replicates=19.*B >= 40"):
        MLearner(n_replicates=19).check_params()
    MLearner(n_replicates=40).check_params()
    MLearner(n_replicates=19, honest=False).check_params()  # full-sample: any B
    # the configuration says so before any work, and the family-wise option needs twice as many
    with pytest.raises(ConfigError, match=r"calibration.n_replicates=19"):
        load_config([], ["calibration.n_replicates=19"])
    with pytest.raises(ConfigError, match=r"B >= 80"):
        load_config([], ["calibration.n_replicates=49", "calibration.familywise=true"])
    load_config([], ["calibration.n_replicates=19", "calibration.mode=split"])


def test_reference_statistic_keeps_the_interaction_decision():
    _, m = _fit(
        "simple-all",
        400,
        1,
        0.01,
        test_statistic="interaction",
        null_replicates="permutation",
        merge_leaves=False,
        calibration="fixed",
    )
    tested = [c for c in m.selection_.configurations if c["selected_for_test"]]
    assert m.selection_.response == "m"
    assert m.p_leaf_ == min(c["p_m"] for c in tested)
    assert all("p_score" not in c for c in tested)
    assert m.calibration_["mode"] == "fixed"


def test_reference_preset_and_bad_combinations():
    cfg = load_config([], ["fidelity=reference"])
    p = estimator_params(cfg)
    assert p["test_statistic"] == "interaction" and p["merge_leaves"] is False
    assert p["null_replicates"] == "permutation"
    ours = estimator_params(load_config([], []))
    assert ours["test_statistic"] == "dr_score" and ours["n_replicates"] == 99
    with pytest.raises(ConfigError, match="null_replicates='scores' needs test_statistic"):
        MLearner(test_statistic="interaction").check_params()
    with pytest.raises(ConfigError, match="merge_level=0"):
        MLearner(merge_level=0).check_params()


def test_split_mode_reports_what_it_tested():
    _, m = _fit("mediator-slope", 800, 3, 0.01, calibration="split")
    cal = m.calibration_
    assert cal["mode"] == "split"
    assert m.p_leaf_ == cal["p_decision"] and m.threshold_ == m.alpha
    assert m.declared_ == (cal["p_decision"] < m.alpha)
    assert m.chosen_ == cal["chosen_on_discovery"]
    assert m.chosen_["response"] == "score_indirect"
    tree = m.reported_tree_
    assert [s["rule"] for s in m.subgroups_] == [tree.rules[k] for k in sorted(tree.rules)]
    assert all(s["estimated_on"] == "holdout" for s in m.subgroups_)
    assert sum(s["n"] for s in m.subgroups_) == cal["n_holdout"]


def test_confounded_null_is_not_declared_by_the_default_decision():
    """Observational null (assignment and outcome level both depend on X1): not declared.

    The reference's unadjusted interaction test sees the confounding as heterogeneity on
    {X1 > 0} (p < 1e-6); the cross-split DR-score decision, whose scores carry the fitted
    propensity, does not declare it, for either target.
    """
    from mlearner_dist.core.interaction_test import interaction_pvalue

    df, m = _fit("confounded-null", 1000, 10001, 1.0)
    side = (df.X1 > 0).to_numpy().astype(int)
    assert interaction_pvalue(df.Y.to_numpy(), df["T"].to_numpy(), side) < 1e-6
    assert m.design == "observational" and m.calibration_["honest"] is True
    assert not m.declared_
    assert not m.targets_["total"]["declared"]
    # each direction tests the units with overlap (estimated propensity in [0.1, 0.9])
    cal = m.calibration_
    assert cal["overlap_trim"] == 0.1
    for d in cal["directions"]:
        test_half = cal["halves"][d["direction"][-1]]
        assert d["n_tested"] + d["n_outside_overlap"] == test_half
        assert 0 < d["n_outside_overlap"] < test_half / 2
    assert cal["n_outside_overlap"] == sum(d["n_outside_overlap"] for d in cal["directions"])
    assert "outside, not tested" in cal["how"]


def test_overlap_mask_is_the_crump_rule_and_randomised_designs_test_everyone():
    from mlearner_dist.core.effects import overlap_mask
    from mlearner_dist.core.estimator import tested_units

    e = np.array([0.01, 0.1, 0.5, 0.9, 0.95])
    assert overlap_mask(e, 0.1).tolist() == [False, True, True, True, False]
    assert overlap_mask(e, 0.0).all()
    with pytest.raises(ConfigError, match="trim"):
        overlap_mask(e, 0.5)


    eff = pd.DataFrame({"propensity": e})
    assert tested_units(MLearner(design="randomised"), eff).all()
    assert tested_units(MLearner(design="observational"), eff).sum() == 3
    assert tested_units(MLearner(design="observational", overlap_trim=0), eff).all()
    with pytest.raises(ConfigError, match="overlap_trim"):
        MLearner(overlap_trim=-0.1).check_params()


def _sorted_fit_inputs(model):
    """The frame and roles a fitted model saw (its halves are cached for them)."""
    halves = model._cross_split_halves
    frame = pd.concat([halves.frames["A"], halves.frames["B"]], ignore_index=True)
    return frame.sort_values("unit_id").reset_index(drop=True), ROLES


def test_cross_split_seed_stability_agrees_on_a_strong_partition():
    """simple-all, noise sd 0.01: every seed declares and finds the reported partition again."""
    _, m = _fit("simple-all", 800, 3, 0.01, stability_seeds=3)
    st = m.stability_
    assert m.declared_ and st["n_seeds"] == 3
    assert st["share_declared"] == 1.0
    assert st["median_ari"] > 0.8
    assert "cross-split" in st["how"]
    # off when asked
    m.set_params(stability_seeds=0)
    assert cross_split_stability(m, *_sorted_fit_inputs(m), m.reported_tree_) is None


def test_cross_split_runs_its_heavy_steps_through_map_fn_with_the_same_result():
    """Half fits, discovery selections and stability seeds go through map_fn; same result."""
    calls = []

    def recording_map(func, items):
        items = list(items)
        calls.append(len(items))
        return [func(x) for x in items]

    df, plain = _fit("simple-all", 300, 5, 0.01, stability_seeds=2)
    model = MLearner(**{**FAST, "design": "randomised", "random_state": 5, "stability_seeds": 2})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mapped = model.fit_frame(df, ROLES, map_fn=recording_map)
    # 2 halves, 2 discovery selections per target (indirect, total), 2 stability seeds
    assert calls.count(2) >= 4 and sum(calls) >= 2 + 2 * 2 + 2
    assert mapped.p_leaf_ == plain.p_leaf_ and mapped.declared_ == plain.declared_
    assert mapped.calibration_["directions"] == plain.calibration_["directions"]
    assert mapped.targets_["total"]["p_leaf"] == plain.targets_["total"]["p_leaf"]
    assert mapped.stability_["p_leaf"] == plain.stability_["p_leaf"]
