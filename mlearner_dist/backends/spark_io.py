"""Reading the units table and writing stage outputs with Spark."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlearner_dist.exceptions import ConfigError, InputValidationError
from mlearner_dist.stages import atomic_output

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from mlearner_dist.config import DataConfig

logger = logging.getLogger(__name__)

_TABLE_NAME = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*){0,2}$")


def read_table(spark: SparkSession, data: DataConfig) -> DataFrame:
    """Read the configured source into a Spark DataFrame.

    Parameters
    ----------
    spark : SparkSession
    data : DataConfig
        ``format`` parquet, csv, delta (a path), table (``catalog.schema.table``) or builtin
        (``jobs_ii``).

    Returns
    -------
    pyspark.sql.DataFrame
    """
    fmt, source = data.format, data.source
    if not source:
        raise ConfigError(
            "data.source is empty: name a file, folder or table (--set data.source=...)"
        )
    if fmt == "builtin":
        from mlearner_dist.datasets import load_jobs_ii

        return spark.createDataFrame(load_jobs_ii())
    if fmt == "table":
        if not _TABLE_NAME.match(source):
            raise ConfigError(
                f"data.source={source!r} is not a table name; use catalog.schema.table or "
                "schema.table, or set data.format to parquet/csv/delta for a path"
            )
        return spark.table(source)
    if "://" not in source and not Path(source).exists():
        raise InputValidationError(
            [f"data.source: {source!r} does not exist (format {fmt}); check the path"]
        )
    if fmt == "parquet":
        return spark.read.parquet(source)
    if fmt == "csv":
        return spark.read.csv(source, header=data.csv_header, inferSchema=True)
    if fmt == "delta":
        return spark.read.format("delta").load(source)
    raise ConfigError(f"data.format={fmt!r} is not supported")


def write_parquet(sdf: DataFrame, final: Path) -> None:
    """Write a Spark DataFrame as a parquet folder, atomically (temporary folder, then rename)."""
    with atomic_output(final) as tmp:
        sdf.write.mode("overwrite").parquet(str(tmp))


def with_difference(sdf: Any, name: str, minuend: str, subtrahend: str) -> Any:
    """``sdf`` with a column ``name = minuend - subtrahend`` (e.g. a change score)."""
    from pyspark.sql import functions as F

    return sdf.withColumn(name, F.col(minuend) - F.col(subtrahend))


def rows_fingerprint(sdf: Any, columns: Any) -> dict[str, Any]:
    """An order- and partition-independent fingerprint of the rows of ``sdf``.

    Each row's ``xxhash64`` over ``columns`` (Spark's, seed 42) is split into its two 32-bit halves
    and each half is summed over the rows (exact in 64-bit integers up to 2^31 rows); the
    fingerprint is the SHA-256 of ``(n_rows, sum_low, sum_high, columns)``. The same rows give the
    same fingerprint whatever their order, partitioning or the number of executors.

    Returns
    -------
    dict
        ``n_rows``, ``columns`` and ``sha256``.
    """
    import hashlib

    from pyspark.sql import functions as F

    cols = [str(c) for c in columns]
    h = F.xxhash64(*[F.col(c) for c in cols])
    halves = sdf.select(h.alias("h")).select(
        F.col("h").bitwiseAND(F.lit(0xFFFFFFFF)).alias("lo"),
        F.shiftrightunsigned(F.col("h"), 32).alias("hi"),
    )
    row = halves.select(
        F.count(F.lit(1)).alias("n"), F.sum("lo").alias("lo"), F.sum("hi").alias("hi")
    ).first()
    n, lo, hi = int(row["n"]), int(row["lo"] or 0), int(row["hi"] or 0)
    text = f"{n}:{lo}:{hi}:{','.join(cols)}"
    return {"n_rows": n, "columns": cols, "sha256": hashlib.sha256(text.encode()).hexdigest()}
