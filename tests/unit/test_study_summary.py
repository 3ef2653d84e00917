"""The study's per-setting summary: declared rate, driver and noise-covariate rates."""

from __future__ import annotations

import pytest

from mlearner_dist.datasets import SCENARIOS
from mlearner_dist.study import summarise_replicates


def _rep(seed, declared, variables, n_leaves=3):
    return {
        "seed": seed,
        "declared": declared,
        "variables": variables,
        "n_leaves": n_leaves,
        "p_leaf": 0.01 if declared else 0.5,
    }


def test_drivers_rate_counts_declared_replicates_using_every_driver():
    reps = [
        _rep(0, True, ["X1", "X2"]),
        _rep(1, True, ["X2", "X7"]),
        _rep(2, False, []),
        _rep(3, True, ["X2"], n_leaves=2),
    ]
    s = summarise_replicates(reps, SCENARIOS["confounded-alt"].drivers("indirect"))
    assert s["drivers"] == ["X2"]
    assert s["declared_rate"] == 0.75
    assert s["drivers_rate"] == 1.0
    assert s["noise_covariate_rate"] == pytest.approx(1 / 3)
    assert s["median_leaves"] == 3.0
    s = summarise_replicates(reps)  # the paper's drivers X1 and X2
    assert s["drivers_rate"] == pytest.approx(1 / 3)
    null = summarise_replicates(reps, SCENARIOS["confounded-null"].drivers("indirect"))
    assert null["drivers_rate"] is None


def test_scenario_drivers_per_target():
    assert SCENARIOS["simple-null1"].drivers("indirect") == ()
    assert SCENARIOS["simple-null1"].drivers("total") == ("X1", "X2")
    assert SCENARIOS["mediator-slope"].drivers("indirect") == ("X1", "X2")
    assert SCENARIOS["simple-global"].drivers("total") == ()


def test_run_replicate_can_ignore_the_design_for_the_comparison_rows(monkeypatch):
    """study.ignore_design analyses a stratified scenario without its strata (and nothing else)."""
    import mlearner_dist.study as study
    from mlearner_dist.config import load_config

    seen = []

    class Stop(Exception):
        pass

    class Recorder(study.MLearner):
        def fit_frame(self, frame, roles, **kw):
            seen.append(roles)
            raise Stop

    monkeypatch.setattr(study, "MLearner", Recorder)
    cfg = load_config([], [])
    for ignore in (False, True):
        with pytest.raises(Stop):
            study.run_replicate(cfg, "stratified-null", 200, 1.0, 1, ignore_design=ignore)
    assert seen[0].strata == ("stratum",) and seen[1].strata == ()
    assert seen[0].covariates == seen[1].covariates and seen[0].outcome == seen[1].outcome


def test_study_rate_rows_give_each_target_its_own_null_and_bound():
    from mlearner_dist.study import STUDY_OVERRIDES, study_rate_rows

    def rep(seed, declared, total):
        return {"seed": seed, "declared": declared, "n_replicates": 49,
                "total": {"declared": total}}

    doc = {
        "settings": {
            "k": {
                "scenario": "simple-null1",
                "n": 1000,
                "noise_sd": 1.0,
                "overrides": [*STUDY_OVERRIDES, "calibration.mode=split"],
                "replicates": {str(s): rep(s, s == 0, s < 18) for s in range(20)},
            }
        }
    }
    rows = study_rate_rows(doc).set_index("target")
    # simple-null1: the indirect effect has no driver (a null), the total effect varies
    assert rows.loc["indirect", "null"] and not rows.loc["total", "null"]
    assert rows.loc["indirect", "declared"] == 1 and rows.loc["total", "declared"] == 18
    assert rows.loc["indirect", "bound"] == pytest.approx(0.05 + 3 * (0.05 * 0.95 / 20) ** 0.5)
    assert rows.loc["indirect", "ok"] and rows.loc["total", "ok"] is None
    # only the overrides beyond the study's shared ones name the row
    label = "simple-null1 n=1000 sd=1 indirect calibration.mode=split"
    assert rows.loc["indirect", "label"] == label


@pytest.mark.slow  # two whole analyses (about 20 s alone)
def test_a_replicate_records_whether_the_mediator_values_overlap():
    """At noise sd 0.01 the arms' mediator values do not overlap given X (the indirect effect
    rests on the outcome model's extrapolation); the replicate says so, and at sd 1 they do."""
    from mlearner_dist.config import load_config
    from mlearner_dist.study import run_replicate

    cfg = load_config(
        [], ["calibration.mode=fixed", "sensitivity.enabled=false", "subgroups.n_bootstrap=20"]
    )
    tight = run_replicate(cfg, "simple-all", 400, 0.01, 3)
    assert tight["indirect_supported"] is False and tight["mean_density_ratio"] > 3 / 2
    assert run_replicate(cfg, "simple-all", 400, 1.0, 3)["indirect_supported"] is True
