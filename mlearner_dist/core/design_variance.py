"""Design-based variances of (leaf) means of scores: analysis weights and cluster randomisation.

Every standard error and every Wald test of the package's doubly robust scores is a statement
about weighted means of scores over groups of units (the whole sample, a subgroup, the leaves
of a partition). This module is the one place where their variance follows the design:
independent units (the default), units with analysis weights ``w_i > 0`` (sampling weights for a
population estimand), and units in clusters ``c = 1..G`` that were randomised as wholes (all
units of a cluster share the treatment and their scores may be correlated).

The math
--------
For leaves ``l = 1..L`` with units ``i in l``, weights ``w_i`` (1 without weights) and scores
``s_i``:

* leaf means ``m_l = sum_{i in l} w_i s_i / W_l``, ``W_l = sum_{i in l} w_i``, residuals
  ``e_i = s_i - m_{l(i)}``;
* the cluster score of leaf ``l`` in cluster ``c`` is ``u_{cl} = sum_{i in c, i in l} w_i e_i``
  (without clusters every unit is its own cluster: ``u_{il} = w_i e_i`` for ``l = l(i)``);
* the covariance of the leaf means is the sandwich

      V_{lk} = f * sum_c u_{cl} u_{ck} / (W_l W_k),

  with the finite-sample factor ``f`` = 1 (``HC0``; with clusters ``CR0``) or
  ``f = N / (N - L)`` (``HC1``, no clusters) or ``f = G / (G - 1) * (N - 1) / (N - L)``
  (``HC1`` with clusters, ``CR1``), ``N`` the units and ``G`` the clusters present.

  Without clusters ``V`` is diagonal, ``V_ll = f sum_{i in l} w_i^2 e_i^2 / W_l^2``; with equal
  weights this is the heteroskedasticity-robust variance of
  :mod:`mlearner_dist.core.score_test`. A cluster that holds units of several leaves makes the
  leaf means correlated (off-diagonal ``V_lk``).

``m`` and ``V`` are exactly the coefficients and the covariance of the weighted least squares
regression ``s ~ 0 + C(leaf)`` with weights ``w`` and statsmodels' ``cov_type="HC0"``/``"HC1"``
(no clusters) or ``cov_type="cluster"`` (``use_correction=False`` for CR0, the default for CR1);
the unit tests check both against statsmodels. A single mean (``L = 1``) gives the standard error
of an average effect: ``f = N / (N - 1)`` makes it ``sd(s) / sqrt(N)`` (ddof 1) with equal weights
and no clusters, and ``G / (G - 1) sum_c u_c^2 / W^2`` with clusters. Intervals for a mean use
the normal quantile, or with clusters Student's t with ``G - 1`` degrees of freedom
(:func:`interval_quantile`).

The Wald test of equal leaf means is ``W = (R m)' (R V R')^+ (R m)`` for the contrasts
``R = [I_{L-1}, -1]``, against chi-square with ``rank(R V R')`` degrees of freedom (``L - 1``
unless there are fewer clusters than leaves); with a diagonal ``V`` it is the precision-weighted
spread of :mod:`mlearner_dist.core.score_test`.

Aggregates. With clusters, ``m`` and ``V`` depend on the data only through the per-(leaf,
cluster) sums ``n_{cl}``, ``W_{cl} = sum w_i`` and ``S_{cl} = sum w_i s_i``
(``u_{cl} = S_{cl} - m_l W_{cl}``): :func:`cluster_sums` computes them on a part of the data,
:func:`combine_cluster_sums` adds parts (a cluster split across partitions adds up), and
:func:`leaf_covariance_from_sums` gives ``m`` and ``V``. The table has one row per (leaf,
cluster) pair, so it is an aggregate only when clusters are larger than a few units.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from mlearner_dist.exceptions import InputValidationError, MLearnerError

__all__ = [
    "CLUSTER_SUM_COLUMNS",
    "DESIGN_COLUMNS",
    "Design",
    "cluster_sums",
    "combine_cluster_sums",
    "design_of",
    "design_pvalue",
    "design_wald_test",
    "interval_quantile",
    "leaf_covariance_from_sums",
    "leaf_mean_covariance",
    "mean_covariance",
    "wald_equal_means",
]

#: Columns of the effects table that carry the design (present only when it is not the default).
DESIGN_COLUMNS = ("design_cluster", "design_weight")
CLUSTER_SUM_COLUMNS = ("leaf", "cluster", "n", "w", "ws")
COVARIANCES = ("HC0", "HC1")


@dataclass(frozen=True)
class Design:
    """How the units were sampled and randomised, row-aligned with the scores.

    Attributes
    ----------
    cluster : ndarray of int, shape (n,), or None
        Cluster code of every unit (units of a cluster were randomised together); None:
        independent units.
    weight : ndarray of float, shape (n,), or None
        Analysis (sampling) weight of every unit, positive and finite; None: equal weights.
    """

    cluster: np.ndarray | None = None
    weight: np.ndarray | None = None

    def __post_init__(self) -> None:
        problems = []
        if self.cluster is not None:
            c = np.asarray(self.cluster)
            if c.ndim != 1 or not np.issubdtype(c.dtype, np.integer):
                problems.append("design cluster: give one integer cluster code per unit")
            object.__setattr__(self, "cluster", c)
        if self.weight is not None:
            w = np.asarray(self.weight, dtype=float)
            if w.ndim != 1 or not (np.isfinite(w).all() and (w > 0).all()):
                problems.append("design weight: give one positive finite weight per unit")
            object.__setattr__(self, "weight", w)
        if (
            self.cluster is not None
            and self.weight is not None
            and self.cluster.shape != self.weight.shape
        ):
            problems.append("design cluster and weight have different lengths: row-align them")
        if problems:
            raise InputValidationError(problems)

    @property
    def is_default(self) -> bool:
        """True when neither clusters nor weights are given (independent, equal units)."""
        return self.cluster is None and self.weight is None

    def take(self, index: np.ndarray) -> Design:
        """The design of a subset of the units (a boolean mask or integer positions)."""
        return Design(
            cluster=None if self.cluster is None else self.cluster[index],
            weight=None if self.weight is None else self.weight[index],
        )

    def check_length(self, n: int, what: str = "scores") -> None:
        """Raise when the design is not row-aligned with ``n`` values of ``what``."""
        for name, arr in (("cluster", self.cluster), ("weight", self.weight)):
            if arr is not None and arr.shape[0] != n:
                raise InputValidationError(
                    [f"design {name} has {arr.shape[0]} entries for {n} {what}: row-align them"]
                )


def design_of(effects: pd.DataFrame) -> Design | None:
    """The design carried by an effects table (its ``design_cluster``/``design_weight`` columns).

    Parameters
    ----------
    effects : DataFrame
        The effects table (:func:`mlearner_dist.core.effects.cross_fit_effects` adds the design
        columns when ``columns.cluster`` or ``columns.weight`` is set).

    Returns
    -------
    Design or None
        None when the table has neither column (the default design: every result is the one of
        independent, equally weighted units, computed by the unchanged unit formulas).
    """
    cluster = weight = None
    if "design_cluster" in effects.columns:
        cluster = effects["design_cluster"].to_numpy(dtype=np.int64)
    if "design_weight" in effects.columns:
        weight = effects["design_weight"].to_numpy(dtype=float)
    if cluster is None and weight is None:
        return None
    return Design(cluster=cluster, weight=weight)


def _factor(covariance: str, n: int, n_params: int, n_clusters: int | None) -> float:
    if covariance not in COVARIANCES:
        raise MLearnerError(f"covariance={covariance!r}: choose one of {list(COVARIANCES)}")
    if covariance == "HC0":
        return 1.0
    if n <= n_params:
        return math.nan
    if n_clusters is None:
        return n / (n - n_params)
    if n_clusters < 2:
        return math.nan
    return n_clusters / (n_clusters - 1.0) * (n - 1.0) / (n - n_params)


def mean_covariance(
    values: np.ndarray, design: Design | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted means of one or several scores over the same units and their covariance.

    Parameters
    ----------
    values : ndarray, shape (n,) or (n, k)
        Scores of ``n`` units (``k`` scores each, e.g. indirect and total).
    design : Design, optional
        Clusters and weights of the units (default: independent, equal weights).

    Returns
    -------
    mean : ndarray, shape (k,)
    cov : ndarray, shape (k, k)
        ``f * sum_c u_c u_c' / W^2`` with ``u_c = sum_{i in c} w_i (s_i - m)`` and the HC1/CR1
        factor ``f`` of one parameter (module docstring): ``n / (n - 1)`` without clusters
        (``np.cov(ddof=1) / n`` with equal weights), ``G / (G - 1)`` with ``G`` clusters. NaN
        with fewer than two units (two clusters).
    """
    s = np.asarray(values, dtype=float)
    s = s[:, None] if s.ndim == 1 else s
    n, k = s.shape
    design = design or Design()
    design.check_length(n)
    w = np.ones(n) if design.weight is None else design.weight
    total = float(w.sum()) if n else math.nan
    mean = (w[:, None] * s).sum(axis=0) / total if n else np.full(k, math.nan)
    u = w[:, None] * (s - mean)
    if design.cluster is None:
        g = None
    else:
        codes, inv = np.unique(design.cluster, return_inverse=True)
        g = len(codes)
        summed = np.zeros((g, k))
        np.add.at(summed, inv, u)
        u = summed
    f = _factor("HC1", n, 1, g)
    cov = f * (u.T @ u) / (total * total) if n else np.full((k, k), math.nan)
    return mean, cov


