"""The one JSON sanitiser, core.jsonable.to_jsonable."""

from __future__ import annotations

import enum
import json
import math
from pathlib import Path

import numpy as np
import yaml

from mlearner_dist.core.jsonable import to_jsonable


class _Colour(str, enum.Enum):
    RED = "red"


def test_str_subclasses_become_plain_str_of_the_same_value():
    out = to_jsonable({"a": np.str_("x"), "b": [_Colour.RED], np.str_("k"): "v"})
    assert out == {"a": "x", "b": ["red"], "k": "v"}
    assert type(out["a"]) is str and type(out["b"][0]) is str
    assert yaml.safe_load(yaml.safe_dump(out)) == out  # the safe dumper refuses numpy.str_
    assert json.dumps(out) == json.dumps({"a": np.str_("x"), "b": [_Colour.RED], "k": "v"})


def _old_tracker_plain(obj):
    """The MLflow tracker's former private conversion (a json round trip with a default)."""

    def default(o):
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        return str(o)

    return json.loads(json.dumps(obj, default=default))


def test_equals_the_former_mlflow_conversion_on_finite_values():
    obj = {
        "a": {"b": np.int64(3), "c": np.float32(0.1), "d": np.bool_(True)},
        "e": np.arange(3),
        "f": (1, 2.5, "x", None),
        "g": Path("/tmp/out"),
        "h": {1: "one"},
        "i": np.datetime64("2024-01-02"),
        "j": np.str_("s"),
    }
    assert to_jsonable(obj) == _old_tracker_plain(obj)


def test_non_finite_floats_become_none():
    assert to_jsonable([math.nan, np.float32("inf"), -math.inf]) == [None, None, None]
