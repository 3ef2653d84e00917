"""The import contract (tests/import_contract.py) holds, and fails when it is broken."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "import_contract.py"


def _load():
    spec = importlib.util.spec_from_file_location("import_contract", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    sys.modules["import_contract"] = mod
    spec.loader.exec_module(mod)
    return mod


contract = _load()


def _copy(tmp_path: Path) -> Path:
    dst = tmp_path / "mlearner_dist"
    shutil.copytree(ROOT / "mlearner_dist", dst, ignore=shutil.ignore_patterns("__pycache__"))
    return dst


def test_the_checkout_keeps_the_contract():
    assert contract.check_tree(ROOT / "mlearner_dist", ROOT / "jobs") == []


@pytest.mark.parametrize(
    ("target", "line", "why"),
    [
        ("core/selection.py", "import pyspark.sql", "only in mlearner_dist/backends"),
        ("core/estimator.py", "    from distributed import as_completed", "only in"),
        ("pipeline.py", "from dask import delayed", "only in mlearner_dist/backends"),
        ("core/folds.py", "from mlearner_dist.config import Config", "may not import layer"),
        ("core/folds.py", "from mlearner_dist import pipeline", "may not import layer"),
        ("config.py", "from mlearner_dist.backends import spark_io", "may not import layer"),
        ("backends/spark_io.py", "from mlearner_dist.pipeline import run_pipeline", "may not"),
        ("stages.py", "from . import cli", "may not import layer"),
    ],
)
def test_a_planted_violation_is_found(tmp_path, target, line, why):
    pkg = _copy(tmp_path)
    path = pkg / target
    text = path.read_text()
    if line.startswith("    "):
        text += "\n\ndef _planted():\n" + line + "\n"
    else:
        text += "\n" + line + "  # planted\n"
    path.write_text(text)
    problems = contract.check_tree(pkg)
    assert problems, f"planting {line!r} in {target} was not detected"
    assert any(why in str(p) and target.split("/")[-1] in p.path for p in problems)


def test_the_command_exits_nonzero_on_a_violation(tmp_path):
    pkg = _copy(tmp_path)
    (pkg / "core" / "planted.py").write_text("import mlflow\n")
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(pkg)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 1
    assert "planted.py" in done.stdout and "mlflow" in done.stdout
    ok = subprocess.run(
        [sys.executable, str(SCRIPT), str(ROOT / "mlearner_dist")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stdout


def test_a_module_off_the_map_is_refused(tmp_path):
    pkg = _copy(tmp_path)
    (pkg / "utils.py").write_text("x = 1\n")
    with pytest.raises(ValueError, match="no floor"):
        contract.check_tree(pkg)


@pytest.mark.parametrize(
    ("target", "line"),
    [
        ("backends/mlflow_runs.py", "from mlearner_dist.backends.mlflow_store import _secret"),
        ("core/folds.py", "from .effects import _r2"),
        ("pipeline.py", "    from mlearner_dist.core.effects import density_ratio, _r2"),
    ],
)
def test_a_planted_private_import_is_found(tmp_path, target, line):
    pkg = _copy(tmp_path)
    path = pkg / target
    text = path.read_text()
    if line.startswith("    "):
        text += "\n\ndef _planted():\n" + line + "\n"
    else:
        text += "\n" + line + "  # planted\n"
    path.write_text(text)
    problems = [p for p in contract.check_tree(pkg) if "private" in p.why]
    assert len(problems) == 1, problems
    assert problems[0].path.endswith(target.split("/")[-1])
    assert problems[0].imported.endswith("._secret") or problems[0].imported.endswith("._r2")


def test_dunder_and_own_module_names_are_not_private_imports(tmp_path):
    pkg = _copy(tmp_path)
    (pkg / "core" / "planted.py").write_text("from mlearner_dist import __version__\n")
    assert [p for p in contract.check_tree(pkg) if "private" in p.why] == []
