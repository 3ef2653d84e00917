"""The Spark Connect lane: validate and effects, as stage jobs, on ``remote("local[2]")``.

Databricks serverless compute and Databricks Connect are Spark Connect clients: no RDD API, no
``sparkContext``. The same two stages run here on a local Spark Connect server (pyspark's
``connect`` extra) in a separate process, since a process holds either a classic or a Connect
session, and their outputs must equal those of the classic session of the test run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

pytestmark = [pytest.mark.spark, pytest.mark.slow]  # ~2 min: a second Spark JVM, started cold

ROOT = Path(__file__).resolve().parents[2]
OVERRIDES = [
    "effects.n_folds=3",
    "effects.learner_params={max_iter: 20}",
    "compute.spark.partitions=3",
    "tracking.enabled=false",
]

CONNECT_RUN = textwrap.dedent(
    """
    import json, sys
    from pyspark.sql import SparkSession
    spark = (
        SparkSession.builder.remote("local[2]")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    from pyspark.sql.connect.session import SparkSession as ConnectSession
    assert isinstance(spark, ConnectSession), type(spark)
    from mlearner_dist.backends.spark_session import get_spark
    assert get_spark() is spark, "the stages must use the active Connect session"
    from mlearner_dist.config import load_config
    from mlearner_dist.pipeline import run_pipeline
    args = json.loads(sys.argv[1])
    cfg = load_config(args["configs"], args["overrides"])
    run_pipeline(cfg, args["output"], stages=["validate", "effects"])
    spark.stop()
    """
)


@pytest.fixture(scope="module")
def sim(tmp_path_factory) -> Path:
    from mlearner_dist.datasets import simulate

    path = tmp_path_factory.mktemp("connect") / "sim.parquet"
    df = simulate("simple-all", 400, seed=8, noise_sd=0.5)
    df.loc[[5, 17], "Y"] = float("nan")  # two rows for the validation to remove
    df.to_parquet(path)
    return path


def _config(sim: Path) -> tuple[list[str], list[str]]:
    return (
        [str(ROOT / "conf" / "simulated.yaml")],
        [f"data.source={sim}", "data.missing=drop", *OVERRIDES],
    )


def test_validate_and_effects_on_spark_connect_equal_the_classic_session(spark, sim, tmp_path):
    pytest.importorskip("grpc", reason="pyspark[connect] extras (grpcio) are in the test extra")
    from mlearner_dist.config import load_config
    from mlearner_dist.pipeline import run_pipeline
    from mlearner_dist.stages import read_manifest

    configs, overrides = _config(sim)
    classic = tmp_path / "classic"
    run_pipeline(load_config(configs, overrides), classic, stages=["validate", "effects"])

    connect = tmp_path / "connect"
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    env.pop("SPARK_REMOTE", None)
    payload = json.dumps({"configs": configs, "overrides": overrides, "output": str(connect)})
    done = subprocess.run(
        [sys.executable, "-c", CONNECT_RUN, payload],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-4000:]

    for stage in ("validate", "effects"):
        a, b = read_manifest(classic, stage), read_manifest(connect, stage)
        assert a.rows == b.rows, stage
    va, vb = read_manifest(classic, "validate"), read_manifest(connect, "validate")
    assert va.extra["row_account"] == vb.extra["row_account"]
    assert va.extra["row_account"]["n_used"] == 398
    ea = dict(read_manifest(classic, "effects").extra["diagnostics"])
    eb = dict(read_manifest(connect, "effects").extra["diagnostics"])
    ea.pop("timings", None), eb.pop("timings", None)  # wall-clock seconds
    assert ea == eb
    for name in ("units", "effects"):
        a = pd.read_parquet(classic / name).sort_values("unit_id").reset_index(drop=True)
        b = pd.read_parquet(connect / name).sort_values("unit_id").reset_index(drop=True)
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-12, atol=1e-12)


CONNECT_MAP = textwrap.dedent(
    """
    import json
    import numpy as np
    from pyspark.sql import SparkSession
    spark = SparkSession.builder.remote("local[2]").getOrCreate()
    from pyspark.sql.connect.session import SparkSession as ConnectSession
    assert isinstance(spark, ConnectSession), type(spark)
    from mlearner_dist.backends.spark_map import spark_map
    data = np.arange(5.0)
    out = spark_map(spark, label="item")(lambda i: float((data * i).sum()), [2, 0, 3])
    print("RESULT", json.dumps(out))
    spark.stop()
    """
)


def test_spark_map_runs_on_spark_connect(tmp_path):
    """The calibration's Spark map uses mapInPandas only: no sparkContext, so Connect works."""
    pytest.importorskip("grpc", reason="pyspark[connect] extras (grpcio) are in the test extra")
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    env.pop("SPARK_REMOTE", None)
    done = subprocess.run(
        [sys.executable, "-c", CONNECT_MAP],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    assert json.loads(line[len("RESULT ") :]) == [20.0, 0.0, 30.0]
