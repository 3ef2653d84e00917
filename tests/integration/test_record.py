"""The frozen analysis record: a data fingerprint that ignores order and partitioning, and
``mlearner verify`` re-running an analysis from its result.json."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from mlearner_dist.backends.spark_io import rows_fingerprint, write_parquet_fingerprinted
from mlearner_dist.config import load_config
from mlearner_dist.datasets import simulate
from mlearner_dist.pipeline import run_pipeline
from mlearner_dist.verify import compare_results, verify_result

pytestmark = [pytest.mark.spark, pytest.mark.dask]


def test_fingerprint_ignores_row_order_and_partitions_and_sees_one_changed_value(spark):
    df = simulate("simple-all", 500, seed=1, noise_sd=0.1)
    cols = list(df.columns)
    a = rows_fingerprint(spark.createDataFrame(df).repartition(1), cols)
    b = rows_fingerprint(spark.createDataFrame(df.sample(frac=1.0, random_state=2)).repartition(7),
                         cols)
    assert a == b and a["n_rows"] == 500
    changed = df.copy()
    changed.loc[3, "Y"] += 1e-9
    assert rows_fingerprint(spark.createDataFrame(changed), cols)["sha256"] != a["sha256"]


def test_the_fingerprint_observed_while_writing_equals_reading_the_output_back(spark, tmp_path):
    df = simulate("simple-all", 300, seed=2, noise_sd=0.1)
    df["flag"] = df["X1"] > 0
    df["city"] = pd.Series(["north", None, "south"] * 100, dtype=object)
    df.loc[5, "Y"] = float("nan")
    cols = list(df.columns)
    sdf = spark.createDataFrame(df).repartition(3)
    got = write_parquet_fingerprinted(sdf, tmp_path / "units", cols)
    assert got == rows_fingerprint(spark.read.parquet(str(tmp_path / "units")), cols)
    assert got == rows_fingerprint(sdf, cols) and got["n_rows"] == 300


def test_verify_reproduces_and_detects_changed_data(tmp_path):
    data = simulate("simple-all", 400, seed=5, noise_sd=0.1)
    path = tmp_path / "sim.parquet"
    data.to_parquet(path)
    cfg = load_config(
        ["conf/base.yaml", "conf/simulated.yaml"],
        [
            f"data.source={path}",
            "compute.spark.master=local[2]",
            "compute.spark.driver_memory=2g",
            "tracking.enabled=false",
            "report.figures=false",
            "report.html=false",
            "calibration.mode=fixed",
            "embed.n_iter=300",
            "cluster.k_max=3",
            "profile.cv_folds=5",
            "subgroups.n_bootstrap=100",
            "sensitivity.n_bootstrap=50",
            # three whole pipelines run here: the seed-stability re-runs (5 t-SNE/K-means seeds)
            # are not what verify checks, and test_end_to_end covers them
            "stability.n_seeds=0",
        ],
    )
    result = run_pipeline(cfg, tmp_path / "run")
    record = result["record"]
    assert record["data_hash"]["n_rows"] == 400 and len(record["data_hash"]["sha256"]) == 64
    assert record["version"] and record["libraries"]["numpy"]
    ok, diffs, _ = verify_result(tmp_path / "run" / "result.json", output=tmp_path / "again")
    assert ok, diffs
    # the same source path with different rows: verify says what differs
    data.loc[0, "Y"] += 1.0
    data.to_parquet(path)
    ok, diffs, _ = verify_result(tmp_path / "run" / "result.json", output=tmp_path / "changed")
    assert not ok and any("the data differ" in d for d in diffs)


def test_compare_results_names_each_difference():
    old = json.loads(json.dumps({
        "record": {"data_hash": {"sha256": "a" * 64}},
        "declared": True,
        "chosen": {"k": 2, "tree_id": 0, "n_leaves": 2, "variables": ["X1"]},
        "p_leaf": 0.001,
        "threshold": 0.01,
        "subgroups": [{"leaf": 1, "rule": "X1 <= 0", "n": 10,
                       "total": {"estimate": 1.0, "ci_low": 0.0, "ci_high": 2.0}}],
    }))
    assert compare_results(old, old) == []
    new = json.loads(json.dumps(old))
    new["declared"] = False
    new["chosen"]["variables"] = ["X2"]
    new["subgroups"][0]["total"]["estimate"] = 1.1
    diffs = compare_results(old, new)
    assert any(d.startswith("declared") for d in diffs)
    assert any("chosen variables" in d for d in diffs)
    assert any("total estimate" in d for d in diffs)
    assert pd.Series(diffs).str.len().min() > 10
