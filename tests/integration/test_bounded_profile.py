"""The profile stage above compute.driver_max_rows: trees on a hashed sample, tests on Spark.

The driver holds about ``driver_max_rows`` units; every p-value, leaf merge and leaf size comes
from leaf moments pooled over Spark partitions. Checked against the same tests recomputed in
memory from the run's own units and effects.
"""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from mlearner_dist.config import load_config
from mlearner_dist.core.score_test import score_pvalue
from mlearner_dist.core.selection import leaf_pvalues
from mlearner_dist.datasets import simulate
from mlearner_dist.pipeline import run_pipeline
from mlearner_dist.stages import read_manifest

pytestmark = [pytest.mark.spark, pytest.mark.dask]

COVS = [f"X{i}" for i in range(1, 11)]


def test_profile_above_the_driver_budget_tests_every_unit(tmp_path):
    n, budget = 3000, 1000
    data = simulate("simple-all", n, seed=11, noise_sd=0.1)
    path = tmp_path / "sim.parquet"
    data.to_parquet(path)
    cfg = load_config(
        ["conf/base.yaml", "conf/simulated.yaml"],
        [
            "compute.spark.master=local[2]",
            "compute.spark.driver_memory=2g",
            "compute.spark.partitions=4",
            f"compute.driver_max_rows={budget}",
            "tracking.enabled=false",
            "report.figures=false",
            "report.html=false",
            "calibration.mode=fixed",
            "subgroups.n_bootstrap=50",
            "profile.cv_folds=5",
            f"data.source={path}",
            "effects.learner=linear",
            "embed.n_iter=300",
            "cluster.k_max=3",
            "stability.n_seeds=0",
            "sensitivity.enabled=false",
        ],
    )
    out = tmp_path / "run"
    result = run_pipeline(cfg, out)
    manifest = read_manifest(out, "profile")
    assert manifest.rows == {"in": n, "out": n}
    assert 0.8 * budget < manifest.extra["driver_rows"] < 1.2 * budget

    units = pd.read_parquet(out / "units").sort_values("unit_id").reset_index(drop=True)
    effects = pd.read_parquet(out / "effects").set_index("unit_id").loc[units["unit_id"]]
    trees = pickle.loads((out / "trees.pkl").read_bytes())
    chosen = result["chosen"]
    tree = trees[(int(chosen["k"]), int(chosen["tree_id"]))]
    assert tree.sampled and tree.n_total == n and tree.n_fit == manifest.extra["driver_rows"]
    leaf = tree.leaf_of(units[COVS])
    assert tree.leaf_sizes == {k: int((leaf == k).sum()) for k in tree.rules}
    # the decision statistic: the DR-score test of the merged partition over all n units
    want = score_pvalue(effects["score_indirect"].to_numpy(), leaf)
    assert result["p_leaf"] == pytest.approx(want, rel=1e-8, abs=1e-14)
    conf = next(
        c
        for c in result["configurations"]
        if c["k"] == chosen["k"] and c["tree_id"] == chosen["tree_id"]
    )
    p_y, p_m = leaf_pvalues(units, cfg.roles, leaf, "f")
    assert conf["p_y"] == pytest.approx(p_y, rel=1e-8, abs=1e-14)
    assert conf["p_m"] == pytest.approx(p_m, rel=1e-8, abs=1e-14)
    assert set(tree.variables) <= set(COVS) and np.isfinite(result["p_leaf"])
    assert sum(sg["n"] for sg in result["subgroups"]) == n
