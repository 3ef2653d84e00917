"""Cluster randomisation: cluster codes, the known assignment probability, re-randomisation.

In a cluster-randomised trial whole clusters (clinics, schools, markets; the column
``Roles.cluster``) are assigned to an arm, every unit of a cluster shares its cluster's
treatment, and the units of a cluster may be correlated. With ``G_1`` of ``G`` clusters treated
completely at random (within each stratum with ``Roles.strata``), every unit has
``P(T = 1) = G_1 / G`` (its stratum's share of treated *clusters*), which is not the share of
treated *units* when cluster sizes differ. A re-randomisation permutes the clusters' treatments
among the clusters (within strata), keeping the number of treated clusters.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from mlearner_dist.core.strata import StratumKey, permute_within_groups, stratum_shares
from mlearner_dist.exceptions import InputValidationError

__all__ = [
    "cluster_codes",
    "cluster_frame",
    "cluster_shares",
    "permute_between_clusters",
]


def cluster_codes(frame: pd.DataFrame, cluster: str) -> np.ndarray:
    """Integer code of every row's cluster (0 .. G - 1, clusters in sorted order).

    Parameters
    ----------
    frame : DataFrame of shape (n, ...)
    cluster : str
        The cluster column (no missing values).

    Returns
    -------
    ndarray of int64, shape (n,)
    """
    if cluster not in frame.columns:
        raise InputValidationError(
            [f"column {cluster!r} (cluster) is not in the frame; check columns.cluster"]
        )
    codes, _ = pd.factorize(frame[cluster], sort=True)
    if (codes < 0).any():
        raise InputValidationError(
            [f"column {cluster!r} (cluster) has missing values: every unit needs its cluster"]
        )
    return codes.astype(np.int64)


def cluster_frame(
    frame: pd.DataFrame, treatment: str, cluster: str, strata: Sequence[str] = ()
) -> pd.DataFrame:
    """One row per cluster (sorted by cluster): its treatment and stratum columns.

    The first unit's values stand for the cluster; validation
    (:func:`mlearner_dist.core.validation.design_problems`) guarantees they are constant.
    """
    cols = [cluster, treatment, *[s for s in strata if s not in (cluster, treatment)]]
    return frame[cols].groupby(cluster, sort=True).first().reset_index()


def cluster_shares(
    frame: pd.DataFrame, treatment: str, cluster: str, strata: Sequence[str] = ()
) -> float | dict[StratumKey, float]:
    """The known P(T = 1) of a cluster-randomised design: the share of treated clusters.

    Parameters
    ----------
    frame : DataFrame of shape (n, ...)
        Units with the treatment (constant within clusters), the cluster and stratum columns.
    treatment, cluster : str
    strata : sequence of str
        With strata, the share of treated clusters of each stratum.

    Returns
    -------
    float or dict of tuple to float
        ``G_1 / G`` without strata; stratum -> ``G_1(s) / G(s)`` with strata (the form of
        :func:`mlearner_dist.core.strata.stratum_shares`).
    """
    by_cluster = cluster_frame(frame, treatment, cluster, strata)
    if strata:
        return stratum_shares(by_cluster, treatment, strata)
    return float(by_cluster[treatment].to_numpy(dtype=float).mean())


def permute_between_clusters(
    t: np.ndarray,
    frame: pd.DataFrame,
    cluster: str,
    strata: Sequence[str],
    rng: np.random.Generator,
) -> np.ndarray:
    """A cluster-level re-randomisation of ``t``: clusters' treatments permuted among clusters.

    Every cluster keeps one arm for all its units, the number of treated clusters is kept
    (within each stratum with ``strata``), and the permutation is uniform over those
    assignments.

    Parameters
    ----------
    t : ndarray of shape (n,)
        Treatment in the row order of ``frame`` (constant within clusters).
    frame : DataFrame of shape (n, ...)
    cluster : str
    strata : sequence of str
    rng : numpy.random.Generator

    Returns
    -------
    ndarray of shape (n,)
    """
    t = np.asarray(t)
    codes = cluster_codes(frame, cluster)
    g = int(codes.max()) + 1
    first = np.full(g, -1, dtype=np.int64)
    first[codes[::-1]] = np.arange(len(codes))[::-1]  # first row of every cluster
    stratum = frame.groupby(list(strata), sort=True).ngroup().to_numpy()[first] if strata else None
    new = permute_within_groups(t[first], stratum, rng)
    return new[codes].astype(t.dtype, copy=False)
