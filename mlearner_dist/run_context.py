"""The state one pipeline run shares between its stages: config, output folder, engines.

Also where the MLflow store of a run is, and the check that a local store lies inside the output
folder.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlearner_dist.config import Config
from mlearner_dist.core.roles import Roles
from mlearner_dist.exceptions import StageError

logger = logging.getLogger(__name__)


def tracking_uri_for(cfg: Config, output: Path | None) -> str:
    """The MLflow tracking URI: the configured one, else SQLite inside the output folder."""
    if cfg.tracking.uri:
        return cfg.tracking.uri
    if output is None:
        raise StageError("no tracking.uri configured: pass --output DIR to use DIR/mlflow.db")
    return f"sqlite:///{(output / 'mlflow.db').resolve()}"


def local_store_path(uri: str) -> Path | None:
    """Where a local MLflow store writes (``sqlite:``, ``file:`` or a plain path), else None.

    Parameters
    ----------
    uri : str
        A tracking URI.

    Returns
    -------
    Path or None
        None for remote stores (``http(s)://``, ``databricks``, ...).
    """
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///") :])
    if uri.startswith("file:"):
        from urllib.parse import urlparse

        return Path(urlparse(uri).path)
    if "://" in uri or uri.split(":", 1)[0] in ("databricks", "databricks-uc"):
        return None
    return Path(uri)


def check_tracking_location(cfg: Config, output: Path) -> None:
    """Refuse a local MLflow store outside the output folder unless the config allows it.

    Parameters
    ----------
    cfg : Config
    output : Path
        The run's output folder.

    Raises
    ------
    ConfigError
        ``tracking.uri`` writes outside ``output`` and ``tracking.allow_outside_output`` is false.
    """
    uri = tracking_uri_for(cfg, output)
    path = local_store_path(uri)
    if path is None or cfg.tracking.allow_outside_output:
        return
    root = output.resolve()
    target = path.expanduser().resolve()
    if target != root and root not in target.parents:
        from mlearner_dist.exceptions import ConfigError

        raise ConfigError(
            f"tracking.uri={uri!r} writes the MLflow store to {target}, outside the output folder "
            f"{root}; leave tracking.uri empty (DIR/mlflow.db), point it inside the output "
            "folder or at a server, or set tracking.allow_outside_output=true for a shared local "
            "store"
        )


@dataclass
class RunContext:
    """Shared state of one pipeline run: config, output folder, engines, tracker, timings."""

    cfg: Config
    output: Path
    timings: dict[str, float] = field(default_factory=dict)
    _spark: Any = None
    _dask: tuple[Any, Callable[[], None]] | None = None

    @property
    def roles(self) -> Roles:
        """Column roles from the configuration."""
        return self.cfg.roles

    @property
    def spark(self) -> Any:
        """The Spark session (created on first use)."""
        if self._spark is None:
            from mlearner_dist.backends.spark_session import get_spark

            self._spark = get_spark(self.cfg.compute.spark)
        return self._spark

    @property
    def dask(self) -> Any:
        """The Dask client (connected or started on first use)."""
        if self._dask is None:
            from mlearner_dist.backends.dask_cluster import get_client

            d = self.cfg.compute.dask
            self._dask = get_client(
                d.scheduler_address or None,
                n_workers=d.n_workers,
                threads_per_worker=d.threads_per_worker,
                memory_limit=d.memory_limit,
            )
        return self._dask[0]

    def close(self) -> None:
        """Close the Dask client this run started (Spark stays up for reuse)."""
        if self._dask is not None:
            self._dask[1]()
            self._dask = None


__all__ = ["RunContext", "check_tracking_location", "local_store_path", "tracking_uri_for"]
