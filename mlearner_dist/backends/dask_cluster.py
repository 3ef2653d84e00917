"""Dask client: a local cluster (default), an existing scheduler, or Dask on Databricks workers.

``compute.dask.scheduler_address`` selects the cluster:

- empty: a ``distributed.LocalCluster`` with ``n_workers`` worker processes of
  ``threads_per_worker`` threads and ``memory_limit`` each, closed when the run ends;
- ``tcp://host:8786`` (or any scheduler address): connect, never close the cluster;
- ``databricks``: the ``dask-databricks`` package's ``get_client()``, which finds the scheduler that
  its cluster init script started on the driver with workers on every Spark worker
  (docs/deployment.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from mlearner_dist.exceptions import ConfigError, StageError

__all__ = ["get_client"]

logger = logging.getLogger(__name__)


def get_client(
    address: str | None,
    *,
    n_workers: int = 2,
    threads_per_worker: int = 1,
    memory_limit: str = "4GiB",
    timeout: str = "30s",
) -> tuple[Any, Callable[[], None]]:
    """Connect to or start a Dask cluster.

    Parameters
    ----------
    address : str or None
        Scheduler address, ``"databricks"``, or None/empty for a local cluster.
    n_workers, threads_per_worker, memory_limit
        Local cluster shape (ignored when connecting).
    timeout : str
        Connection timeout.

    Returns
    -------
    client : distributed.Client
    close : callable
        Closes what this call started (the client, and the local cluster if one was started).
    """
    from distributed import Client, LocalCluster

    if address == "databricks":
        try:
            import dask_databricks  # type: ignore[import-not-found]
        except ImportError as exc:
            raise ConfigError(
                "compute.dask.scheduler_address='databricks' needs the dask-databricks package "
                "and its init script on the cluster (docs/deployment.md); or give a scheduler "
                "address, or leave it empty for a local Dask cluster"
            ) from exc
        client = dask_databricks.get_client()
        return client, client.close
    if address:
        try:
            client = Client(address, timeout=timeout)
        except OSError as exc:
            raise StageError(
                f"cannot reach the Dask scheduler at compute.dask.scheduler_address={address!r} "
                f"({exc}); start it, fix the address, or leave it empty for a local cluster"
            ) from exc
        logger.info("dask: connected to %s (%d workers)", address,
                    len(client.scheduler_info().get("workers", {})))
        return client, client.close
    if n_workers < 1 or threads_per_worker < 1:
        raise ConfigError("compute.dask.n_workers and threads_per_worker must be >= 1")
    cluster = LocalCluster(
        n_workers=n_workers,
        threads_per_worker=threads_per_worker,
        memory_limit=memory_limit,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.WARNING,
        # OpenMP threads = Dask threads: unlimited OpenMP inside each worker process
        # oversubscribes the cores (boosting and K-means ran 10-20 times slower on 2 cores)
        env={"OMP_NUM_THREADS": str(threads_per_worker)},
    )
    client = Client(cluster)
    logger.info("dask: local cluster, %d workers x %d threads, %s each",
                n_workers, threads_per_worker, memory_limit)

    def close() -> None:
        client.close()
        cluster.close()

    return client, close
