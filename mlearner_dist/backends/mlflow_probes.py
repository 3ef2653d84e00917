"""Fail fast when the MLflow tracking store cannot be used, before any expensive work.

:func:`check_tracking_reachable` says which URI, what failed and how to fix it (or
``tracking.enabled: false``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import mlflow
import mlflow.pyfunc

from mlearner_dist.backends.mlflow_store import TRACKING_FIX, sqlite_path
from mlearner_dist.exceptions import TrackingError

logger = logging.getLogger(__name__)

#: Seconds :func:`check_tracking_reachable` waits for a server before giving up.
DEFAULT_CHECK_TIMEOUT = 5.0


@contextlib.contextmanager
def _env(values: Mapping[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _within(timeout: float, fn: Callable[[], Any]) -> tuple[bool, BaseException | None]:
    """Run ``fn`` in a daemon thread; (finished in time, its exception or None)."""
    box: dict[str, BaseException] = {}

    def target() -> None:
        try:
            fn()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True, name="mlearner-tracking-check")
    thread.start()
    thread.join(timeout)
    return (not thread.is_alive(), box.get("error"))


def _probe_with_client(uri: str, timeout: float) -> None:
    def probe() -> None:
        mlflow.MlflowClient(tracking_uri=uri).search_experiments(max_results=1)

    env = {
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(max(1, math.ceil(timeout))),
    }
    with _env(env):
        finished, error = _within(timeout, probe)
    if not finished:
        raise TrackingError(
            f"MLflow tracking URI {uri!r} did not answer within {timeout:g} s. {TRACKING_FIX}"
        )
    if error is not None:
        raise TrackingError(
            f"MLflow tracking URI {uri!r} is not usable: {type(error).__name__}: {error}. "
            f"{TRACKING_FIX}"
        )


def _probe_http(uri: str, timeout: float) -> None:
    base = uri.rstrip("/")
    try:
        with urllib.request.urlopen(f"{base}/health", timeout=timeout) as resp:
            if resp.status < 400:
                return
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403, 404):
            # a proxy or an authenticating server: ask MLflow itself, with our credentials
            _probe_with_client(uri, timeout)
            return
        raise TrackingError(
            f"MLflow tracking server {uri!r} answered HTTP {exc.code} ({exc.reason}) on /health: "
            f"it is up but failing; check its logs. {TRACKING_FIX}"
        ) from exc
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingError(
            f"MLflow tracking server {uri!r} cannot be reached ({reason}). Start it (e.g. "
            f"`mlflow server --host 127.0.0.1 --port {urlparse(uri).port or 5000}`), check the "
            f"host and port, or {TRACKING_FIX.split(' or ', 1)[1]}"
        ) from exc


def _check_sqlite(uri: str) -> None:
    db = sqlite_path(uri)
    if db is None:
        raise TrackingError(
            f"tracking URI {uri!r} is not a sqlite:///<absolute or relative path> URI. "
            f"{TRACKING_FIX}"
        )
    try:
        db.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TrackingError(
            f"cannot create the folder {str(db.parent)!r} for the MLflow database of {uri!r}: "
            f"{exc}. Choose a writable --output or tracking.uri, or tracking.enabled: false"
        ) from exc
    if not os.access(db.parent, os.W_OK):
        raise TrackingError(
            f"the folder {str(db.parent)!r} of the MLflow database {uri!r} is not writable. "
            "Choose a writable --output or tracking.uri, or tracking.enabled: false"
        )
    if db.exists():
        try:
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=2)
            try:
                con.execute("PRAGMA schema_version").fetchone()
            finally:
                con.close()
        except sqlite3.Error as exc:
            raise TrackingError(
                f"{str(db)!r} exists but is not a readable SQLite database ({exc}): move it away "
                "or point tracking.uri elsewhere"
            ) from exc


def check_tracking_reachable(uri: str, *, timeout: float = DEFAULT_CHECK_TIMEOUT) -> None:
    """Fail fast when the MLflow tracking store cannot be used, before any expensive work.

    Parameters
    ----------
    uri : str
        The tracking URI the run will use.
    timeout : float, default 5
        Seconds to wait for a server.

    Raises
    ------
    TrackingError
        Naming the URI, what failed and how to fix it (or to set ``tracking.enabled: false``):
        an HTTP server that does not answer or answers with a server error; a SQLite database
        whose folder cannot be created or written or whose file is not a database; a file store
        without ``MLFLOW_ALLOW_FILE_STORE=true``; any other store MLflow cannot query in time.
    """
    if not isinstance(uri, str) or not uri.strip():
        raise TrackingError(f"tracking URI must be a non-empty string, got {uri!r}. {TRACKING_FIX}")
    if timeout <= 0:
        raise TrackingError(f"timeout must be positive, got {timeout!r}")
    started = time.monotonic()
    scheme = urlparse(uri).scheme
    if scheme in ("http", "https"):
        _probe_http(uri, timeout)
    elif scheme == "sqlite":
        _check_sqlite(uri)
    elif scheme in ("", "file"):
        if os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() != "true":
            raise TrackingError(
                f"tracking URI {uri!r} is a file store, which MLflow 3 refuses unless "
                "MLFLOW_ALLOW_FILE_STORE=true. Use sqlite:///<folder>/mlflow.db instead (the "
                "default when tracking.uri is empty), or tracking.enabled: false"
            )
        folder = Path(urlparse(uri).path if scheme == "file" else uri)
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK):
            raise TrackingError(
                f"the MLflow file store {str(folder)!r} is not writable. {TRACKING_FIX}"
            )
    else:
        _probe_with_client(uri, timeout)
    logger.info("tracking store %s reachable (%.2f s)", uri, time.monotonic() - started)


# -- recording an analysis ------------------------------------------------------------------------
