"""Dask client: a local cluster (default), an existing scheduler, or Dask on Databricks workers.

``compute.dask.scheduler_address`` selects the cluster:

- empty: a ``distributed.LocalCluster`` with ``n_workers`` worker processes of
  ``threads_per_worker`` threads and ``memory_limit`` each, closed when the run ends;
- ``tcp://host:8786`` (or any scheduler address): connect, never close the cluster;
- ``databricks``: the ``dask-databricks`` package's ``get_client()``, which finds the scheduler that
  its cluster init script started on the driver with workers on every Spark worker
  (resources/init/dask_databricks.sh, docs/deployment.md). Serverless compute runs no init
  scripts, so there is no such scheduler: leave the address empty there (the bundle's serverless
  job does) for a local Dask cluster in the driver's container.

Connecting to an existing cluster then waits for at least one worker (:func:`wait_for_workers`,
:class:`NoDaskWorkersError` after ``worker_timeout`` seconds, instead of waiting forever), and
checks that the client, the scheduler and every worker run the same dask, distributed and the
other packages Dask compares, and import the same mlearner-dist (:func:`check_cluster_versions`,
:class:`DaskVersionMismatchError`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from mlearner_dist.exceptions import ConfigError, StageError

__all__ = [
    "DaskVersionMismatchError",
    "NoDaskWorkersError",
    "check_cluster_versions",
    "get_client",
    "wait_for_workers",
]

logger = logging.getLogger(__name__)

#: Seconds to wait for the first worker of an existing cluster.
DEFAULT_WORKER_TIMEOUT = 120.0


class NoDaskWorkersError(StageError):
    """The Dask scheduler has fewer workers than needed after the timeout."""


class DaskVersionMismatchError(StageError):
    """Client, scheduler and workers run different versions of Dask or of mlearner-dist."""


def wait_for_workers(client: Any, n_workers: int = 1, *, timeout: float = DEFAULT_WORKER_TIMEOUT,
                     address: str = "") -> int:
    """Wait until the scheduler has at least ``n_workers`` workers.

    Parameters
    ----------
    client : distributed.Client
    n_workers : int, default 1
    timeout : float
        Seconds.
    address : str
        For the message.

    Returns
    -------
    int
        The number of workers.

    Raises
    ------
    NoDaskWorkersError
        After ``timeout`` seconds with fewer workers; the message says what to check.
    """
    try:
        client.wait_for_workers(n_workers, timeout=timeout)
    except (TimeoutError, OSError) as exc:
        have = len(client.scheduler_info().get("workers", {}))
        raise NoDaskWorkersError(
            f"the Dask scheduler {address or client.scheduler.address} has {have} worker(s) after "
            f"{timeout:g} s, {n_workers} needed: start workers (`dask worker <address>`; on "
            "Databricks check the init script's log on the workers), or leave "
            "compute.dask.scheduler_address empty for a local Dask cluster"
        ) from exc
    return len(client.scheduler_info().get("workers", {}))


def _mlearner_version() -> str:
    import mlearner_dist

    return str(mlearner_dist.__version__)


def check_cluster_versions(client: Any, *, expected_mlearner: str | None = None) -> dict[str, Any]:
    """Check that client, scheduler and workers run the same packages and mlearner-dist.

    Parameters
    ----------
    client : distributed.Client
    expected_mlearner : str, optional
        The mlearner-dist version the workers must import; default the client's.

    Returns
    -------
    dict
        ``{"workers": n, "dask": ..., "distributed": ..., "mlearner_dist": ...}`` for the logs.

    Raises
    ------
    DaskVersionMismatchError
        Naming every package and process that differs, or the workers that cannot import
        mlearner-dist.
    """
    versions = client.get_versions(check=False)
    problems: list[str] = []
    mine = versions["client"]["packages"]
    names = ("python", "dask", "distributed", "msgpack", "cloudpickle", "tornado", "toolz")
    procs = {"scheduler": versions["scheduler"]["packages"]}
    procs.update({f"worker {w}": v["packages"] for w, v in versions["workers"].items()})
    for name in names:
        differ = {p: v.get(name) for p, v in procs.items() if v.get(name) != mine.get(name)}
        if differ:
            problems.append(
                f"{name} {mine.get(name)} on the client, but "
                + ", ".join(f"{v} on the {p}" for p, v in sorted(differ.items()))
            )
    want = expected_mlearner or _mlearner_version()
    try:
        on_workers = client.run(_mlearner_version)
    except Exception as exc:  # a worker that cannot import the package fails the call
        problems.append(f"a worker cannot import mlearner_dist ({type(exc).__name__}: {exc})")
        on_workers = {}
    for worker, version in sorted(on_workers.items()):
        if version != want:
            problems.append(f"mlearner-dist {version} on worker {worker}, {want} on the client")
    if problems:
        raise DaskVersionMismatchError(
            "the Dask cluster does not run what the client runs: " + "; ".join(problems)
            + ". Install the same versions everywhere (constraints.txt; on Databricks the init "
            "script resources/init/dask_databricks.sh and the job's wheel library)"
        )
    return {
        "workers": len(versions["workers"]),
        "dask": mine.get("dask"),
        "distributed": mine.get("distributed"),
        "mlearner_dist": want,
    }


def get_client(
    address: str | None,
    *,
    n_workers: int = 2,
    threads_per_worker: int = 1,
    memory_limit: str = "4GiB",
    timeout: str = "30s",
    worker_timeout: float = DEFAULT_WORKER_TIMEOUT,
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
    worker_timeout : float
        Seconds to wait for the first worker of an existing cluster.

    Returns
    -------
    client : distributed.Client
    close : callable
        Closes what this call started (the client, and the local cluster if one was started).

    Raises
    ------
    ConfigError
        ``databricks`` without dask-databricks (or on serverless compute).
    StageError
        The scheduler cannot be reached; :class:`NoDaskWorkersError` when it has no worker in
        time; :class:`DaskVersionMismatchError` when versions differ.
    """
    from distributed import Client, LocalCluster

    if address == "databricks":
        try:
            import dask_databricks  # type: ignore[import-not-found]
        except ImportError as exc:
            raise ConfigError(
                "compute.dask.scheduler_address='databricks' needs the dask-databricks package "
                "and its init script on a classic cluster (resources/init/dask_databricks.sh, "
                "docs/deployment.md); serverless compute runs no init scripts, so there leave "
                "the address empty for a local Dask cluster in the driver (the bundle's "
                "serverless job does), or give a scheduler address"
            ) from exc
        try:
            client = dask_databricks.get_client()
        except (KeyError, OSError) as exc:
            raise StageError(
                f"dask-databricks found no Dask scheduler on this cluster ({exc}): is the init "
                "script resources/init/dask_databricks.sh attached to the job cluster? On "
                "serverless compute leave compute.dask.scheduler_address empty"
            ) from exc
        return _checked(client, "databricks", worker_timeout), client.close
    if address:
        try:
            client = Client(address, timeout=timeout)
        except OSError as exc:
            raise StageError(
                f"cannot reach the Dask scheduler at compute.dask.scheduler_address={address!r} "
                f"({exc}); start it, fix the address, or leave it empty for a local cluster"
            ) from exc
        try:
            _checked(client, address, worker_timeout)
        except StageError:
            client.close()
            raise
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


def _checked(client: Any, address: str, worker_timeout: float) -> Any:
    n = wait_for_workers(client, 1, timeout=worker_timeout, address=address)
    info = check_cluster_versions(client)
    logger.info("dask: connected to %s (%d workers; dask %s, mlearner-dist %s everywhere)",
                address, n, info["dask"], info["mlearner_dist"])
    return client
