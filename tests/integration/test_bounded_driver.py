"""The profile and report stages above compute.driver_max_rows: the driver holds a sample.

The trees are grown on a hashed sample of about ``driver_max_rows`` units; every p-value, leaf
merge and leaf size, the subgroup table and the average effects come from leaf sums pooled over
Spark partitions; figures and the sensitivity analysis use the hashed sample. Checked against
the same quantities recomputed in memory from the run's own units and effects.
"""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from mlearner_dist.config import load_config
from mlearner_dist.core.effect_summaries import average_effects, subgroup_table
from mlearner_dist.core.score_test import score_pvalue
from mlearner_dist.core.selection import leaf_pvalues
from mlearner_dist.datasets import simulate
from mlearner_dist.pipeline import run_pipeline
from mlearner_dist.stages import read_manifest

pytestmark = [pytest.mark.spark, pytest.mark.dask]

COVS = [f"X{i}" for i in range(1, 11)]


def _config(tmp_path, n: int, seed: int, budget: int, *extra: str):
    """A simulated analysis of ``n`` units (simple-all, noise sd 0.1, written under
    ``tmp_path``) whose n exceeds a driver budget of ``budget`` units."""
    path = tmp_path / "sim.parquet"
    simulate("simple-all", n, seed=seed, noise_sd=0.1).to_parquet(path)
    return load_config(
        ["conf/base.yaml", "conf/simulated.yaml"],
        [
            "compute.spark.master=local[2]",
            "compute.spark.driver_memory=2g",
            "compute.spark.partitions=4",
            f"compute.driver_max_rows={budget}",
            "tracking.enabled=false",
            "subgroups.n_bootstrap=50",
            "profile.cv_folds=5",
            f"data.source={path}",
            "effects.learner=linear",
            "embed.n_iter=300",
            "cluster.k_max=3",
            "stability.n_seeds=0",
            *extra,
        ],
    )


def test_profile_above_the_driver_budget_tests_every_unit(tmp_path):
    n, budget = 3000, 1000
    cfg = _config(
        tmp_path,
        n,
        11,
        budget,
        "report.figures=true",
        "report.html=true",
        "calibration.mode=fixed",
        "sensitivity.n_bootstrap=20",
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

    # the report: adjusted subgroup effects and averages over all n units, from Spark's sums
    want = subgroup_table(
        units,
        cfg.roles,
        effects.reset_index(),
        leaf,
        tree.rules,
        n_bootstrap=50,
        level=0.95,
        min_size=cfg.validation.min_subgroup,
        random_state=0,
    )
    for got, exp in zip(result["subgroups"], want, strict=True):
        assert got["n"] == exp["n"] and got["rule"] == exp["rule"]
        for name in ("indirect", "direct", "total"):
            for key in ("estimate", "ci_low", "ci_high"):
                assert got[name][key] == pytest.approx(exp[name][key], rel=1e-8)
        assert got["overlap"] == exp["overlap"]
        assert got["estimated_on"] == "same_units"
    avg = average_effects(effects.reset_index())
    for name in ("indirect", "direct", "total"):
        assert result["average_effects"][name]["estimate"] == pytest.approx(
            avg[name]["estimate"], rel=1e-9
        )
    assert result["sensitivity"]["driver_sample"]["of"] == n
    assert (out / "figures" / "embedding_clusters.png").exists()
    assert (out / "report.html").exists()


def test_split_calibration_above_the_driver_budget_runs_on_the_engines(tmp_path):
    n, budget = 2500, 1000
    cfg = _config(
        tmp_path,
        n,
        12,
        budget,
        "report.figures=false",
        "report.html=false",
        "calibration.mode=null",
        "calibration.null_max_n=2000",  # n above it: the split fallback, as at scale
        "sensitivity.enabled=false",
    )
    out = tmp_path / "run"
    result = run_pipeline(cfg, out)
    calib = result["calibration"]
    assert calib["mode"] == "split" and calib["engine"] == "distributed"
    assert calib["requested_mode"] == "null" and "null_max_n=2000" in calib["fallback"]
    n_d, n_h = calib["n_discovery"], calib["n_holdout"]
    assert n_d + n_h == n and sum(sg["n"] for sg in result["subgroups"]) == n_h
    assert all(sg["estimated_on"] == "holdout" for sg in result["subgroups"])
    # the discovery half went through the bounded profile stage
    assert read_manifest(out / "split" / "discovery", "profile").extra["driver_rows"] < 1.2 * budget
    # the decision: the discovery tree's DR-score test on the held-out half's own effects
    hold = pd.read_parquet(out / "split" / "holdout" / "units").sort_values("unit_id")
    eff = pd.read_parquet(out / "split" / "holdout" / "effects").set_index("unit_id")
    eff = eff.loc[hold["unit_id"]]
    from mlearner_dist.core.profile_tree import ProfileTree

    tree = ProfileTree.from_dict(calib["discovery_tree"])
    want = score_pvalue(eff["score_indirect"].to_numpy(), tree.leaf_of(hold[COVS]))
    assert calib["p_decision"] == pytest.approx(want, rel=1e-8, abs=1e-14)
    assert result["p_leaf"] == calib["p_decision"]
    assert result["declared"] == (calib["p_decision"] < calib["threshold"])
    assert result["chosen"] == calib["chosen_on_discovery"]
