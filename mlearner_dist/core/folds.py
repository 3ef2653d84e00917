"""The one hash of unit ids, and what is built on it: folds, uniform draws, keys, halves.

A unit's fold, its uniform draw, its landmark key and its calibration half depend only on the
string form of its id, the seed and the purpose: not on the row order, the partitioning, the engine
(pandas, Spark or Dask) or the process. :func:`unit_hash` is the only hash of unit ids in the
package, keyed by the purpose and the seed, so different purposes ("fold", "inner", "uniform",
"landmark", "split") give independent values. Golden values are pinned in tests/unit/test_folds.py.

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

__all__ = ["assign_folds", "check_n_folds", "cluster_blocks", "stable_uniform", "unit_hash"]

_TWO_POW_MINUS_53 = 2.0**-53


def _as_array(unit_ids: Iterable[object], name: str = "unit_ids") -> np.ndarray:
    if isinstance(unit_ids, str | bytes):
        raise InputValidationError(
            [f"{name}: got a single string {unit_ids!r}; pass a sequence of unit ids"]
        )
    if isinstance(unit_ids, pd.Series | pd.Index):
        values = unit_ids.to_numpy()
    elif isinstance(unit_ids, np.ndarray):
        values = unit_ids.ravel()
    else:
        values = np.asarray(list(unit_ids), dtype=object)
    if values.dtype.kind in "iub":
        return values
    if pd.isna(pd.Series(values, dtype=object)).any():
        raise InputValidationError(
            [f"{name}: contains missing ids (None/NaN); every unit needs an id before folding"]
        )
    return values


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, Integral):
        raise ConfigError(f"seed={seed!r}: give an integer (the run's random_state)")
    return int(seed)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on uint64 (wrapping arithmetic; a bijection of 64-bit words)."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _hash64(ids: np.ndarray, purpose: str, seed: int) -> np.ndarray:
    """The keyed 64-bit hash of :func:`unit_hash`; shape (n,), uint64."""
    key = hashlib.blake2b(f"mlearner:{purpose}:{seed}".encode(), digest_size=8).hexdigest()
    if ids.dtype.kind in "iub":
        text = ids.astype(str).astype(object)  # vectorised str(id) for numeric ids
    else:
        text = np.empty(ids.size, dtype=object)
        text[:] = [str(v) for v in ids.tolist()]
    return pd.util.hash_array(text, hash_key=key, categorize=False)


def unit_hash(unit_ids: Iterable[object], purpose: str, seed: int) -> np.ndarray:
    """The stable 64-bit hash of every unit id for one purpose and seed.

    ``h(id) = SipHash-2-4_key(str(id))`` (``pandas.util.hash_array``, vectorised: about 0.4 s
    per million integer ids) with ``key`` the 16 hex digits of the 64-bit BLAKE2b digest of
    ``"mlearner:<purpose>:<seed>"``. The string form is hashed, so ``5``, ``np.int64(5)`` and
    ``"5"`` hash alike and ids read as ``long`` by Spark and as ``int64`` by pandas agree.

    Parameters
    ----------
    unit_ids : array-like of shape (n,)
        Unit identifiers (int, str, ...), none missing.
    purpose : str
        What the hash is for; each purpose gives an independent hash.
    seed : int

    Returns
    -------
    ndarray of shape (n,), uint64
    """
    if not isinstance(purpose, str) or not purpose:
        raise ConfigError(f"purpose={purpose!r}: give a non-empty word")
    return _hash64(_as_array(unit_ids), purpose, _check_seed(seed))


def unit_uniform(unit_ids: Iterable[object], purpose: str, seed: int) -> np.ndarray:
    """``floor(unit_hash / 2^11) / 2^53``: a uniform draw in [0, 1) per unit and purpose."""
    h = unit_hash(unit_ids, purpose, seed)
    return (h >> np.uint64(11)).astype(np.float64) * _TWO_POW_MINUS_53


def check_n_folds(n_folds: object) -> int:
    """``n_folds`` as an int, or :class:`ConfigError` unless it is an integer >= 2.

    The one check of the number of cross-fitting folds (effects in memory and on Spark, fold
    assignment).
    """
    if isinstance(n_folds, bool) or not isinstance(n_folds, Integral) or n_folds < 2:
        raise ConfigError(
            f"n_folds={n_folds!r}: cross-fitting needs an integer number of folds >= 2 "
            "(effects.n_folds, typically 5)"
        )
    return int(n_folds)


def assign_folds(
    unit_ids: Iterable[object],
    n_folds: int,
    seed: int,
    *,
    purpose: str = "fold",
    strata: Iterable[int] | None = None,
    clusters: Iterable[object] | None = None,
) -> np.ndarray:
    """Cross-fitting fold of every unit from a stable hash of its id.

    ``fold_i = unit_hash(id_i, purpose, seed) mod n_folds`` (:func:`unit_hash`). The same id
    always gets the same fold, whatever the row order, the partitioning or the engine; folds are
    balanced in expectation (each has probability ``1 / n_folds``).

    With ``strata`` the folds are balanced within each stratum: the units are ordered by
    (stratum, hash) and the unit at position ``p`` of that order gets fold ``p mod n_folds``, so
    every stratum's units are spread over the folds with sizes differing by at most one. The fold
    of a unit then depends on the other units of its stratum (not on the row order).

    With ``clusters`` every cluster is one block: the clusters are ordered by (stratum of the
    cluster, hash of the cluster label) and the cluster at position ``p`` gets fold
    ``p mod n_folds``; every unit gets its cluster's fold, so all units of a cluster are in one
    fold and the folds hold numbers of clusters differing by at most one (per stratum).

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
    strata : array-like of shape (n,) of int, optional
        Stratum code of every unit (:func:`~mlearner_dist.core.strata.stratum_codes`). None
        (default): the plain hash folds.
    clusters : array-like of shape (n,), optional
        Cluster label of every unit (a cluster-randomised trial); with ``strata`` the code of
        a cluster is that of its first unit (constant within clusters).

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
    n_folds = check_n_folds(n_folds)
    seed = _check_seed(seed)
    if not isinstance(purpose, str) or not purpose or purpose == "uniform":
        raise ConfigError(
            f"purpose={purpose!r}: give a non-empty word other than 'uniform' (default 'fold')"
        )
    h = _hash64(_as_array(unit_ids), purpose, seed)
    if clusters is not None:
        return cluster_blocks(h, clusters, strata, purpose, seed, n_folds)
    if strata is None:
        return (h % np.uint64(n_folds)).astype(np.int64)
    codes = np.asarray(list(strata) if not isinstance(strata, np.ndarray) else strata)
    if codes.shape != h.shape:
        raise InputValidationError(
            [f"strata: {codes.shape[0]} stratum codes for {h.shape[0]} unit ids; give one each"]
        )
    order = np.lexsort((h, codes))
    folds = np.empty(len(h), dtype=np.int64)
    folds[order] = np.arange(len(h), dtype=np.int64) % n_folds
    return folds


