"""Subgroup tables joined into result.json, and the printed summary of missing intervals."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlearner_dist.core.estimator import merge_subgroup_effects
from mlearner_dist.summary import _fmt


def _table(note: str | None) -> pd.DataFrame:
    row: dict[str, object] = {"leaf": 1}
    for name in ("indirect", "direct", "total", "prop_mediated"):
        value = np.nan if name == "prop_mediated" else 0.5
        row.update({name: value, f"{name}_ci_low": value, f"{name}_ci_high": value})
    row["note"] = note
    return pd.DataFrame([row])


def test_notes_of_both_tables_reach_the_result_once():
    note = "prop_mediated not reported: the total effect's interval covers 0"
    out = merge_subgroup_effects(
        _table(note), _table(note), {1: "X1 > 0"}, np.array([1, 1, 1]), True
    )
    assert out[0]["note"] == note and out[0]["n"] == 3
    out = merge_subgroup_effects(
        _table(note), _table(None), {1: "X1 > 0"}, np.array([1]), True
    )
    assert out[0]["note"] == note


def test_summary_prints_n_a_for_an_interval_without_values():
    assert _fmt({"estimate": None, "ci_low": None, "ci_high": None}) == "n/a"
    assert _fmt(None) == "n/a"
    assert _fmt({"estimate": 0.1, "ci_low": 0.0, "ci_high": 0.2}) == "+0.100 [+0.000, +0.200]"
