"""Independent items as Spark tasks: the core's ``map_fn`` seam on a Spark cluster.

:func:`spark_map` returns ``map_fn(func, items) -> list`` (the signature the core's calibration
takes, like :func:`mlearner_dist.backends.dask_map.dask_map`) that runs one Spark task per item
through ``DataFrame.mapInPandas`` over a frame of item ids. mapInPandas is a DataFrame API, so the
same code runs on a classic Spark session, on Spark Connect and on Databricks serverless compute,
where the RDD API and ``SparkContext`` are not available.

How: ``func`` (with the data it closes over) and every item are serialised with cloudpickle on
the driver; the frame ``(i, item)`` is range-partitioned into one partition per item; each task
loads ``func``, limits the native thread pools to ``threads_per_task`` (HistGradientBoosting and
openTSNE otherwise start one thread per core in every task: oversubscription), computes
``func(item)`` and returns ``(i, result)``; the driver collects and orders the results by ``i``,
so the outcome does not depend on the number of executors or on which task finishes first.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import cloudpickle
import pandas as pd

__all__ = ["spark_map"]

logger = logging.getLogger(__name__)

_SCHEMA = "i long, result binary"


def _parallelism(spark: Any) -> int:
    """Task slots of the session (1 when the session does not say, e.g. Spark Connect)."""
    try:
        return max(1, int(spark.sparkContext.defaultParallelism))
    except Exception:  # Spark Connect and serverless have no SparkContext
        conf = spark.conf.get("spark.default.parallelism", None)
        return max(1, int(conf)) if conf else 1


def spark_map(
    spark: Any, *, label: str = "null replicate", threads_per_task: int = 1
) -> Callable[..., list[Any]]:
    """A ``map_fn`` running each item as one Spark task.

    Parameters
    ----------
    spark : pyspark.sql.SparkSession
        A classic or a Spark Connect session.
    label : str
        What an item is, for the log lines.
    threads_per_task : int, >= 1
        Native threads (BLAS/OpenMP) each task may use.

    Returns
    -------
    callable
        ``map_fn(func, items) -> list`` with results in item order; ``map_fn.n_workers`` is the
        session's task slots (for the projected calibration time).
    """
    if isinstance(threads_per_task, bool) or not isinstance(threads_per_task, int):
        raise TypeError(f"threads_per_task={threads_per_task!r}: give an integer >= 1")
    if threads_per_task < 1:
        raise ValueError(f"threads_per_task={threads_per_task}: give an integer >= 1")

    def map_fn(func: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        items = list(items)
        n = len(items)
        if not n:
            return []
        payload = cloudpickle.dumps(func)
        rows = pd.DataFrame({"i": range(n), "item": [cloudpickle.dumps(x) for x in items]})
        frame = spark.createDataFrame(rows).repartitionByRange(n, "i")
        threads = threads_per_task

        def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
            from threadpoolctl import threadpool_limits

            f = cloudpickle.loads(payload)
            with threadpool_limits(limits=threads):
                for batch in batches:
                    out = [cloudpickle.dumps(f(cloudpickle.loads(x))) for x in batch["item"]]
                    yield pd.DataFrame({"i": batch["i"].to_numpy(), "result": out})

        started = time.perf_counter()
        logger.info("%ss: %d as Spark tasks (%d task slots)", label, n, _parallelism(spark))
        collected = frame.mapInPandas(run, schema=_SCHEMA).toPandas()
        if len(collected) != n or set(collected["i"]) != set(range(n)):
            raise RuntimeError(
                f"Spark returned {len(collected)} results for {n} {label}s: a task was lost"
            )
        results = dict(zip(collected["i"].astype(int), collected["result"], strict=True))
        logger.info(
            "%ss: %d/%d done on Spark in %.1f s", label, n, n, time.perf_counter() - started
        )
        return [cloudpickle.loads(results[i]) for i in range(n)]

    map_fn.n_workers = _parallelism(spark)  # type: ignore[attr-defined]
    return map_fn
