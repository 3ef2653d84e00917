"""The Spark session: reuse an active one (Databricks, spark-submit), else build a local one."""

from __future__ import annotations

import logging
import os
import re
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from mlearner_dist.config import SparkConfig

logger = logging.getLogger(__name__)


#: Attempts per task before a Spark job fails (cluster setting; local mode through the master URL).
TASK_MAX_FAILURES = 4
_LOCAL = re.compile(r"^local\[(\d+|\*)\]$")


def _with_task_retries(master: str, max_failures: int) -> str:
    """``local[N]`` -> ``local[N, max_failures]``: local mode retries a failed task only when the
    master URL says so (``spark.task.maxFailures`` applies to clusters). Other URLs unchanged.

    Parameters
    ----------
    master : str
        Spark master URL.
    max_failures : int
        Attempts per task.

    Returns
    -------
    str
    """
    m = _LOCAL.match(master.strip())
    return f"local[{m.group(1)}, {max_failures}]" if m else master


_ENV_REFERENCE = re.compile(r"^\s*\$\{([A-Za-z_][A-Za-z0-9_]*)\}\s*$")


def resolve_env_reference(key: str, value: str) -> str:
    """``${VAR}`` -> the value of the environment variable VAR; other values unchanged.

    Credentials in ``compute.spark.conf`` must be given this way (the configuration refuses
    literal ones), so they never appear in config files, logs or MLflow params.

    Parameters
    ----------
    key : str
        The Spark setting, for the error message.
    value : str

    Returns
    -------
    str

    Raises
    ------
    ConfigError
        The variable is not set.
    """
    m = _ENV_REFERENCE.match(str(value))
    if m is None:
        return str(value)
    name = m.group(1)
    if name not in os.environ:
        from mlearner_dist.exceptions import ConfigError

        raise ConfigError(
            f"compute.spark.conf[{key!r}] refers to the environment variable {name}, which is "
            "not set; export it before the run"
        )
    return os.environ[name]


def get_spark(cfg: SparkConfig | None = None) -> SparkSession:
    """Return the active SparkSession, or create one from the configuration.

    Python workers must run this interpreter so that pandas UDFs see the same virtual environment:
    ``PYSPARK_PYTHON`` is set to ``sys.executable`` unless the user set it already.

    Parameters
    ----------
    cfg : SparkConfig, optional
        Master URL, application name, driver memory, shuffle partitions and extra Spark settings.
        Ignored when a session is already active.

    Returns
    -------
    pyspark.sql.SparkSession
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:  # pragma: no cover - depends on the environment
        from mlearner_dist.exceptions import MLearnerError

        raise MLearnerError(
            "pyspark is not installed: install the extra with `pip install mlearner-dist[spark]` "
            "(on Databricks the runtime provides it)"
        ) from exc

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    from mlearner_dist.config import SparkConfig

    cfg = cfg or SparkConfig()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    master = _with_task_retries(cfg.master, TASK_MAX_FAILURES)
    builder = (
        SparkSession.builder.master(master)
        .appName(cfg.app_name)
        .config("spark.driver.memory", cfg.driver_memory)
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.task.maxFailures", str(TASK_MAX_FAILURES))
        # Spark's console progress bar garbles logs; our own progress display covers the stages
        .config("spark.ui.showConsoleProgress", "true" if sys.stderr.isatty() else "false")
    )
    if cfg.master.startswith("local"):
        # local mode retries a failed task only when the master says local[N, maxFailures]
        builder = builder.config("spark.sql.shuffle.partitions", str(cfg.partitions or 8))
    elif cfg.partitions:
        builder = builder.config("spark.sql.shuffle.partitions", str(cfg.partitions))
    for key, value in cfg.conf.items():
        builder = builder.config(key, resolve_env_reference(key, value))
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    logger.info("Spark %s session, master %s", spark.version, master)
    return spark
