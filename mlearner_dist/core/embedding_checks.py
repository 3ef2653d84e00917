"""Parameter and input checks shared by the embedding modules (effect vectors, t-SNE settings)."""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any

import numpy as np

from mlearner_dist.exceptions import ConfigError, MLearnerError

__all__ = ["check_int", "check_real", "check_vectors"]


def check_int(name: str, value: Any, minimum: int) -> int:
    """``value`` as an int, refusing bools, non-integers and values below ``minimum``.

    Parameters
    ----------
    name : str
        Parameter name for the message.
    value : int
    minimum : int

    Returns
    -------
    int

    Raises
    ------
    ConfigError
    """
    if isinstance(value, bool) or not isinstance(value, Integral) or int(value) < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_real(name: str, value: Any, low: float, high: float = math.inf) -> float:
    """``value`` as a float, refusing bools, non-numbers and values outside ``[low, high]``.

    Parameters
    ----------
    name : str
        Parameter name for the message.
    value : float
    low, high : float
        Closed bounds.

    Returns
    -------
    float

    Raises
    ------
    ConfigError
    """
    if isinstance(value, bool) or not isinstance(value, Real) or not low <= float(value) <= high:
        raise ConfigError(f"{name} must be a number in [{low}, {high}], got {value!r}")
    return float(value)


def check_vectors(V: Any, name: str = "V") -> np.ndarray:
    """Effect vectors as a C-contiguous float64 array of shape (n, d), 1 <= d <= 3.

    A 1-D input is one effect (d = 1).

    Parameters
    ----------
    V : array-like, shape (n,) or (n, d)
    name : str
        Name for the messages.

    Returns
    -------
    ndarray, shape (n, d)

    Raises
    ------
    MLearnerError
        Wrong shape, or rows with NaN or infinite effects (counted in the message).
    """
    arr = np.asarray(V, dtype=np.float64) if not isinstance(V, np.ndarray) else V
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[1] < 1 or arr.shape[1] > 3:
        raise MLearnerError(
            f"{name} must be an (n, d) array of effect vectors with 1 <= d <= 3, got shape "
            f"{arr.shape}: build it with effect_matrix()"
        )
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).any(axis=1).sum())
        raise MLearnerError(
            f"{name} has {bad} row(s) with NaN or infinite effects: drop or impute those units "
            f"before the embedding"
        )
    return arr
