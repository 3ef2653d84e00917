"""Cross-fitting folds and deterministic subsampling from a stable hash of the unit id.

A unit's fold and its uniform draw depend only on the string form of its id and on the seed: not on
the row order, the partitioning, the engine (pandas or Spark) or the process. The hash is BLAKE2b
(64-bit digest) keyed by the seed and by the purpose ("fold" or "uniform"), so the two are
independent of each other.

Examples
--------
>>> assign_folds([10, 11, 12], n_folds=5, seed=0).shape
(3,)
>>> u = stable_uniform(["a", "b"], seed=1)
>>> bool(((u >= 0) & (u < 1)).all())
True
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from numbers import Integral

import numpy as np
import pandas as pd

from mlearner_dist.exceptions import ConfigError, InputValidationError

__all__ = ["assign_folds", "stable_uniform"]

_TWO_POW_MINUS_53 = 2.0**-53


def _as_list(unit_ids: Iterable[object], name: str = "unit_ids") -> list[object]:
    if isinstance(unit_ids, pd.Series | pd.Index):
        values = unit_ids.tolist()
    elif isinstance(unit_ids, np.ndarray):
        values = unit_ids.ravel().tolist()
    elif isinstance(unit_ids, str | bytes):
        raise InputValidationError(
            [f"{name}: got a single string {unit_ids!r}; pass a sequence of unit ids"]
        )
    else:
        values = list(unit_ids)
    if any(v is None or (isinstance(v, float) and np.isnan(v)) for v in values):
        raise InputValidationError(
            [f"{name}: contains missing ids (None/NaN); every unit needs an id before folding"]
        )
    return values


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, Integral):
        raise ConfigError(f"seed={seed!r}: give an integer (the run's random_state)")
    return int(seed)


def _hash64(values: list[object], purpose: str, seed: int) -> np.ndarray:
    """BLAKE2b 64-bit digests of ``str(id)``, keyed by purpose and seed; shape (n,), uint64."""
    key = f"mlearner:{purpose}:{seed}".encode()
    out = np.fromiter(
        (
            int.from_bytes(
                hashlib.blake2b(str(v).encode(), digest_size=8, key=key).digest(), "little"
            )
            for v in values
        ),
        dtype=np.uint64,
        count=len(values),
    )
    return out


def assign_folds(
    unit_ids: Iterable[object], n_folds: int, seed: int, *, purpose: str = "fold"
) -> np.ndarray:
    """Cross-fitting fold of every unit from a stable hash of its id.

    ``fold_i = h_seed(str(id_i)) mod n_folds`` with ``h_seed`` the 64-bit BLAKE2b digest keyed by
    the seed and the purpose. The same id always gets the same fold, whatever the row order, the
    partitioning or the engine; folds are balanced in expectation (each has probability
    ``1 / n_folds``).

    Parameters
    ----------
    unit_ids : array-like of shape (n,)
        Unit identifiers (int, str, ...); only their string form matters.
    n_folds : int
        Number of folds, at least 2.
    seed : int
        Salt of the hash; a different seed gives an independent assignment.
    purpose : str
        Second salt: ``"fold"`` (default) for the outer cross-fitting folds; another word (the
        nuisance models use ``"inner"``) gives a split independent of the outer folds.

    Returns
    -------
    ndarray of shape (n,), int64
        Fold labels in ``0 .. n_folds - 1``.

    Raises
    ------
    ConfigError
        If ``n_folds`` is not an integer >= 2 or ``seed`` is not an integer.
    InputValidationError
        If an id is missing.
    """
    if isinstance(n_folds, bool) or not isinstance(n_folds, Integral) or n_folds < 2:
        raise ConfigError(
            f"n_folds={n_folds!r}: cross-fitting needs an integer number of folds >= 2 "
            "(effects.n_folds, typically 5)"
        )
    seed = _check_seed(seed)
    if not isinstance(purpose, str) or not purpose or purpose == "uniform":
        raise ConfigError(
            f"purpose={purpose!r}: give a non-empty word other than 'uniform' (default 'fold')"
        )
    values = _as_list(unit_ids)
    h = _hash64(values, purpose, seed)
    return (h % np.uint64(n_folds)).astype(np.int64)


def stable_uniform(unit_ids: Iterable[object], seed: int) -> np.ndarray:
    """A deterministic uniform draw in [0, 1) per unit, from a stable hash of its id.

    ``u_i = floor(h_seed(str(id_i)) / 2^11) / 2^53``: the top 53 bits of the keyed 64-bit BLAKE2b
    digest, so every double in the grid ``k / 2^53`` is equally likely. Used to subsample units in
    a way that does not depend on row order or partitioning (keep the units with the smallest
    ``u``); independent of :func:`assign_folds` for the same seed.

    Parameters
    ----------
    unit_ids : array-like of shape (n,)
        Unit identifiers; only their string form matters.
    seed : int
        Salt of the hash.

    Returns
    -------
    ndarray of shape (n,), float64
        Values in [0, 1).
    """
    seed = _check_seed(seed)
    values = _as_list(unit_ids)
    h = _hash64(values, "uniform", seed)
    return (h >> np.uint64(11)).astype(np.float64) * _TWO_POW_MINUS_53
