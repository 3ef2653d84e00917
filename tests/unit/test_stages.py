"""Stage bookkeeping: atomic outputs, manifests, invalidation, partial-output clean-up."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from mlearner_dist.exceptions import StageError
from mlearner_dist.stages import (
    Manifest,
    atomic_output,
    clean_partial,
    fingerprint,
    invalidate_from,
    read_manifest,
    to_jsonable,
    write_json_atomic,
    write_manifest,
)


def _manifest(stage: str) -> Manifest:
    return Manifest(
        stage=stage,
        fingerprint="abc",
        rows={"in": 3, "out": 3},
        seed=1,
        seconds=0.1,
        finished="now",
        extra={},
    )


def test_atomic_output_commits_only_on_success(tmp_path):
    final = tmp_path / "effects"
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_output(final) as tmp:
            tmp.mkdir()
            (tmp / "part-0").write_text("half")
            raise RuntimeError("boom")
    assert not final.exists()
    assert list(tmp_path.iterdir()) == []
    with atomic_output(final) as tmp:
        tmp.mkdir()
        (tmp / "part-0").write_text("whole")
    assert (final / "part-0").read_text() == "whole"
    with atomic_output(final) as tmp:
        tmp.mkdir()
        (tmp / "part-1").write_text("new")
    assert sorted(p.name for p in final.iterdir()) == ["part-1"]
    assert [p.name for p in tmp_path.iterdir()] == ["effects"]


def test_atomic_output_requires_an_output(tmp_path):
    with pytest.raises(StageError, match="did not write its output"):
        with atomic_output(tmp_path / "x"):
            pass


def test_manifest_roundtrip_and_missing_output(tmp_path):
    (tmp_path / "units").mkdir()
    write_manifest(tmp_path, _manifest("validate"))
    assert read_manifest(tmp_path, "validate") == _manifest("validate")
    (tmp_path / "units").rmdir()
    assert read_manifest(tmp_path, "validate") is None


def test_invalidate_from_removes_later_manifests(tmp_path):
    for stage, out in [("validate", "units"), ("effects", "effects"), ("embed", "embedding")]:
        (tmp_path / out).mkdir()
        write_manifest(tmp_path, _manifest(stage))
    invalidate_from(tmp_path, "effects")
    assert read_manifest(tmp_path, "validate") is not None
    assert read_manifest(tmp_path, "effects") is None
    assert read_manifest(tmp_path, "embed") is None


def test_clean_partial_removes_only_temporaries(tmp_path):
    (tmp_path / ".tmp-effects-1234").mkdir()
    (tmp_path / ".tmp-result.json-1").write_text("{")
    (tmp_path / "effects").mkdir()
    removed = clean_partial(tmp_path)
    assert sorted(removed) == [".tmp-effects-1234", ".tmp-result.json-1"]
    assert [p.name for p in tmp_path.iterdir()] == ["effects"]


def test_json_handles_numpy_and_nan(tmp_path):
    obj = {
        "a": np.float64(1.5),
        "b": np.int64(2),
        "c": math.nan,
        "d": (np.bool_(True),),
        "e": np.arange(2),
    }
    write_json_atomic(tmp_path / "r.json", obj)
    assert json.loads((tmp_path / "r.json").read_text()) == {
        "a": 1.5,
        "b": 2,
        "c": None,
        "d": [True],
        "e": [0, 1],
    }
    assert to_jsonable([math.inf]) == [None]


def test_fingerprint_is_stable_and_sensitive():
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})