def interval_quantile(level: float, design: Design | None = None) -> float:
    """Critical value of a two-sided interval at ``level`` for a mean under the design.

    Without clusters the normal quantile ``z_{(1+level)/2}``; with ``G`` clusters the quantile of
    Student's t with ``G - 1`` degrees of freedom (the usual small-cluster-count reference
    distribution of a cluster-robust t statistic; Cameron and Miller 2015), which tends to the
    normal one as ``G`` grows.

    Parameters
    ----------
    level : float in (0, 1)
    design : Design, optional
        The design of the units the mean is taken over.

    Returns
    -------
    float
        NaN with fewer than two clusters.
    """
    q = 0.5 + float(level) / 2.0
    if design is None or design.cluster is None:
        return float(stats.norm.ppf(q))
    g = int(np.unique(design.cluster).size)
    return float(stats.t.ppf(q, g - 1)) if g >= 2 else math.nan


def cluster_sums(
    score: np.ndarray, leaf: np.ndarray, cluster: np.ndarray, weight: np.ndarray | None = None
) -> pd.DataFrame:
    """Per-(leaf, cluster) count, sum of weights and weighted sum of one score.

    Parameters
    ----------
    score, leaf, cluster : ndarray, shape (n,)
    weight : ndarray, shape (n,), optional

    Returns
    -------
    DataFrame
        Columns ``leaf``, ``cluster``, ``n``, ``w``, ``ws`` (:data:`CLUSTER_SUM_COLUMNS`), one row
        per (leaf, cluster) pair present, sorted.
    """
    s = np.asarray(score, dtype=float).ravel()
    w = np.ones_like(s) if weight is None else np.asarray(weight, dtype=float).ravel()
    df = pd.DataFrame(
        {"leaf": np.asarray(leaf).ravel(), "cluster": np.asarray(cluster).ravel(), "w": w}
    )
    df["ws"] = w * s
    df["n"] = 1
    out = df.groupby(["leaf", "cluster"], sort=True)[["n", "w", "ws"]].sum().reset_index()
    out["n"] = out["n"].astype(np.int64)
    return out[list(CLUSTER_SUM_COLUMNS)]


