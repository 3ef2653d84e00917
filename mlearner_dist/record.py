"""The frozen analysis record: what an analysis ran on and with, so it can be re-checked.

``result.json["record"]`` (and the MLflow run's ``mlearner.data_hash`` / ``mlearner.code_commit``
tags) hold the fingerprint of the rows used (``units/`` as the validate stage wrote them: an
order- and partition-independent hash, :func:`mlearner_dist.backends.spark_io.rows_fingerprint`),
the fingerprint of the resolved configuration, the package version, the code commit when known and
the versions of the numerical libraries. ``mlearner verify RESULT.json`` re-runs the analysis from
the record and says whether it reproduces (:mod:`mlearner_dist.verify`).
"""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from mlearner_dist import __version__

LIBRARIES = (
    "numpy",
    "pandas",
    "scipy",
    "scikit-learn",
    "statsmodels",
    "openTSNE",
    "pyspark",
    "dask",
    "distributed",
    "dask-ml",
    "mlflow",
)


def code_commit() -> str | None:
    """The git commit of the code: ``MLEARNER_CODE_COMMIT`` if set, else the checkout's HEAD.

    A checkout counts only when this package sits directly in its top folder (an installed wheel
    in a virtual environment inside some repository does not). None when neither is known.
    """
    env = os.environ.get("MLEARNER_CODE_COMMIT")
    if env:
        return env
    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        return None
    try:
        done = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def library_versions() -> dict[str, str | None]:
    """Installed versions of the numerical libraries (None when one is not installed)."""
    out: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def analysis_record(cfg: Any, data_hash: dict[str, Any] | None) -> dict[str, Any]:
    """The record of one analysis.

    Parameters
    ----------
    cfg : Config
        The resolved configuration.
    data_hash : dict or None
        The validate stage's fingerprint of the used rows (``n_rows``, ``columns``, ``sha256``).

    Returns
    -------
    dict
        ``data_hash``, ``config_fingerprint``, ``version``, ``code_commit``, ``python``,
        ``libraries``.
    """
    return {
        "data_hash": data_hash,
        "config_fingerprint": cfg.fingerprint(),
        "version": __version__,
        "code_commit": code_commit(),
        "python": platform.python_version(),
        "libraries": library_versions(),
    }


__all__ = ["analysis_record", "code_commit", "library_versions"]
