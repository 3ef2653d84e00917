"""A Spark task that fails once is retried and the job succeeds (real local Spark)."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
import pytest

from mlearner_dist.backends.spark_session import _with_task_retries


def test_local_master_gets_task_retries():
    assert _with_task_retries("local[*]", 4) == "local[*, 4]"
    assert _with_task_retries("local[2]", 3) == "local[2, 3]"
    assert _with_task_retries("local[2, 9]", 4) == "local[2, 9]"
    assert _with_task_retries("yarn", 4) == "yarn"


@pytest.mark.spark
def test_a_task_failing_once_is_retried(spark):
    assert spark.sparkContext.master.replace(" ", "").endswith(",4]")

    def flaky(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from pyspark import TaskContext

        ctx = TaskContext.get()
        if ctx.partitionId() == 1 and ctx.attemptNumber() == 0:
            raise RuntimeError("injected failure on the first attempt")
        for b in batches:
            yield b.assign(attempt=ctx.attemptNumber())

    out = (
        spark.range(0, 100, numPartitions=3)
        .mapInPandas(flaky, "id long, attempt int")
        .toPandas()
    )
    assert sorted(out["id"]) == list(range(100))
    assert out["attempt"].max() == 1  # the failed partition's second attempt produced its rows
