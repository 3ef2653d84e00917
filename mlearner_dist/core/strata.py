"""Randomisation strata (blocks): the per-stratum assignment probability and permutation.

A stratum is one combination of the values of the columns ``Roles.strata``. In a design that is
completely randomised within strata, P(T = 1 | stratum s) = n_1(s) / n(s), the stratum's
treated share, and a re-randomisation permutes the treatment inside each stratum (each stratum
keeps its number treated). Without strata there is one stratum: the whole table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from mlearner_dist.exceptions import InputValidationError

StratumKey = tuple[object, ...]


def _keys(frame: pd.DataFrame, strata: Sequence[str]) -> pd.MultiIndex:
    absent = [c for c in strata if c not in frame.columns]
    if absent:
        raise InputValidationError(
            [f"column {c!r} (stratum) is not in the frame; check columns.strata" for c in absent]
        )
    return pd.MultiIndex.from_frame(frame[list(strata)])


def stratum_shares(
    frame: pd.DataFrame, treatment: str, strata: Sequence[str]
) -> dict[StratumKey, float]:
    """Treated share of each stratum.

    Parameters
    ----------
    frame : DataFrame of shape (n, ...)
        Rows with the treatment (0/1) and the stratum columns, no missing values.
    treatment : str
    strata : sequence of str
        Non-empty.

    Returns
    -------
    dict of tuple to float
        Stratum (the tuple of its column values, in ``strata`` order) -> n_1(s) / n(s).
    """
    t = pd.Series(frame[treatment].to_numpy(dtype=np.float64), index=_keys(frame, strata))
    means = t.groupby(level=list(range(len(strata)))).mean()
    return {(k if isinstance(k, tuple) else (k,)): float(v) for k, v in means.items()}


def assignment_probabilities(
    frame: pd.DataFrame, strata: Sequence[str], shares: Mapping[StratumKey, float]
) -> np.ndarray:
    """The known P(T = 1) of each row: its stratum's share.

    Parameters
    ----------
    frame : DataFrame of shape (n, ...)
        Rows with the stratum columns.
    strata : sequence of str
    shares : mapping of tuple to float
        From :func:`stratum_shares`.

    Returns
    -------
    ndarray of shape (n,)

    Raises
    ------
    InputValidationError
        A row's stratum has no share (a stratum absent where the shares were computed).
    """
    keys = list(_keys(frame, strata))
    unknown = sorted({k for k in keys if k not in shares}, key=repr)
    if unknown:
        raise InputValidationError(
            [
                f"stratum {dict(zip(strata, k, strict=True))} has no assignment probability: "
                "it was absent from the rows the shares were computed on"
                for k in unknown[:5]
            ]
        )
    return np.array([shares[k] for k in keys], dtype=np.float64)


def stratum_codes(frame: pd.DataFrame, strata: Sequence[str]) -> np.ndarray:
    """Integer code of every row's stratum (0 .. n_strata - 1, strata in sorted order).

    Parameters
    ----------
    frame : DataFrame of shape (n, ...)
    strata : sequence of str
        Non-empty; the columns must hold no missing values.

    Returns
    -------
    ndarray of shape (n,), int64
    """
    _keys(frame, strata)
    return frame.groupby(list(strata), sort=True).ngroup().to_numpy(dtype=np.int64)


def permute_within_strata(
    t: np.ndarray,
    frame: pd.DataFrame,
    strata: Sequence[str],
    rng: np.random.Generator,
) -> np.ndarray:
    """A uniformly random re-randomisation of ``t`` within strata.

    Each stratum's values of ``t`` are permuted among its own rows, so each stratum keeps its
    number treated; without strata this is ``rng.permutation(t)`` (the same draw).

    Parameters
    ----------
    t : ndarray of shape (n,)
        Treatment in the row order of ``frame``.
    frame : DataFrame of shape (n, ...)
    strata : sequence of str
    rng : numpy.random.Generator

    Returns
    -------
    ndarray of shape (n,)
    """
    t = np.asarray(t)
    return permute_within_groups(t, stratum_codes(frame, strata) if strata else None, rng)


def permute_within_groups(
    t: np.ndarray, group: np.ndarray | None, rng: np.random.Generator
) -> np.ndarray:
    """``t`` permuted among the entries of each group (None: one group, ``rng.permutation(t)``).

    Groups are visited in sorted order, one ``rng.permutation`` each, so a given ``rng`` state
    gives one assignment.
    """
    if group is None:
        return rng.permutation(t)
    out = t.copy()
    for g in np.unique(group):
        idx = np.flatnonzero(group == g)
        out[idx] = t[rng.permutation(idx)]
    return out


__all__ = [
    "assignment_probabilities",
    "permute_within_groups",
    "permute_within_strata",
    "stratum_codes",
    "stratum_shares",
]
