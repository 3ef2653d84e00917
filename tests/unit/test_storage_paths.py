"""Input paths for Spark and the output folder's check (backends/storage_paths.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlearner_dist.backends.storage_paths import (
    is_spark_only_input,
    local_view,
    shared_output_path,
    spark_input_path,
)
from mlearner_dist.exceptions import ConfigError


@pytest.mark.parametrize(
    "source",
    [
        "dbfs:/mnt/data/units",
        "dbfs:///mnt/data/units",
        "/Volumes/main/trial/raw/units.parquet",
        "/dbfs/mnt/data/units",
        "s3://bucket/units",
        "abfss://c@acct.dfs.core.windows.net/units",
        "hdfs:///data/units",
        "file:/tmp/units",
    ],
)
def test_inputs_spark_resolves_are_not_checked_locally(source):
    assert is_spark_only_input(source)


@pytest.mark.parametrize("source", ["units.parquet", "data/units", "/tmp/units", "C:\\data\\u"])
def test_local_inputs_are_checked(source):
    assert not is_spark_only_input(source)


def test_dbfs_fuse_paths_are_given_to_spark_as_dbfs_uris_and_back():
    assert spark_input_path("/dbfs/mnt/data/units") == "dbfs:/mnt/data/units"
    assert spark_input_path("/Volumes/main/s/v/u") == "/Volumes/main/s/v/u"
    assert spark_input_path("s3://b/u") == "s3://b/u"
    assert local_view("dbfs:/mnt/data/units") == "/dbfs/mnt/data/units"
    assert local_view("dbfs:///mnt/data/units") == "/dbfs/mnt/data/units"
    assert local_view("file:///tmp/u") == "/tmp/u"
    assert local_view("s3://b/u") == "s3://b/u"


@pytest.mark.parametrize(
    "output",
    ["runs/a1", "/Volumes/main/mlearner/runs/a1", "/dbfs/runs/a1", "/mnt/nfs/runs/a1"],
)
def test_posix_outputs_are_accepted(output):
    assert shared_output_path(output) == Path(output)


def test_file_uri_output_is_its_path():
    assert shared_output_path("file:///tmp/runs/a1") == Path("/tmp/runs/a1")


@pytest.mark.parametrize(
    ("output", "hint"),
    [
        ("hdfs:///runs/a1", r"hdfs: URI.*POSIX path.*NFS mount"),
        ("s3://bucket/runs/a1", r"s3: URI.*/Volumes/<catalog>/<schema>/<volume>"),
        ("abfss://c@a.dfs.core.windows.net/runs", r"abfss: URI"),
        ("dbfs:/runs/a1", r"dbfs: URI.*use the FUSE path /dbfs/runs/a1"),
    ],
)
def test_uri_outputs_are_refused_with_the_path_to_use(output, hint):
    with pytest.raises(ConfigError, match=hint):
        shared_output_path(output)


def test_run_pipeline_refuses_a_uri_output_before_any_work(tmp_path, monkeypatch):
    from mlearner_dist.config import load_config
    from mlearner_dist.pipeline import run_pipeline

    monkeypatch.chdir(tmp_path)
    cfg = load_config([], ["data.source=jobs_ii", "data.format=builtin"])
    with pytest.raises(ConfigError, match=r"--output 'hdfs:///runs/a1' is a hdfs: URI"):
        run_pipeline(cfg, "hdfs:///runs/a1")
    assert list(tmp_path.iterdir()) == []  # no local 'hdfs:' folder was made
