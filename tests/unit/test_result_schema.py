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


def test_the_real_results_pass_and_carry_this_schema_version(real_result, real_result_total):
    """The fixtures are real pipeline outputs (tests/fixtures/make_results.py regenerates them
    when result.json changes); they must match the schema they were written under."""
    for doc in (real_result, real_result_total):
        assert doc["schema_version"] == SCHEMA_VERSION
        assert result_problems(doc) == []
        validate_result(doc)


@pytest.mark.parametrize("key", RESULT_SCHEMA["required"])
def test_removing_a_required_key_is_refused(key, real_result):
    doc = copy.deepcopy(real_result)
    del doc[key]
    problems = result_problems(doc)
    assert any(key in p for p in problems), problems


@pytest.mark.parametrize(
    ("path", "value", "where"),
    [
        (("declared",), "yes", "declared"),
        (("p_leaf",), 1.5, "p_leaf"),
        # values the code does not write: the schema must refuse them
        (("calibration", "mode"), "null_replicates", "calibration/mode"),
        (("chosen", "response"), "M", "chosen/response"),
        (("subgroups", 0, "n"), -1, "subgroups/0/n"),
        (("average_effects", "total"), {"estimate": 1.0}, "average_effects/total"),
    ],
)
def test_wrong_values_are_refused_with_their_path(path, value, where, real_result):
    doc = copy.deepcopy(real_result)
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
