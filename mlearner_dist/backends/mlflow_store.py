"""Where an MLflow tracking store keeps runs and artifacts (shared by the other mlflow_* modules).

The embedded default store is ``sqlite:///<output>/mlflow.db`` with artifacts in
``<output>/mlartifacts`` (MLflow 3 refuses a ``./mlruns`` file store unless
``MLFLOW_ALLOW_FILE_STORE=true``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import mlflow
import mlflow.pyfunc

logger = logging.getLogger(__name__)

#: What to do when the tracking store fails, appended to tracking error messages.
TRACKING_FIX = (
    "fix the URI (tracking.uri / --tracking-uri) or turn tracking off with tracking.enabled: false"
)


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (None for other schemes or in-memory)."""
    if not uri.startswith("sqlite:"):
        return None
    rest = uri[len("sqlite:") :]
    if rest.startswith("///"):
        path = rest[3:]
        if path in ("", ":memory:"):
            return None
        # sqlite:///rel/path is relative to the working directory, sqlite:////abs/path absolute
        return Path(path)
    return None


def default_artifact_location(tracking_uri: str) -> str | None:
    """Where a new experiment of ``tracking_uri`` keeps its artifacts.

    For a SQLite store, the folder ``mlartifacts`` next to the database file (as a ``file://``
    URI), so an embedded run keeps everything under its output folder; None (the server's
    default) otherwise.
    """
    db = sqlite_path(tracking_uri)
    if db is None:
        return None
    return (db.resolve().parent / "mlartifacts").as_uri()


@contextlib.contextmanager
def use_tracking_uri(uri: str | None) -> Iterator[None]:
    """Point MLflow's fluent API at ``uri`` for the duration of the block, then restore it."""
    if not uri:
        yield
        return
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)
