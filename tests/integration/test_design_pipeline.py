"""Trial designs (strata, clusters, weights) in the distributed pipeline.

The Spark cross-fitting does not support designs, so the validate and effects stages run them in
memory on the driver with the core's checks and cross-fitting (up to ``effects.design_max_n``
units); every later stage reads the design from the units and the effects table. The pipeline's
analysis must equal the in-memory MLearner's on the same data.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from mlearner_dist.config import estimator_params, load_config
from mlearner_dist.core.estimator import MLearner
from mlearner_dist.datasets import simulate
from mlearner_dist.exceptions import ConfigError, InputValidationError
from mlearner_dist.pipeline import run_pipeline

pytestmark = [pytest.mark.spark, pytest.mark.dask]

COMMON = [
    "tracking.enabled=false",
    "report.figures=false",
    "report.html=false",
    "subgroups.n_bootstrap=100",
    "profile.cv_folds=5",
    "embed.n_iter=300",
    "cluster.k_max=3",
    "calibration.n_replicates=40",
    "stability.n_seeds=2",
    "sensitivity.enabled=false",
]


def _config(tmp_path, frame: pd.DataFrame, extra: list[str]):
    path = tmp_path / "design.parquet"
    frame.to_parquet(path)
    return load_config(
        ["conf/base.yaml", "conf/simulated.yaml"], [*COMMON, f"data.source={path}", *extra]
    )


def _close(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(b, float) and math.isnan(b):
        return a is None or math.isnan(a)
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)


def test_cluster_and_weight_design_pipeline_equals_in_memory(tmp_path):
    data = simulate("cluster-alt", 400, seed=2, noise_sd=1.0)
    data["w"] = np.random.default_rng(0).uniform(0.5, 2.0, len(data))
    cfg = _config(tmp_path, data, ["columns.cluster=cluster", "columns.weight=w"])
    assert cfg.roles.cluster == "cluster" and cfg.roles.weight == "w"
    result = run_pipeline(cfg, tmp_path / "run")
    model = MLearner(**estimator_params(cfg)).fit_frame(data, cfg.roles)
    assert result["declared"] == model.declared_
    assert _close(result["p_leaf"], model.p_leaf_)
    assert result["calibration"]["halves"] == model.calibration_["halves"]
    for name in ("indirect", "direct", "total"):
        for part in ("estimate", "ci_low", "ci_high"):
            assert _close(
                result["average_effects"][name][part], model.average_effects_[name][part]
            ), (name, part)
    assert [s["rule"] for s in result["subgroups"]] == [s["rule"] for s in model.subgroups_]
    assert result["stability"]["p_leaf"] == pytest.approx(model.stability_["p_leaf"], rel=1e-9)
    # the effects table carries the design, so every later stage is cluster-robust and weighted
    effects = pd.read_parquet(tmp_path / "run" / "effects")
    assert {"design_cluster", "design_weight"} <= set(effects.columns)
    got = effects.sort_values("unit_id").reset_index(drop=True)
    want = model.effects_.sort_values("unit_id").reset_index(drop=True)
    for col in ("score_indirect", "score_total", "indirect", "total"):
        np.testing.assert_allclose(got[col], want[col], rtol=1e-9, atol=1e-12)


def test_stratified_design_runs_in_memory_and_bad_designs_stop_in_validate(tmp_path):
    data = simulate("stratified-null", 500, seed=1, noise_sd=1.0)
    cfg = _config(tmp_path, data, ["columns.strata=[stratum]"])
    run_pipeline(cfg, tmp_path / "ok", stages=["validate", "effects"])
    effects = pd.read_parquet(tmp_path / "ok" / "effects").sort_values("unit_id")
    units = data.sort_values("unit_id")
    shares = units.groupby("stratum")["T"].transform("mean").to_numpy()
    # the known assignment probability is the unit's stratum share, not the overall share
    np.testing.assert_allclose(effects["propensity"].to_numpy(), shares, rtol=1e-12)

    # above effects.design_max_n: a clear error naming the setting, before any effects work
    small = _config(tmp_path, data, ["columns.strata=[stratum]", "effects.design_max_n=100"])
    with pytest.raises(ConfigError, match=r"effects\.design_max_n=100"):
        run_pipeline(small, tmp_path / "big", stages=["validate"])
    # a stratum with one arm is named by the in-memory checks
    bad = data.copy()
    bad.loc[bad["stratum"] == "c", "T"] = 1
    cfg_bad = _config(tmp_path, bad, ["columns.strata=[stratum]"])
    with pytest.raises(InputValidationError, match="stratum"):
        run_pipeline(cfg_bad, tmp_path / "bad", stages=["validate"])
