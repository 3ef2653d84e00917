"""The small study of issue "inference" (make test-slow): one null and one alternative, R = 20.

n = 300 units, B = 40 score replicates per half (the fewest with which the cross-split decision
can declare at alpha = 0.05), through ``mlearner study`` (the command users run), which prints the
same table as ``benchmarks/study.py``. The null must hold alpha + 3 sqrt(alpha (1 - alpha) / R)
(at most 3 of 20); the alternative (simple-all, noise sd 0.01) must be declared in most data sets.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = (
    "--set", "calibration.n_replicates=40",
    "--set", "sensitivity.enabled=false",
    "--set", "subgroups.n_bootstrap=20",
)  # fmt: skip


def _study(scenario: str, tmp: Path) -> dict:
    exe = shutil.which("mlearner", path=str(Path(sys.executable).parent))
    assert exe is not None
    out = tmp / f"{scenario}.json"
    done = subprocess.run(
        [exe, "study", "--scenario", scenario, "--n", "300", "--replicates", "20",
         "--noise-sd", "0.01", "--seed", "1", "--workers", "2", "--output", str(out),
         *SETTINGS, "--quiet"],
        capture_output=True, text=True, timeout=1800, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert scenario in done.stdout  # the table
    return json.loads(out.read_text())


@pytest.mark.slow
def test_small_study_null_holds_alpha_and_alternative_is_found(tmp_path):
    null = _study("simple-null2", tmp_path)
    alt = _study("simple-all", tmp_path)
    n_null = sum(r["declared"] for r in null["replicate_details"])
    n_alt = sum(r["declared"] for r in alt["replicate_details"])
    assert len(null["replicate_details"]) == len(alt["replicate_details"]) == 20
    assert n_null <= 3, n_null
    assert n_alt >= 12, n_alt