def cluster_blocks(
    h: np.ndarray,
    clusters: Iterable[object],
    strata: Iterable[int] | None,
    purpose: str,
    seed: int,
    n_blocks: int,
) -> np.ndarray:
    """Block (fold or half) of every unit when clusters are the units of assignment.

    Parameters
    ----------
    h : ndarray of uint64, shape (n,)
        The units' hashes (only their number is used).
    clusters : array-like, shape (n,)
        Cluster label of every unit.
    strata : array-like of int, shape (n,), optional
        Stratum code of every unit, constant within clusters (the first unit's is used).
    purpose : str
        Hash salt of the cluster labels.
    seed : int
    n_blocks : int
        Folds (or 2 for halves).

    Returns
    -------
    ndarray of int64, shape (n,)
        The block of each unit's cluster: clusters ordered by (stratum, hash of the label) get
        blocks ``0, 1, ..., n_blocks - 1, 0, ...`` in turn.
    """
    labels = _as_array(clusters, "clusters")
    if labels.shape != h.shape:
        raise InputValidationError(
            [f"clusters: {labels.shape[0]} cluster labels for {h.shape[0]} unit ids; give one each"]
        )
    codes, uniq = pd.factorize(labels, sort=True)
    if (codes < 0).any():
        raise InputValidationError(["clusters has missing labels: every unit needs its cluster"])
    first = np.full(len(uniq), -1, dtype=np.int64)
    first[codes[::-1]] = np.arange(len(codes))[::-1]
    hc = _hash64(_as_array(np.asarray(uniq)), purpose, seed)
    if strata is None:
        sc = np.zeros(len(uniq), dtype=np.int64)
    else:
        s = np.asarray(list(strata) if not isinstance(strata, np.ndarray) else strata)
        if s.shape != h.shape:
            raise InputValidationError(
                [f"strata: {s.shape[0]} stratum codes for {h.shape[0]} unit ids; give one each"]
            )
        sc = s[first]
    order = np.lexsort((hc, sc))
    block = np.empty(len(uniq), dtype=np.int64)
    block[order] = np.arange(len(uniq), dtype=np.int64) % n_blocks
    return block[codes]


def stable_uniform(unit_ids: Iterable[object], seed: int) -> np.ndarray:
    """A deterministic uniform draw in [0, 1) per unit, from a stable hash of its id.

    ``u_i = floor(unit_hash(id_i, "uniform", seed) / 2^11) / 2^53``: the top 53 bits of the hash,
    so every double in the grid ``k / 2^53`` is equally likely. Used to subsample units in
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
    return unit_uniform(unit_ids, "uniform", seed)
