"""``subgroups.honest``: selection and calibration on a hashed half, subgroups on the other.

And the post-selection caveat when the subgroup effects come from the units that chose them.
"""

from __future__ import annotations

import warnings

import pytest

from mlearner_dist.core.effect_summaries import POST_SELECTION_NOTE, post_selection_note
from mlearner_dist.core.estimator import MLearner
from mlearner_dist.core.honest_calibration import split_halves
from mlearner_dist.core.roles import Roles
from mlearner_dist.datasets import simulate
from mlearner_dist.exceptions import ConfigError
from mlearner_dist.summary import format_summary

ROLES = Roles("unit_id", "T", "Y", ("M",), tuple(f"X{i}" for i in range(1, 11)))
FAST = {
    "n_iter": 300,
    "k_values": (2, 3),
    "cv_folds": 5,
    "n_bootstrap": 20,
    "learner": "linear",
    "calibration": "fixed",
    "threshold": 0.01,
    "stability_seeds": 0,
    "sensitivity": False,
    "random_state": 4,
}


@pytest.fixture(scope="module")
def data():
    return simulate("simple-all", 600, seed=4, noise_sd=0.1)


def _fit(data, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return MLearner(**{**FAST, **params}).fit_frame(data, ROLES)


@pytest.fixture(scope="module")
def honest(data):
    return _fit(data, honest_subgroups=True)


@pytest.fixture(scope="module")
def plain(data):
    return _fit(data)


def test_honest_subgroups_are_chosen_on_one_half_and_estimated_on_the_other(data, honest, plain):
    cal = honest.calibration_
    frame = data.sort_values("unit_id").reset_index(drop=True)
    mask = split_halves(frame, ROLES, FAST["random_state"])
    assert cal["subgroups_honest"] is True and cal["mode"] == "fixed"
    assert (cal["n_discovery"], cal["n_holdout"]) == (int(mask.sum()), int((~mask).sum()))
    # the decision is the discovery half's selection against the fixed threshold
    discover = frame[mask].reset_index(drop=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sel = MLearner(**FAST).select(discover, ROLES)
    assert honest.p_leaf_ == cal["p_decision"] == pytest.approx(sel.p_leaf)
    assert honest.declared_ == (sel.p_leaf < FAST["threshold"])
    assert honest.chosen_["variables"] == sel.chosen["variables"]
    assert honest.reported_tree_.to_dict() == sel.chosen_tree.to_dict()
    # the subgroups are that tree's leaves on the held-out half only
    holdout = frame[~mask]
    leaf = honest.reported_tree_.leaf_of(holdout[list(ROLES.covariates)])
    assert [sg["n"] for sg in honest.subgroups_] == [
        int((leaf == lf).sum()) for lf in sorted(honest.reported_tree_.rules)
    ]
    assert all(sg["estimated_on"] == "holdout" for sg in honest.subgroups_)
    assert sum(sg["n"] for sg in honest.subgroups_) == cal["n_holdout"]
    # each subgroup's weight diagnostics over its held-out treated units
    t_hold = holdout["T"].to_numpy() == 1
    assert [sg["overlap"]["n_treated"] for sg in honest.subgroups_] == [
        int((t_hold & (leaf == lf)).sum()) for lf in sorted(honest.reported_tree_.rules)
    ]
    assert "subgroups.honest" in cal["how"]
    # the total target the same way: chosen on the discovery half, estimated on the other
    total = honest.targets_["total"]
    assert total["tree"] is not None
    assert all(sg["estimated_on"] == "holdout" for sg in total["subgroups"])
    assert sum(sg["n"] for sg in total["subgroups"]) == cal["n_holdout"]
    assert honest.targets_["indirect"]["p_leaf"] == honest.p_leaf_
    # the average effects use every unit (no selection is involved)
    assert honest.average_effects_ == plain.average_effects_


def test_post_selection_subgroups_are_marked_and_the_summary_says_so(plain, honest):
    assert plain.calibration_.get("subgroups_honest") is None
    assert all(sg["estimated_on"] == "same_units" for sg in plain.subgroups_)
    assert all(sg["estimated_on"] == "same_units" for sg in plain.targets_["total"]["subgroups"])
    doc = {
        "subgroups": plain.subgroups_,
        "targets": plain.targets_,
    }
    assert post_selection_note(doc) == POST_SELECTION_NOTE
    assert post_selection_note({"subgroups": honest.subgroups_, "targets": honest.targets_}) is None



def test_summary_and_report_state_the_caveat(tmp_path, real_result):
    from mlearner_dist.report import write_report

    # the fixture: default cross-split calibration, held-out subgroups: no caveat
    assert "post-selection" not in format_summary(real_result, tmp_path)
    for sg in real_result["subgroups"]:
        sg["estimated_on"] = "same_units"
    text = format_summary(real_result, tmp_path)
    assert "post-selection intervals" in text and "subgroups.honest: true" in text
    write_report(real_result, tmp_path)
    assert "post-selection intervals" in (tmp_path / "report.html").read_text()


def test_honest_subgroups_change_nothing_where_the_calibration_holds_out():
    split = MLearner(calibration="split", honest_subgroups=True)
    cross = MLearner(calibration="null", honest_subgroups=True)
    assert not split.splits_for_subgroups(1000) and not cross.splits_for_subgroups(1000)
    assert split.holds_out_subgroups(1000) and cross.holds_out_subgroups(1000)
    # permutation replicates above their limit fall back to split, which holds out
    perm = MLearner(calibration="null", null_replicates="permutation", honest_subgroups=True)
    assert perm.splits_for_subgroups(1000) and not perm.splits_for_subgroups(10**6)
    assert not MLearner(calibration="fixed").holds_out_subgroups(1000)
    with pytest.raises(ConfigError, match="honest_subgroups"):
        MLearner(honest_subgroups="yes").check_params()
