"""The core imports and runs with the distributed frameworks unavailable."""

from __future__ import annotations

import subprocess
import sys
import textwrap

BLOCKER = textwrap.dedent(
    """
    import importlib.abc, sys
    BLOCKED = {"pyspark", "dask", "dask_ml", "distributed", "mlflow"}
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{name} is blocked in this test")
            return None
    sys.meta_path.insert(0, Block())
    import pkgutil, importlib
    import mlearner_dist.core as core
    names = [m.name for m in pkgutil.iter_modules(core.__path__)]
    for name in names:
        importlib.import_module(f"mlearner_dist.core.{name}")
    import mlearner_dist.config, mlearner_dist.core.validation, mlearner_dist.datasets
    print("imported", len(names))
    """
)


def test_core_imports_without_spark_dask_mlflow():
    done = subprocess.run(
        [sys.executable, "-c", BLOCKER], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    n = int(done.stdout.split()[-1])
    assert n >= 10
