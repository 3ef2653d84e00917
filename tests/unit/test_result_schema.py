"""The result.json schema accepts what the report writes and refuses what breaks the contract."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from mlearner_dist.exceptions import MLearnerError
from mlearner_dist.result_schema import (
    RESULT_SCHEMA,
    SCHEMA_VERSION,
    result_problems,
    schema_markdown,
    validate_result,
)

ROOT = Path(__file__).resolve().parents[2]

CI = {"estimate": 0.1, "ci_low": 0.0, "ci_high": 0.2}
CONF = {
    "k": 2,
    "tree_id": 0,
    "n_leaves": 2,
    "variables": ["X1"],
    "cv_error": 0.1,
    "selected_for_test": True,
    "p_y": 0.01,
    "p_m": 0.02,
}
MINIMAL = {
    "schema_version": SCHEMA_VERSION,
    "run_id": "abc",
    "mlflow_run_id": None,
    "created": "2026-12-01T00:00:00+00:00",
    "version": "0.1.0",
    "config": {"columns": {}, "effects": {}, "calibration": {}},
    "row_account": {"n_input": 10, "n_used": 10, "removed": {}},
    "has_mediator": True,
    "average_effects": {"indirect": CI, "direct": CI, "total": CI, "prop_mediated": None},
    "nuisance_diagnostics": {},
    "embedding": {},
    "clustering": {},
    "configurations": [CONF],
    "chosen": {**CONF, "response": "m"},
    "p_leaf": 0.02,
    "p_leaf_y": 0.01,
    "p_leaf_m": 0.02,
    "threshold": 0.05,
    "calibration": {
        "mode": "fixed",
        "alpha": 0.05,
        "threshold": 0.05,
        "n_replicates": 0,
        "null_p_leaf": [],
        "mc_pvalue": None,
        "how": "fixed",
    },
    "declared": True,
    "subgroups": [
        {
            "leaf": 1,
            "rule": "X1 <= 0",
            "n": 10,
            "indirect": CI,
            "direct": CI,
            "total": CI,
            "prop_mediated": None,
            "unadjusted": {"indirect": CI, "direct": CI, "total": CI, "prop_mediated": None},
        }
    ],
    "record": {
        "data_hash": {"n_rows": 10, "columns": ["unit_id", "T"], "sha256": "0" * 64},
        "config_fingerprint": "abc",
        "version": "0.1.0",
        "code_commit": None,
        "python": "3.11.7",
        "libraries": {"numpy": "2.4.6"},
    },
    "timings": {"validate": 1.0},
}


def test_a_complete_document_passes():
    assert result_problems(MINIMAL) == []
    validate_result(MINIMAL)


@pytest.mark.parametrize("key", RESULT_SCHEMA["required"])
def test_removing_a_required_key_is_refused(key):
    doc = copy.deepcopy(MINIMAL)
    del doc[key]
    problems = result_problems(doc)
    assert any(key in p for p in problems), problems


@pytest.mark.parametrize(
    ("path", "value", "where"),
    [
        (("declared",), "yes", "declared"),
        (("p_leaf",), 1.5, "p_leaf"),
        (("calibration", "mode"), "null_replicates", "calibration/mode"),
        (("chosen", "response"), "M", "chosen/response"),
        (("subgroups", 0, "n"), -1, "subgroups/0/n"),
        (("average_effects", "total"), {"estimate": 1.0}, "average_effects/total"),
    ],
)
def test_wrong_values_are_refused_with_their_path(path, value, where):
    doc = copy.deepcopy(MINIMAL)
    node = doc
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    problems = result_problems(doc)
    assert any(p.startswith(where) for p in problems), problems
    with pytest.raises(MLearnerError, match="does not match its schema"):
        validate_result(doc)


def test_docs_are_generated_from_the_schema():
    assert (ROOT / "docs" / "result_schema.md").read_text() == schema_markdown()
