"""The one conversion of results to JSON-safe builtins (used for every JSON file we write)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

import numpy as np

__all__ = ["to_jsonable"]


def to_jsonable(obj: Any) -> Any:
    """``obj`` as builtins that ``json.dumps(allow_nan=False)`` accepts.

    Mappings become dicts with string keys; tuples, lists and arrays become lists; numpy scalars
    become Python scalars; NaN and infinities become None; subclasses of ``str`` (``numpy.str_``,
    string enums) become plain ``str`` of the same value, so YAML's safe dumper accepts them too;
    paths become strings. Anything else that is not a JSON scalar is written as its ``str``.
    """
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [to_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return None if math.isnan(f) or math.isinf(f) else f
    if obj is None:
        return obj
    if isinstance(obj, str):
        return str.__str__(obj)  # the value as an exact str (json.dumps writes the same)
    if isinstance(obj, PurePath):
        return str(obj)
    return str(obj)