def combine_cluster_sums(parts: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Add the :func:`cluster_sums` of disjoint parts of the data (a cluster may span parts)."""
    parts = [p for p in parts if p is not None and len(p)]
    if not parts:
        raise MLearnerError("combine_cluster_sums needs at least one non-empty table")
    for p in parts:
        missing = [c for c in CLUSTER_SUM_COLUMNS if c not in p.columns]
        if missing:
            raise InputValidationError(
                [f"cluster sum table lacks column(s) {missing}: build it with cluster_sums"]
            )
    out = pd.concat(parts, ignore_index=True)
    out = out.groupby(["leaf", "cluster"], sort=True)[["n", "w", "ws"]].sum().reset_index()
    out["n"] = out["n"].astype(np.int64)
    return out[list(CLUSTER_SUM_COLUMNS)]


def leaf_covariance_from_sums(
    sums: pd.DataFrame, *, covariance: str = "HC1"
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Leaf means and their cluster-robust covariance from per-(leaf, cluster) sums.

    Parameters
    ----------
    sums : DataFrame
        :func:`cluster_sums` (or :func:`combine_cluster_sums`) output.
    covariance : {"HC1", "HC0"}
        CR1 (statsmodels' default cluster correction) or CR0 (no correction).

    Returns
    -------
    leaves : ndarray, shape (L,)
    means : ndarray, shape (L,)
    cov : ndarray, shape (L, L)
    counts : ndarray of int, shape (L,)
    """
    lf_codes, leaves = pd.factorize(sums["leaf"], sort=True)
    cl_codes, clusters = pd.factorize(sums["cluster"], sort=True)
    n_l, g = len(leaves), len(clusters)
    w_cl = np.zeros((g, n_l))
    s_cl = np.zeros((g, n_l))
    w_cl[cl_codes, lf_codes] = sums["w"].to_numpy(dtype=float)
    s_cl[cl_codes, lf_codes] = sums["ws"].to_numpy(dtype=float)
    counts = np.bincount(lf_codes, weights=sums["n"].to_numpy(dtype=float), minlength=n_l)
    big_w = w_cl.sum(axis=0)
    means = s_cl.sum(axis=0) / big_w
    u = s_cl - w_cl * means
    f = _factor(covariance, int(counts.sum()), n_l, g)
    cov = f * (u.T @ u) / np.outer(big_w, big_w)
    return np.asarray(leaves), means, cov, counts.astype(np.int64)


def leaf_mean_covariance(
    score: np.ndarray,
    leaf: np.ndarray,
    design: Design | None = None,
    *,
    covariance: str = "HC1",
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Leaf means of one score and their design-based covariance (module docstring).

    Parameters
    ----------
    score, leaf : ndarray, shape (n,)
    design : Design, optional
    covariance : {"HC1", "HC0"}

    Returns
    -------
    leaves : ndarray, shape (L,)
        Sorted leaf ids.
    means : ndarray, shape (L,)
    cov : ndarray, shape (L, L)
        Diagonal without clusters.
    counts : ndarray of int, shape (L,)
    """
    s = np.asarray(score, dtype=float).ravel()
    lf = np.asarray(leaf).ravel()
    design = design or Design()
    design.check_length(s.shape[0])
    if lf.shape != s.shape:
        raise InputValidationError(
            [f"leaf has {lf.shape[0]} entries for {s.shape[0]} scores: one per unit"]
        )
    if design.cluster is not None:
        sums = cluster_sums(s, lf, design.cluster, design.weight)
        return leaf_covariance_from_sums(sums, covariance=covariance)
    codes, leaves = pd.factorize(lf, sort=True)
    w = np.ones_like(s) if design.weight is None else design.weight
    n_l = len(leaves)
    big_w = np.bincount(codes, weights=w, minlength=n_l)
    means = np.bincount(codes, weights=w * s, minlength=n_l) / big_w
    e = w * (s - means[codes])
    f = _factor(covariance, s.shape[0], n_l, None)
    var = f * np.bincount(codes, weights=e * e, minlength=n_l) / big_w**2
    counts = np.bincount(codes, minlength=n_l).astype(np.int64)
    return np.asarray(leaves), means, np.diag(var), counts


def wald_equal_means(means: np.ndarray, cov: np.ndarray) -> tuple[float, int]:
    """Wald statistic of ``H0: m_1 = ... = m_L`` with a full covariance, and its df.

    ``W = (R m)' (R V R')^+ (R m)`` with ``R = [I_{L-1}, -1]``; ``df = rank(R V R')``. A contrast
    outside the range of ``R V R'`` (a difference between means that are known exactly, e.g. two
    zero-variance leaves) gives ``W = inf``.

    Parameters
    ----------
    means : ndarray, shape (L,)
    cov : ndarray, shape (L, L)

    Returns
    -------
    statistic : float
    df : int
        0 when ``L < 2``.
    """
    m = np.asarray(means, dtype=float)
    v = np.asarray(cov, dtype=float)
    n_l = m.shape[0]
    if n_l < 2:
        return 0.0, 0
    if not (np.isfinite(m).all() and np.isfinite(v).all()):
        return math.nan, n_l - 1
    r = np.hstack([np.eye(n_l - 1), -np.ones((n_l - 1, 1))])
    d = r @ m
    s = r @ v @ r.T
    vals, vecs = np.linalg.eigh((s + s.T) / 2.0)
    tol = max(vals.max(initial=0.0), 0.0) * n_l * 1e-12
    keep = vals > tol
    rank = int(keep.sum())
    proj = vecs.T @ d
    scale = max(1.0, float(np.abs(m).max()))
    if np.any(np.abs(proj[~keep]) > 1e-9 * scale):
        return math.inf, max(rank, 1)
    stat = float(np.sum(proj[keep] ** 2 / vals[keep]))
    return stat, rank


def design_wald_test(
    score: np.ndarray,
    leaf: np.ndarray,
    design: Design | None = None,
    *,
    covariance: str = "HC1",
) -> tuple[np.ndarray, float]:
    """Leaf means and the p-value of the Wald test of their equality under the design.

    Parameters
    ----------
    score, leaf : ndarray, shape (n,)
    design : Design, optional
    covariance : {"HC1", "HC0"}

    Returns
    -------
    means : ndarray, shape (L,)
        Weighted leaf means, leaves in sorted order.
    pvalue : float
        ``P(chi2_df > W)``; 1.0 with one leaf or without a variance estimate (fewer than two
        clusters), 0.0 when ``W = inf``.
    """
    _, means, cov, _ = leaf_mean_covariance(score, leaf, design, covariance=covariance)
    stat, df = wald_equal_means(means, cov)
    if df == 0 or math.isnan(stat):
        return means, 1.0  # one leaf, or no variance estimate (fewer than two clusters)
    if math.isinf(stat):
        return means, 0.0
    return means, float(stats.chi2.sf(stat, df))


def design_pvalue(
    score: np.ndarray,
    leaf: np.ndarray,
    design: Design | None = None,
    *,
    covariance: str = "HC1",
) -> float:
    """p-value of the Wald test of equal leaf means under the design (:func:`design_wald_test`).

    Parameters
    ----------
    score, leaf : ndarray, shape (n,)
    design : Design, optional
    covariance : {"HC1", "HC0"}

    Returns
    -------
    float
    """
    return design_wald_test(score, leaf, design, covariance=covariance)[1]
