"""Shared fixtures: one real local Spark session and one real local Dask cluster per test run,
and real result.json documents (tests/fixtures, written by tests/fixtures/make_results.py)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
os.environ.setdefault("MPLBACKEND", "Agg")
# One OpenMP thread per process: the 2-core CI machine runs Spark workers, Dask workers and the
# test process at once, and oversubscribed OpenMP (histogram boosting, K-means) is 10-20 times
# slower there. Results do not depend on the thread count.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def spark():
    """A real local Spark session (local[2]), shared by every test that needs Spark."""
    from mlearner_dist.backends.spark_session import get_spark
    from mlearner_dist.config import SparkConfig

    session = get_spark(
        SparkConfig(
            master="local[2]",
            driver_memory="2g",
            partitions=4,
            conf={"spark.sql.shuffle.partitions": "4"},
        )
    )
    yield session


@pytest.fixture(scope="session")
def dask_client():
    """A real local Dask cluster of two worker processes."""
    from mlearner_dist.backends.dask_cluster import get_client

    client, close = get_client(None, n_workers=2, threads_per_worker=1, memory_limit="3GiB")
    yield client
    close()


def load_result(name: str) -> dict:
    """A fresh copy of the real result.json ``tests/fixtures/result_<name>.json``."""
    return json.loads((FIXTURES / f"result_{name}.json").read_text())


@pytest.fixture
def real_result() -> dict:
    """A real result.json: simple-all (600 units, 10 with a missing outcome dropped), one mediator,
    default cross-split calibration, declared, three subgroups."""
    return load_result("mediated")


@pytest.fixture
def real_result_total() -> dict:
    """A real result.json without a mediator: simple (600 units), total effect only, declared."""
    return load_result("total")
