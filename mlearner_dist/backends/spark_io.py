"""Reading the units table and writing stage outputs with Spark."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlearner_dist.backends.storage_paths import is_spark_only_input, spark_input_path
from mlearner_dist.exceptions import ConfigError, InputValidationError
from mlearner_dist.stages import atomic_output

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from mlearner_dist.config import DataConfig

logger = logging.getLogger(__name__)

_TABLE_NAME = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*){0,2}$")


def read_table(spark: SparkSession, data: DataConfig) -> DataFrame:
    """Read the configured source into a Spark DataFrame (:func:`read_source` without its info)."""
    return read_source(spark, data)[0]


def read_source(spark: SparkSession, data: DataConfig) -> tuple[DataFrame, dict[str, Any]]:
    """Read the configured source into a Spark DataFrame, with what was read.

    Parameters
    ----------
    spark : SparkSession
    data : DataConfig
        ``format`` parquet, csv, delta (a path), table (``catalog.schema.table``) or builtin
        (``jobs_ii``). Paths that only Spark resolves (``dbfs:/``, ``/Volumes/...``,
        ``/dbfs/...``, any URI) are not checked locally (backends/storage_paths.py).

    Returns
    -------
    df : pyspark.sql.DataFrame
    info : dict
        ``format`` and ``path``; for Delta also ``version``, ``reader``, ``n_files``
        (backends/delta_table.py). Recorded in the validate manifest and ``result.json``.
    """
    fmt, source = data.format, data.source
    if not source:
        raise ConfigError(
            "data.source is empty: name a file, folder or table (--set data.source=...)"
        )
    info: dict[str, Any] = {"format": fmt, "path": source}
    if fmt == "builtin":
        from mlearner_dist.datasets import load_jobs_ii

        return spark.createDataFrame(load_jobs_ii()), info
    if fmt == "table":
        if not _TABLE_NAME.match(source):
            raise ConfigError(
                f"data.source={source!r} is not a table name; use catalog.schema.table or "
                "schema.table, or set data.format to parquet/csv/delta for a path"
            )
        return spark.table(source), info
    if not is_spark_only_input(source) and not Path(source).exists():
        raise InputValidationError(
            [f"data.source: {source!r} does not exist (format {fmt}); check the path"]
        )
    path = spark_input_path(source)
    if fmt == "parquet":
        return spark.read.parquet(path), info
    if fmt == "csv":
        return spark.read.csv(path, header=data.csv_header, inferSchema=True), info
    if fmt == "delta":
        from mlearner_dist.backends.delta_table import read_delta

        return read_delta(spark, source)
    raise ConfigError(f"data.format={fmt!r} is not supported")


def write_parquet(sdf: DataFrame, final: Path) -> None:
    """Write a Spark DataFrame as a parquet folder, atomically (temporary folder, then rename)."""
    with atomic_output(final) as tmp:
        sdf.write.mode("overwrite").parquet(str(tmp))


def with_difference(sdf: Any, name: str, minuend: str, subtrahend: str) -> Any:
    """``sdf`` with a column ``name = minuend - subtrahend`` (e.g. a change score)."""
    from pyspark.sql import functions as F

    return sdf.withColumn(name, F.col(minuend) - F.col(subtrahend))


def sql_identifier(name: str) -> str:
    """A column name as a Spark SQL identifier (backticks, inner backticks doubled)."""
    return "`" + name.replace("`", "``") + "`"


def _fingerprint_aggregates(columns: list[str]) -> list[Any]:
    """The three aggregates of :func:`rows_fingerprint`: rows, and the sums of the hash halves."""
    from pyspark.sql import functions as F

    h = F.xxhash64(*[F.col(sql_identifier(c)) for c in columns])
    return [
        F.count(F.lit(1)).alias("n"),
        F.sum(h.bitwiseAND(F.lit(0xFFFFFFFF))).alias("lo"),
        F.sum(F.shiftrightunsigned(h, 32)).alias("hi"),
    ]


def _fingerprint_dict(n: Any, lo: Any, hi: Any, columns: list[str]) -> dict[str, Any]:
    import hashlib

    text = f"{int(n)}:{int(lo or 0)}:{int(hi or 0)}:{','.join(columns)}"
    return {
        "n_rows": int(n),
        "columns": columns,
        "sha256": hashlib.sha256(text.encode()).hexdigest(),
    }


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
    cols = [str(c) for c in columns]
    row = sdf.agg(*_fingerprint_aggregates(cols)).first()
    return _fingerprint_dict(row["n"], row["lo"], row["hi"], cols)


def write_parquet_fingerprinted(sdf: DataFrame, final: Path, columns: Any) -> dict[str, Any]:
    """:func:`write_parquet`, returning :func:`rows_fingerprint` of the rows written.

    The fingerprint's aggregates are observed while the rows are written (``DataFrame.observe``,
    in the write's own tasks, after any repartition so that a retried shuffle stage cannot count a
    row twice), which saves reading the output again: the same rows in the same types give the
    same fingerprint as reading the folder back. Where the observation yields nothing (an engine
    without observed metrics on writes), the folder is read back instead.

    Returns
    -------
    dict
        ``n_rows``, ``columns`` and ``sha256``.
    """
    from pyspark.sql import Observation

    cols = [str(c) for c in columns]
    observation = Observation("mlearner_rows_fingerprint")
    write_parquet(sdf.observe(observation, *_fingerprint_aggregates(cols)), final)
    try:
        got = observation.get
    except Exception as exc:  # engines differ in what they raise
        logger.info("observed metrics unavailable (%s): reading %s back", exc, final)
        got = {}
    if not got or got.get("n") is None:
        return rows_fingerprint(sdf.sparkSession.read.parquet(str(final)), cols)
    return _fingerprint_dict(got["n"], got["lo"], got["hi"], cols)
