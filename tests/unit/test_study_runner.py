"""benchmarks/study.py's summaries: the paired comparison and the overlap column."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "study.py"


@pytest.fixture(scope="module")
def runner():
    spec = importlib.util.spec_from_file_location("study_runner", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rep(seed, declared, **extra):
    return {"seed": seed, "declared": declared, "p_leaf": 0.5, "n_leaves": 1, "variables": [],
            "n_replicates": 49, "seconds": 1.0, **extra}  # fmt: skip


def test_paired_comparison_counts_discordant_seeds_on_the_common_ones(runner):
    a = {str(s): _rep(s, s in (1, 2, 3)) for s in range(10)}
    b = {str(s): _rep(s, s in (3,)) for s in range(12)}
    doc = {"settings": {"A": {"replicates": a}, "B": {"replicates": b}}}
    got = runner.paired_comparison(doc, "A", "B")
    assert (got["R"], got["declared_a"], got["declared_b"]) == (10, 3, 1)
    assert (got["only_a"], got["only_b"]) == (2, 0)
    assert got["mcnemar_exact_p"] == pytest.approx(0.5)  # 2 of 2 discordant: 2 x (1/2)^2
    assert runner.paired_comparison(doc, "A", "A")["mcnemar_exact_p"] == 1.0


def test_the_unsupported_share_counts_only_the_replicates_that_recorded_it(runner):
    reps = {
        "1": _rep(1, False, indirect_supported=False),
        "2": _rep(2, True, indirect_supported=True),
        "3": _rep(3, False),  # recorded before the field existed
    }
    setting = {"scenario": "simple-all", "n": 100, "noise_sd": 0.01, "overrides": [],
               "replicates": reps}  # fmt: skip
    assert runner.summarise(setting)["unsupported_rate"] == 0.5
    assert "unsup" in runner.format_table({"settings": {"k": setting}}).splitlines()[0]
