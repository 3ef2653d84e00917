"""Delta input through delta-rs: the files of the table version, not every file in the folder.

The tables are written here with the ``deltalake`` package (delta-rs): 10 rows, an append of 10, an
append of 7, and a delete of the second append. The folder then holds 27 rows of parquet; the
table holds 17.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mlearner_dist.backends.delta_table import delta_snapshot, read_delta, spark_has_delta
from mlearner_dist.backends.spark_io import read_source
from mlearner_dist.config import DataConfig
from mlearner_dist.exceptions import InputValidationError

deltalake = pytest.importorskip("deltalake")


def _units(start: int, n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "unit_id": np.arange(start, start + n, dtype=np.int64),
            "T": (np.arange(n) % 2).astype(np.int64),
            "M": rng.normal(size=n),
            "Y": rng.normal(size=n),
            "X1": rng.normal(size=n),
            "region": np.where(np.arange(n) % 3 == 0, "north", "south"),
        }
    )


@pytest.fixture(scope="module")
def delta_path(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("delta") / "units")
    deltalake.write_deltalake(path, _units(0, 10, 1))
    deltalake.write_deltalake(path, _units(10, 10, 2), mode="append")
    deltalake.write_deltalake(path, _units(20, 7, 3), mode="append")
    deltalake.DeltaTable(path).delete("unit_id >= 10 AND unit_id < 20")
    return path


def test_delta_snapshot_lists_the_files_of_the_current_version(delta_path):
    snap = delta_snapshot(delta_path)
    assert snap.version == 3  # create, append, append, delete
    assert snap.reader == "delta-rs"
    assert len(snap.files) == 2
    info = snap.info()
    assert info == {
        "format": "delta",
        "path": delta_path,
        "version": 3,
        "reader": "delta-rs",
        "n_files": 2,
        "partition_columns": [],
    }
    json.dumps(info)


@pytest.mark.spark
def test_delta_read_returns_the_table_not_the_folder(spark, delta_path):
    assert not spark_has_delta(spark)  # the test session has no Delta source: delta-rs is used
    naive = spark.read.parquet(delta_path)
    assert naive.count() == 27  # every parquet file in the folder, deleted rows included
    sdf, info = read_source(spark, DataConfig(source=delta_path, format="delta"))
    assert info["version"] == 3 and info["reader"] == "delta-rs"
    got = sdf.toPandas().sort_values("unit_id").reset_index(drop=True)
    want = deltalake.DeltaTable(delta_path).to_pandas().sort_values("unit_id")
    assert len(got) == 17
    pd.testing.assert_frame_equal(got, want.reset_index(drop=True), check_dtype=False)
    assert set(got["unit_id"]) == set(range(10)) | set(range(20, 27))


@pytest.mark.spark
def test_delta_read_of_a_partitioned_table_keeps_the_partition_column(spark, tmp_path):
    path = str(tmp_path / "parts")
    deltalake.write_deltalake(path, _units(0, 12, 4), partition_by=["region"])
    deltalake.DeltaTable(path).delete("unit_id < 3")
    sdf, info = read_delta(spark, path)
    assert info["partition_columns"] == ["region"]
    got = sdf.toPandas().sort_values("unit_id").reset_index(drop=True)
    assert list(got["unit_id"]) == list(range(3, 12))
    want = _units(0, 12, 4).iloc[3:].reset_index(drop=True)
    assert list(got["region"]) == list(want["region"])


@pytest.mark.spark
def test_validate_stage_records_the_delta_version(spark, delta_path, tmp_path):
    from mlearner_dist.config import load_config
    from mlearner_dist.pipeline import run_pipeline
    from mlearner_dist.stages import read_manifest

    cfg = load_config(
        [],
        [
            f"data.source={delta_path}",
            "data.format=delta",
            "columns.unit_id=unit_id",
            "columns.treatment=T",
            "columns.mediator=[M]",
            "columns.outcome=Y",
            "columns.covariates=[X1]",
            "validation.min_treated=3",
            "validation.min_control=3",
            "effects.n_folds=2",
            "compute.spark.partitions=2",
            "tracking.enabled=false",
        ],
    )
    run_pipeline(cfg, tmp_path / "out", stages=["validate"])  # uses the active session
    m = read_manifest(tmp_path / "out", "validate")
    assert m.extra["row_account"]["n_used"] == 17
    assert m.extra["source_info"]["version"] == 3
    assert m.extra["source_info"]["reader"] == "delta-rs"


def test_deletion_vectors_are_refused_with_what_to_do(tmp_path):
    path = str(tmp_path / "dv")
    deltalake.write_deltalake(
        path, _units(0, 6, 5), configuration={"delta.enableDeletionVectors": "true"}
    )
    with pytest.raises(InputValidationError, match=r"deletionVectors.*Spark's Delta source"):
        delta_snapshot(path)


def test_column_mapping_is_refused_with_what_to_do(tmp_path):
    path = str(tmp_path / "cm")
    deltalake.write_deltalake(
        path, _units(0, 6, 6), configuration={"delta.columnMapping.mode": "name"}
    )
    with pytest.raises(InputValidationError, match=r"column mapping.*'name'"):
        delta_snapshot(path)


def test_a_folder_that_is_not_a_delta_table_is_refused(tmp_path):
    _units(0, 4, 7).to_parquet(tmp_path / "plain.parquet")
    with pytest.raises(InputValidationError, match=r"not a Delta table.*data.format to parquet"):
        delta_snapshot(str(tmp_path))


@pytest.mark.spark
@pytest.mark.parametrize("source", ["dbfs:/mnt/trial/units", "/dbfs/mnt/trial/units"])
def test_dbfs_inputs_go_to_spark_without_a_local_check(spark, source):
    """No local existence check: Spark itself is asked for ``dbfs:/...`` (and fails here)."""
    with pytest.raises(Exception, match=r"dbfs") as err:
        read_source(spark, DataConfig(source=source, format="parquet"))
    assert not isinstance(err.value, InputValidationError)
