"""Parameter and input checks shared by the embedding modules (effect vectors, t-SNE settings).

:func:`check_embedding_settings` is the one check of every embedding setting (its rule in
:data:`SETTING_RULES`); :func:`~mlearner_dist.core.embedding.embed`,
:func:`~mlearner_dist.core.tsne.embed_exact`, :class:`~mlearner_dist.core.landmark_embedding.
LandmarkEmbedding` and :func:`~mlearner_dist.backends.dask_embedding.dask_embed` call it with the
settings they take, before any work.
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any

import numpy as np

from mlearner_dist.core.distances import distance_power
from mlearner_dist.exceptions import ConfigError, MLearnerError

__all__ = [
    "INITIALIZATIONS",
    "SETTING_RULES",
    "TSNE_SETTINGS",
    "check_embedding_settings",
    "check_int",
    "check_real",
    "check_vectors",
]

#: t-SNE initialisations: ``random`` (N(0, 1e-4), as Rtsne) or openTSNE's ``spectral``.
INITIALIZATIONS = ("random", "spectral")

#: The settings of one t-SNE run (exact path and landmark embedding alike).
TSNE_SETTINGS = (
    "perplexity",
    "n_iter",
    "kernel_power",
    "random_state",
    "n_jobs",
    "theta",
    "initialization",
)


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


def _check_n_jobs(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or int(value) < 1:
        raise ConfigError(
            f"{name} must be an explicit positive integer, got {value!r} (openTSNE's -1 counts "
            f"the host's cores, not the container's)"
        )
    return int(value)


def _check_initialization(name: str, value: Any) -> str:
    if value not in INITIALIZATIONS:
        raise ConfigError(f"{name} must be one of {INITIALIZATIONS}, got {value!r}")
    return str(value)


def _check_kernel_power(name: str, value: Any) -> int:
    distance_power(value)
    return int(value)


def _int_at_least(minimum: int) -> Any:
    return lambda name, value: check_int(name, value, minimum)


def _real_in(low: float, high: float = math.inf) -> Any:
    return lambda name, value: check_real(name, value, low, high)


#: The rule of every embedding setting: ``rule(name, value) -> checked value``.
SETTING_RULES: dict[str, Any] = {
    "exact_max_n": _int_at_least(4),
    "n_landmarks": _int_at_least(5),
    "grid_size": _int_at_least(10),
    "perplexity": _real_in(1.0),
    "n_iter": _int_at_least(1),
    "kernel_power": _check_kernel_power,
    "random_state": _int_at_least(0),
    "n_jobs": _check_n_jobs,
    "theta": _real_in(0.0, 1.0),
    "initialization": _check_initialization,
    "n_bins": _int_at_least(1),
    "tail_fraction": _real_in(0.0, 0.9),
    "reference_size": _int_at_least(10),
    "block_size": _int_at_least(1),
}


def check_embedding_settings(**settings: Any) -> dict[str, Any]:
    """Check embedding settings by their rules in :data:`SETTING_RULES`, all at once.

    Parameters
    ----------
    **settings
        Any of ``exact_max_n`` (int >= 4), ``n_landmarks`` (>= 5), ``grid_size`` (>= 10),
        ``perplexity`` (>= 1), ``n_iter`` (>= 1), ``kernel_power`` ({2, 4}), ``random_state``
        (>= 0), ``n_jobs`` (explicit, >= 1), ``theta`` ([0, 1]), ``initialization``
        (:data:`INITIALIZATIONS`), ``n_bins`` (>= 1), ``tail_fraction`` ([0, 0.9]),
        ``reference_size`` (>= 10), ``block_size`` (>= 1).

    Returns
    -------
    dict
        The same keys, values as int, float or str.

    Raises
    ------
    ConfigError
        Every bad setting named in one message; an unknown name is a programming error
        (``TypeError``).

    Examples
    --------
    >>> check_embedding_settings(perplexity=30, n_iter=750)
    {'perplexity': 30.0, 'n_iter': 750}
    """
    unknown = sorted(set(settings) - set(SETTING_RULES))
    if unknown:
        raise TypeError(f"unknown embedding setting(s) {unknown}; known: {sorted(SETTING_RULES)}")
    out: dict[str, Any] = {}
    problems: list[str] = []
    for name, value in settings.items():
        try:
            out[name] = SETTING_RULES[name](name, value)
        except ConfigError as exc:
            problems.append(str(exc))
    if problems:
        raise ConfigError("; ".join(problems))
    return out
