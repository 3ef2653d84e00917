"""Where inputs are read from and outputs written to: a laptop, a Spark cluster, Databricks.

Inputs are read by Spark, which understands URIs (``dbfs:/``, ``s3://``, ``abfss://``, ``hdfs://``)
and Databricks' Unity Catalog volumes (``/Volumes/<catalog>/<schema>/<volume>/...``). Such inputs
are handed to Spark as they are, without a local existence check (the driver may not see them as
files). A ``/dbfs/...`` path is the local FUSE view of DBFS: Spark resolves a bare path against
its default file system, so ``/dbfs/x`` is given to Spark as ``dbfs:/x``.

Outputs are different: stages write with ``os.replace`` (atomic rename), the Dask stages read and
write with local file APIs, and MLflow's default store is a SQLite file. The output folder must
therefore be a POSIX path that the driver and, for Dask on a cluster, every worker see: a Unity
Catalog volume (``/Volumes/...``), the ``/dbfs/...`` FUSE mount, an NFS mount, or a local folder
on one machine. A URI (``hdfs:///runs/a1``, ``s3://b/runs``, ``dbfs:/runs``) is refused before any
work starts, with the POSIX path to use instead where there is one.
"""

from __future__ import annotations

import re
from pathlib import Path

from mlearner_dist.exceptions import ConfigError

__all__ = [
    "is_spark_only_input",
    "local_view",
    "shared_output_path",
    "spark_input_path",
]

_URI = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*):/")
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")
_VOLUMES = "/Volumes/"
_DBFS_FUSE = "/dbfs/"


def _scheme(path: str) -> str | None:
    if _WINDOWS_DRIVE.match(path):
        return None
    m = _URI.match(path)
    return m.group("scheme").lower() if m else None


def is_spark_only_input(source: str) -> bool:
    """True when ``source`` is for Spark to resolve, so it is not checked as a local file.

    Parameters
    ----------
    source : str
        ``data.source``.

    Returns
    -------
    bool
        True for a URI (``dbfs:/``, ``s3://``, ``abfss://``, ``hdfs://``, ``file:/``...), a Unity
        Catalog volume path (``/Volumes/...``) and the DBFS FUSE path (``/dbfs/...``).
    """
    return (
        _scheme(source) is not None
        or source.startswith(_VOLUMES)
        or source.startswith(_DBFS_FUSE)
    )


def spark_input_path(source: str) -> str:
    """The path to give Spark for ``source``: ``/dbfs/x`` becomes ``dbfs:/x``, the rest is kept."""
    if source.startswith(_DBFS_FUSE):
        return "dbfs:/" + source[len(_DBFS_FUSE):]
    return source


def local_view(source: str) -> str:
    """The local (POSIX or object-store URI) path for non-Spark readers such as delta-rs.

    ``dbfs:/x`` becomes the FUSE path ``/dbfs/x``; ``file:/x`` becomes ``/x``; other URIs
    (``s3://``, ``abfss://``...) are kept, since delta-rs reads them itself.
    """
    scheme = _scheme(source)
    if scheme == "dbfs":
        return _DBFS_FUSE + source.split(":", 1)[1].lstrip("/")
    if scheme == "file":
        return "/" + source.split(":", 1)[1].lstrip("/")
    return source


def shared_output_path(output: str | Path) -> Path:
    """Check the output folder before any work and return it as a path.

    Parameters
    ----------
    output : str or Path
        ``--output``.

    Returns
    -------
    Path

    Raises
    ------
    ConfigError
        When ``output`` is a URI rather than a POSIX path; the message names the path to use.
    """
    text = str(output)
    scheme = _scheme(text)
    if scheme is None:
        return Path(text)
    if scheme == "file":
        return Path("/" + text.split(":", 1)[1].lstrip("/"))
    rest = text.split(":", 1)[1].lstrip("/")
    if scheme == "dbfs":
        hint = (
            f"use the FUSE path /dbfs/{rest} or, better, a Unity Catalog volume "
            "(--output /Volumes/<catalog>/<schema>/<volume>/...)"
        )
    else:
        hint = (
            "use a POSIX path on storage that the driver and the Dask workers share: a Unity "
            "Catalog volume on Databricks (/Volumes/<catalog>/<schema>/<volume>/...), an NFS "
            "mount on a Spark cluster, or a local folder on one machine"
        )
    raise ConfigError(
        f"--output {text!r} is a {scheme}: URI, and the output folder must be a POSIX path "
        "(stages rename their outputs into place, the Dask stages and the MLflow SQLite store "
        f"use local file access); {hint}"
    )
