"""Reading a Delta table: Spark's Delta source when the session has one, else delta-rs.

A Delta table is a folder of parquet files and a transaction log (``_delta_log/``) that says which
of those files make up each version. Reading the folder as plain parquet returns every file ever
written, including rows that a ``DELETE`` or an overwrite removed (a table of 17 rows read back as
27). On Databricks, or with ``delta-spark`` on the classpath, Spark's ``format("delta")`` reads the
log itself. Elsewhere, the ``deltalake`` package (delta-rs, extra ``mlearner-dist[delta]``) reads
the log on the driver and Spark reads exactly the files of the table's current version.

delta-rs lists files but does not apply reader features that change what a file means: deletion
vectors (rows marked deleted inside a file) and column mapping (physical column names that differ
from the schema's). A table with either is refused with a message saying what to do; so is any
other reader feature not known to be safe. The version read is returned so that it is recorded in
``result.json`` and MLflow.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from mlearner_dist.backends.storage_paths import local_view, spark_input_path
from mlearner_dist.exceptions import ConfigError, InputValidationError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = [
    "DeltaSnapshot",
    "delta_snapshot",
    "read_delta",
    "spark_has_delta",
]

logger = logging.getLogger(__name__)

# Reader features whose files delta-rs can hand to Spark's parquet reader unchanged.
_SAFE_READER_FEATURES = frozenset({"timestampNtz", "v2Checkpoint", "vacuumProtocolCheck",
                                   "variantType"})


@dataclass(frozen=True)
class DeltaSnapshot:
    """One version of a Delta table, as listed by its log.

    Attributes
    ----------
    path : str
        The table's root, as given.
    version : int
        The table version read.
    files : tuple of str
        URIs of the data files of that version.
    partition_columns : tuple of str
    reader : str
        ``"delta-rs"`` or ``"spark-delta"``.
    """

    path: str
    version: int | None
    files: tuple[str, ...]
    partition_columns: tuple[str, ...]
    reader: str

    def info(self) -> dict[str, Any]:
        """What ``result.json`` records: format, path, version, reader, number of files."""
        d = asdict(self)
        d["n_files"] = len(d.pop("files"))
        d["partition_columns"] = list(self.partition_columns)
        return {"format": "delta", **d}


def delta_snapshot(source: str) -> DeltaSnapshot:
    """List the files of the current version of the Delta table at ``source`` with delta-rs.

    Parameters
    ----------
    source : str
        The table's root folder (local, ``/Volumes/...``, ``dbfs:/...`` via its FUSE view, or an
        object-store URI delta-rs can read).

    Returns
    -------
    DeltaSnapshot

    Raises
    ------
    ConfigError
        When ``deltalake`` is not installed.
    InputValidationError
        When ``source`` is not a Delta table, or uses a reader feature that delta-rs cannot
        honour (deletion vectors, column mapping, or an unknown one).
    """
    try:
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError
    except ImportError as exc:
        raise ConfigError(
            "data.format=delta without a Spark Delta source needs the deltalake package: "
            "pip install 'mlearner-dist[delta]' (on Databricks the runtime's Delta is used)"
        ) from exc
    path = local_view(source)
    try:
        table = DeltaTable(path)
    except TableNotFoundError as exc:
        raise InputValidationError(
            [f"data.source: {source!r} is not a Delta table (no readable _delta_log/ there); "
             "check the path, or set data.format to parquet for a plain parquet folder"]
        ) from exc
    protocol = table.protocol()
    config = table.metadata().configuration or {}
    features = set(protocol.reader_features or [])
    problems = []
    if "deletionVectors" in features:
        problems.append(
            "it has the deletionVectors reader feature (rows deleted inside files), which "
            "delta-rs does not apply"
        )
    mapping = config.get("delta.columnMapping.mode", "none")
    if "columnMapping" in features or protocol.min_reader_version == 2 or mapping != "none":
        problems.append(
            f"it uses column mapping (delta.columnMapping.mode={mapping!r}: physical column names "
            "differ from the schema's), which a plain parquet read cannot honour"
        )
    unknown = features - _SAFE_READER_FEATURES - {"deletionVectors", "columnMapping"}
    if unknown:
        problems.append(f"it uses reader features {sorted(unknown)} that this reader does not know")
    if problems:
        raise InputValidationError(
            [f"data.source: the Delta table {source!r} cannot be read without a Spark Delta "
             f"source: {p}. Read it on Databricks or with delta-spark (Spark's Delta source), or "
             "rewrite it without the feature (e.g. REORG TABLE ... APPLY (PURGE) then "
             "ALTER TABLE ... DROP FEATURE)" for p in problems]
        )
    files = tuple(table.file_uris())
    return DeltaSnapshot(
        path=source,
        version=int(table.version()),
        files=files,
        partition_columns=tuple(table.metadata().partition_columns or ()),
        reader="delta-rs",
    )


def spark_has_delta(spark: SparkSession) -> bool:
    """True when ``spark`` has Delta Lake's data source (Databricks, or delta-spark installed).

    The check asks the session's configuration first (the Delta extension or catalog, as
    delta-spark configures it; Databricks sets ``spark.databricks.clusterUsageTags.*``) and does
    not read any table. On Databricks (``DATABRICKS_RUNTIME_VERSION`` set) it is always true.
    """
    if os.environ.get("DATABRICKS_RUNTIME_VERSION"):  # classic and serverless Databricks
        return True
    conf = spark.conf
    for key in ("spark.sql.extensions", "spark.sql.catalog.spark_catalog"):
        try:
            value = conf.get(key, "") or ""
        except Exception:  # Spark Connect refuses some keys
            value = ""
        if "delta" in value.lower():
            return True
    try:
        return bool(conf.get("spark.databricks.clusterUsageTags.sparkVersion", ""))
    except Exception:
        return False


def _spark_delta_version(spark: SparkSession, path: str) -> int | None:
    try:
        row = spark.sql(f"DESCRIBE HISTORY delta.`{path}` LIMIT 1").collect()[0]
        return int(row["version"])
    except Exception as exc:  # history may be restricted; the read itself does not need it
        logger.warning("delta: could not read the version of %s (%s)", path, exc)
        return None


def read_delta(spark: SparkSession, source: str) -> tuple[DataFrame, dict[str, Any]]:
    """Read the current version of a Delta table.

    Parameters
    ----------
    spark : SparkSession
    source : str
        ``data.source`` (a table root folder or URI).

    Returns
    -------
    df : pyspark.sql.DataFrame
    info : dict
        ``{"format": "delta", "path", "version", "reader", "n_files", "partition_columns"}``.
    """
    if spark_has_delta(spark):
        path = spark_input_path(source)
        df = spark.read.format("delta").load(path)
        version = _spark_delta_version(spark, path)
        snap = DeltaSnapshot(source, version, (), (), "spark-delta")
        logger.info("delta: %s version %s through Spark's Delta source", source, version)
        return df, snap.info()
    snap = delta_snapshot(source)
    logger.info("delta: %s version %d, %d files (delta-rs log, Spark parquet reader)",
                source, snap.version, len(snap.files))
    if not snap.files:
        schema = _empty_schema(source)
        return spark.createDataFrame([], schema), snap.info()
    reader = spark.read
    if snap.partition_columns:
        # partition values live in the folder names: read them back relative to the table root
        reader = reader.option("basePath", spark_input_path(source))
    return reader.parquet(*[_spark_file(f) for f in snap.files]), snap.info()


def _spark_file(uri: str) -> str:
    if uri.startswith(("/dbfs/", "dbfs:")):
        return spark_input_path(uri)
    return uri


def _empty_schema(source: str) -> Any:
    import pyarrow as pa
    from deltalake import DeltaTable
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(pa.schema(DeltaTable(local_view(source)).schema().to_arrow()))
