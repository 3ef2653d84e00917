"""Connecting to an existing Dask cluster: wait for workers with a timeout, check versions."""

from __future__ import annotations

import logging
import time

import pytest

from mlearner_dist.backends.dask_cluster import (
    DaskVersionMismatchError,
    NoDaskWorkersError,
    check_cluster_versions,
    get_client,
)
from mlearner_dist.exceptions import ConfigError

pytestmark = pytest.mark.dask


@pytest.fixture()
def cluster_without_workers():
    from distributed import LocalCluster

    cluster = LocalCluster(
        n_workers=0, processes=False, dashboard_address=None, silence_logs=logging.WARNING
    )
    yield cluster
    cluster.close()


def test_a_scheduler_without_workers_fails_after_the_timeout_with_a_named_error(
    cluster_without_workers,
):
    started = time.monotonic()
    with pytest.raises(NoDaskWorkersError, match=r"has 0 worker\(s\) after 2 s.*dask worker"):
        get_client(cluster_without_workers.scheduler_address, worker_timeout=2)
    assert time.monotonic() - started < 30


def test_a_cluster_with_workers_is_checked_and_used(cluster_without_workers):
    cluster_without_workers.scale(1)
    client, close = get_client(cluster_without_workers.scheduler_address, worker_timeout=60)
    try:
        info = check_cluster_versions(client)
        assert info["workers"] == 1 and info["mlearner_dist"]
        assert client.submit(sum, [1, 2]).result() == 3
        with pytest.raises(DaskVersionMismatchError, match=r"mlearner-dist .* on worker"):
            check_cluster_versions(client, expected_mlearner="0.0.0-not-this")
    finally:
        close()


def test_databricks_address_without_dask_databricks_says_what_to_do_on_serverless(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "dask_databricks", None)  # not installed
    with pytest.raises(ConfigError, match=r"serverless compute runs no init scripts"):
        get_client("databricks")
