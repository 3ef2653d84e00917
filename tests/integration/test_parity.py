"""One house: the in-memory MLearner and the distributed pipeline give the same analysis.

Both run the same core functions (selection, calibration, subgroup effects); the pipeline only
moves the work to Spark and Dask. On Jobs II with ``calibration.mode: fixed`` and on a simulated
set embedded on the landmark path (``embed.exact_max_n`` lowered below n) with the rows shuffled,
the two must agree on ``declared``, the chosen configuration, ``p_leaf`` and every subgroup.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from mlearner_dist.config import estimator_params, load_config
from mlearner_dist.core.estimator import MLearner
from mlearner_dist.core.jsonable import to_jsonable
from mlearner_dist.datasets import load_jobs_ii, simulate
from mlearner_dist.pipeline import run_pipeline

pytestmark = [pytest.mark.spark, pytest.mark.dask]

COMMON = [
    "compute.spark.master=local[2]",
    "compute.spark.driver_memory=2g",
    "tracking.enabled=false",
    "report.figures=false",
    "report.html=false",
    "calibration.mode=fixed",
    "subgroups.n_bootstrap=200",
    "profile.cv_folds=5",
]


def _missing(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _close(a, b, rtol=1e-9):
    if _missing(a) or _missing(b):
        return _missing(a) and _missing(b)  # result.json writes NaN as null
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return math.isclose(float(a), float(b), rel_tol=rtol, abs_tol=1e-12)


def _assert_same(result: dict, model: MLearner) -> None:
    assert result["declared"] == model.declared_
    # one diagnostics builder (core.nuisance_diagnostics): Spark's record adds only its timings
    # (result.json is written with sorted keys)
    spark_diag, memory_diag = result["nuisance_diagnostics"], model.selection_.diagnostics
    assert sorted(spark_diag) == sorted([*memory_diag, "timings"])
    assert sorted(spark_diag["models"]) == sorted(memory_diag["models"])
    for key in ("k", "tree_id", "n_leaves", "variables"):
        assert result["chosen"][key] == model.chosen_[key], key
    assert _close(result["p_leaf"], model.p_leaf_)
    assert _close(result["threshold"], model.threshold_)
    sens, want_sens = result.get("sensitivity"), to_jsonable(model.sensitivity_)
    assert (sens is None) == (want_sens is None)
    if sens is not None:
        for part in ("estimate", "ci_low", "ci_high"):
            assert np.allclose(sens["whole"][part], want_sens["whole"][part], rtol=1e-9)
        assert len(sens["subgroups"]) == len(want_sens["subgroups"])
    stab, want_stab = result.get("stability"), to_jsonable(model.stability_)
    assert (stab is None) == (want_stab is None)
    if stab is not None:
        assert stab["seeds"] == want_stab["seeds"]
        assert np.allclose(stab["ari"], want_stab["ari"], rtol=1e-9)
        assert np.allclose(stab["p_leaf"], want_stab["p_leaf"], rtol=1e-9)
    wanted = to_jsonable(model.subgroups_)  # as result.json writes them (NaN -> null)
    assert len(result["subgroups"]) == len(wanted)
    for got, want in zip(result["subgroups"], wanted, strict=True):
        assert (got["leaf"], got["rule"], got["n"]) == (want["leaf"], want["rule"], want["n"])
        for name in ("indirect", "direct", "total", "prop_mediated"):
            g, w = got[name], want[name]
            assert (g is None) == (w is None), name
            if g is not None:
                for part in ("estimate", "ci_low", "ci_high"):
                    assert _close(g[part], w[part]), (name, part, g[part], w[part])


def test_jobs_ii_pipeline_equals_in_memory(tmp_path):
    cfg = load_config(["conf/base.yaml", "conf/jobs_ii.yaml"], [*COMMON, "embed.n_iter=500"])
    result = run_pipeline(cfg, tmp_path / "run")
    frame = load_jobs_ii()
    model = MLearner(**estimator_params(cfg)).fit_frame(frame, cfg.roles)
    _assert_same(result, model)


def test_honest_subgroups_pipeline_equals_in_memory(tmp_path):
    """subgroups.honest with a fixed threshold: both select on the same hashed half and estimate
    the subgroups of both targets on the other half."""
    data = simulate("simple-all", 500, seed=6, noise_sd=0.1)
    path = tmp_path / "sim.parquet"
    data.to_parquet(path)
    cfg = load_config(
        ["conf/base.yaml", "conf/simulated.yaml"],
        [
            *COMMON,
            f"data.source={path}",
            "subgroups.honest=true",
            "calibration.threshold=0.01",
            "effects.learner=linear",
            "embed.n_iter=300",
            "cluster.k_max=3",
            "stability.n_seeds=0",
            "sensitivity.enabled=false",
        ],
    )
    result = run_pipeline(cfg, tmp_path / "run")
    model = MLearner(**estimator_params(cfg)).fit_frame(data, cfg.roles)
    assert result["calibration"]["subgroups_honest"] is True
    assert all(sg["estimated_on"] == "holdout" for sg in result["subgroups"])
    assert sum(sg["n"] for sg in result["subgroups"]) == result["calibration"]["n_holdout"]
    _assert_same(result, model)
    total = result["targets"]["total"]
    want = to_jsonable(model.targets_["total"])
    assert total["p_leaf"] == pytest.approx(want["p_leaf"])
    assert [sg["n"] for sg in total["subgroups"]] == [sg["n"] for sg in want["subgroups"]]
    assert all(sg["estimated_on"] == "holdout" for sg in total["subgroups"])


@pytest.mark.slow  # three calibrated fits, ~44 s: make test-slow keeps the default run < 15 min
def test_landmark_path_shuffled_rows_pipeline_equals_in_memory(tmp_path):
    data = simulate("simple-all", 700, seed=3, noise_sd=0.1)
    shuffled = data.sample(frac=1.0, random_state=1).reset_index(drop=True)
    path = tmp_path / "sim.parquet"
    shuffled.to_parquet(path)
    cfg = load_config(
        ["conf/base.yaml", "conf/simulated.yaml"],
        [
            *COMMON,
            f"data.source={path}",
            "embed.exact_max_n=300",
            "embed.n_landmarks=200",
            "embed.grid_size=500",
            "embed.n_iter=400",
            "cluster.k_max=3",
        ],
    )
    result = run_pipeline(cfg, tmp_path / "run")
    assert result["embedding"]["path"] == "landmark"
    model = MLearner(**estimator_params(cfg)).fit_frame(data, cfg.roles)
    _assert_same(result, model)
    again = MLearner(**estimator_params(cfg)).fit_frame(shuffled, cfg.roles)
    _assert_same(result, again)
    pd.testing.assert_frame_equal(model.effects_, again.effects_)
    assert np.array_equal(model.selection_.embedding, again.selection_.embedding)
