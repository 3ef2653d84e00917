"""Heterogeneity test on the cross-fitted doubly robust scores, from per-leaf aggregates.

For every unit ``i`` the effects table holds cross-fitted efficient-influence-function (doubly
robust) scores ``s_i`` of the indirect, direct and total effects
(:func:`mlearner_dist.core.effects.compute_effects`): ``E[s_i | X_i] = tau(X_i)`` up to a
second-order error of the nuisance fits, so the mean of ``s`` over a leaf estimates the leaf's
average effect whatever the treatment assignment (a propensity model absorbs confounding). A
partition of the covariate space into leaves ``l = 1..L`` with ``n_l`` units shows heterogeneity
of the effect when the leaf means differ. The test, for one score:

* leaf means ``m_l = sum_{i in l} s_i / n_l`` and their heteroskedasticity-robust variances
  ``v_l = c * sum_{i in l} (s_i - m_l)^2 / n_l^2`` with ``c = 1`` (HC0) or
  ``c = N / (N - L)`` (HC1, the default; ``N = sum n_l``);
* the leaf means are independent (disjoint units), so the Wald statistic of
  ``H0: m_1 = ... = m_L`` is the precision-weighted spread around the precision-weighted mean,

      W = sum_l w_l (m_l - m_w)^2,   w_l = 1 / v_l,   m_w = sum_l w_l m_l / sum_l w_l,

  which is algebraically ``(R b)' (R V R')^{-1} (R b)`` for the cell-means regression
  ``s ~ 0 + C(leaf)`` (``b = (m_l)``, ``V = diag(v_l)``, the HC0/HC1 sandwich) with any
  contrast matrix ``R`` of rank ``L - 1``; equivalently the joint Wald test that every leaf
  coefficient except the intercept is zero in ``s ~ C(leaf)``;
* ``p = P(chi2_{L-1} > W)``.

With clusters or analysis weights (``design=``) the leaf means are weighted and their covariance
is cluster-robust (:mod:`mlearner_dist.core.design_variance`, the one implementation of those
variances): ``W = (R m)' (R V R')^+ (R m)`` with the full covariance ``V`` (units of one cluster
in several leaves correlate their means); from aggregates that needs per-(leaf, cluster) sums
(:func:`score_test_from_cluster_sums`).

Without a design the statistic depends on the data only through each leaf's count, sum and sum of
squares (or mean and centred sum of squares): Spark or Dask compute :func:`score_aggregates` per
partition, :func:`combine_score_aggregates` merges them, and the driver calls
:func:`score_test_from_aggregates` on a table of ``L`` rows per score.

Leaves with fewer than ``min_leaf_n`` (default 2) units have no variance estimate and are left
out with a :class:`~mlearner_dist.exceptions.SmallSubgroupWarning`. A leaf whose scores are all
equal has ``v_l = 0`` and an exactly known mean: ``W`` is the limit ``v_l -> 0``, i.e. ``m_w``
is that mean; two such leaves with different means give ``W = inf`` and ``p = 0``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from mlearner_dist.core.design_variance import (
    Design,
    design_pvalue,
    leaf_covariance_from_sums,
    wald_equal_means,
)
from mlearner_dist.core.moments import cell_mean_m2, merge_moment_rows
from mlearner_dist.exceptions import InputValidationError, MLearnerError, SmallSubgroupWarning

SCORE_NAMES = ("indirect", "direct", "total")
COVARIANCES = ("HC0", "HC1")
SCORE_AGG_COLUMNS = ("score", "leaf", "n", "sum", "sumsq", "mean", "m2")


@dataclass(frozen=True)
class ScoreTestResult:
    """Result of the Wald test of equal leaf means of one score.

    Attributes
    ----------
    score : str
        Which score (``indirect``, ``direct``, ``total`` or a user name).
    statistic : float
        ``W`` (``inf`` when a zero-variance leaf differs from another leaf).
    df : int
        ``L - 1`` over the tested leaves (0 when fewer than two leaves are testable).
    pvalue : float
        ``P(chi2_df > W)``; 1.0 when ``df = 0``.
    n_leaves : int
        Leaves tested (with at least ``min_leaf_n`` units).
    n_units : int
        Units in the tested leaves.
    covariance : str
        ``HC0`` or ``HC1``.
    leaf_means : dict
        Leaf id -> mean score over the tested leaves.
    leaf_se : dict
        Leaf id -> robust standard error ``sqrt(v_l)``.
    """

    score: str
    statistic: float
    df: int
    pvalue: float
    n_leaves: int
    n_units: int
    covariance: str
    leaf_means: dict[Any, float]
    leaf_se: dict[Any, float]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (leaf ids as strings when they are not plain integers)."""

        def key(k: Any) -> Any:
            return int(k) if isinstance(k, (int, np.integer)) else str(k)

        return {
            "score": self.score,
            "statistic": float(self.statistic) if math.isfinite(self.statistic) else None,
            "df": int(self.df),
            "pvalue": float(self.pvalue),
            "n_leaves": int(self.n_leaves),
            "n_units": int(self.n_units),
            "covariance": self.covariance,
            "leaf_means": {key(k): float(v) for k, v in self.leaf_means.items()},
            "leaf_se": {key(k): float(v) for k, v in self.leaf_se.items()},
        }


def score_aggregates(scores: Any, leaf: Any) -> pd.DataFrame:
    """Per-leaf count, sum, sum of squares, mean and centred sum of squares of each score.

    Parameters
    ----------
    scores : DataFrame, mapping of name -> array-like, or array-like of shape (n,)
        One column per score (e.g. ``{"indirect": s_ind, "total": s_tot}``). A DataFrame with
        the effects table's columns ``score_indirect``, ``score_direct``, ``score_total`` is
        accepted as is (the ``score_`` prefix is dropped; all-NaN columns, e.g. the indirect
        score without a mediator, are skipped). A single array is named ``"score"``.
    leaf : array-like, shape (n,)
        Leaf id of every unit.

    Returns
    -------
    DataFrame, shape (n_scores * L, 7)
        Columns ``score``, ``leaf``, ``n``, ``sum``, ``sumsq``, ``mean``, ``m2`` (two-pass
        centred sum of squares), sorted by score then leaf.

    Raises
    ------
    InputValidationError
        Length mismatch, missing leaf ids, non-finite scores (naming the score).
    """
    named = _named_scores(scores)
    lf = np.asarray(leaf).ravel()
    problems = []
    for name, s in named.items():
        if s.shape != lf.shape:
            problems.append(
                f"score {name!r} has {s.shape[0]} values but leaf has {lf.shape[0]}: they must "
                "be row-aligned"
            )
        elif not np.isfinite(s).all():
            problems.append(
                f"score {name!r} has {int((~np.isfinite(s)).sum())} missing/non-finite values; "
                "recompute the effects table"
            )
    if lf.size == 0:
        problems.append("no units: leaf is empty")
    elif pd.isna(pd.Series(lf)).any():
        problems.append("leaf has missing values: every unit needs a leaf id")
    if problems:
        raise InputValidationError(problems)
    parts = []
    for name, s in named.items():
        df = pd.DataFrame({"leaf": lf, "s": s})
        g = df.groupby("leaf", sort=True)["s"]
        agg = g.agg(n="size", sum="sum", mean="mean").reset_index()
        dev2 = (df["s"] - g.transform("mean")) ** 2
        agg["sumsq"] = (df["s"] ** 2).groupby(df["leaf"], sort=True).sum().to_numpy()
        agg["m2"] = dev2.groupby(df["leaf"], sort=True).sum().to_numpy()
        agg.insert(0, "score", name)
        parts.append(agg)
    out = pd.concat(parts, ignore_index=True)
    out["n"] = out["n"].astype(np.int64)
    return out[list(SCORE_AGG_COLUMNS)]


def combine_score_aggregates(parts: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Merge score aggregates of disjoint parts of the data (partitions, chunks).

    Counts, sums and sums of squares add; ``m2`` by Chan et al.'s parallel formula
    ``m2 = m2_a + m2_b + d^2 n_a n_b / (n_a + n_b)``, ``d = mean_b - mean_a``.

    Parameters
    ----------
    parts : sequence of DataFrame
        Outputs of :func:`score_aggregates`.

    Returns
    -------
    DataFrame
        Same columns, one row per (score, leaf), sorted.
    """
    parts = [p for p in parts if p is not None and len(p)]
    if not parts:
        raise MLearnerError("combine_score_aggregates needs at least one non-empty table")
    for p in parts:
        missing = [c for c in SCORE_AGG_COLUMNS if c not in p.columns]
        if missing:
            raise InputValidationError(
                [f"score aggregate table lacks column(s) {missing}: build it with score_aggregates"]
            )
    acc = merge_moment_rows(
        ((str(row.score), row.leaf), (row.n, row.sum, row.sumsq, row.mean, row.m2))
        for p in parts
        for row in p[list(SCORE_AGG_COLUMNS)].itertuples(index=False)
    )
    rows = [(k[0], k[1], *v) for k, v in sorted(acc.items(), key=lambda kv: (kv[0][0], kv[0][1]))]
    out = pd.DataFrame(rows, columns=list(SCORE_AGG_COLUMNS))
    out["n"] = out["n"].astype(np.int64)
    return out


def score_test_from_aggregates(
    agg: pd.DataFrame,
    *,
    score: str | None = None,
    covariance: str = "HC1",
    min_leaf_n: int = 2,
) -> ScoreTestResult:
    """Robust Wald test of equal leaf means of one score, from its per-leaf aggregates.

    Parameters
    ----------
    agg : DataFrame
        Rows ``leaf``, ``n`` and either ``mean`` and ``m2`` or ``sum`` and ``sumsq``
        (see :func:`score_aggregates`); with a ``score`` column, ``score`` selects the rows.
    score : str, optional
        Which score to test; required when ``agg`` holds several.
    covariance : {"HC1", "HC0"}
        Finite-sample scaling of the sandwich variance (module docstring).
    min_leaf_n : int, default 2
        Leaves with fewer units are left out (no variance estimate), with a warning.

    Returns
    -------
    ScoreTestResult

    Raises
    ------
    MLearnerError
        Unknown covariance, ambiguous or unknown score, invalid ``min_leaf_n``.
    InputValidationError
        Missing columns, repeated leaves, non-finite aggregates.
    """
    if covariance not in COVARIANCES:
        raise MLearnerError(f"covariance={covariance!r}: choose one of {list(COVARIANCES)}")
    if isinstance(min_leaf_n, bool) or not isinstance(min_leaf_n, (int, np.integer)):
        raise MLearnerError(f"min_leaf_n={min_leaf_n!r}: give an integer >= 2")
    if min_leaf_n < 2:
        raise MLearnerError(f"min_leaf_n={min_leaf_n}: give an integer >= 2")
    cells, name = _select_score(agg, score)
    small = cells.loc[cells["n"] < min_leaf_n, "leaf"].tolist()
    if small and len(cells) > 1:
        warnings.warn(
            f"score {name!r}: leaves {small} have fewer than {min_leaf_n} units and are left out "
            "of the score test",
            SmallSubgroupWarning,
            stacklevel=2,
        )
    cells = cells[cells["n"] >= min_leaf_n]
    n_leaves = len(cells)
    n_units = int(cells["n"].sum())
    if n_leaves < 2:
        means = dict(zip(cells["leaf"], cells["_mean"].astype(float), strict=True))
        return ScoreTestResult(name, 0.0, 0, 1.0, n_leaves, n_units, covariance, means, {})
    n = cells["n"].to_numpy(dtype=float)
    m = cells["_mean"].to_numpy(dtype=float)
    c = 1.0 if covariance == "HC0" else n_units / (n_units - n_leaves)
    v = c * cells["_m2"].to_numpy(dtype=float) / n**2
    stat = _wald_equal_means(m, v)
    p = 0.0 if math.isinf(stat) else float(stats.chi2.sf(stat, n_leaves - 1))
    leaves = cells["leaf"].tolist()
    return ScoreTestResult(
        score=name,
        statistic=float(stat),
        df=n_leaves - 1,
        pvalue=p,
        n_leaves=n_leaves,
        n_units=n_units,
        covariance=covariance,
        leaf_means={k: float(x) for k, x in zip(leaves, m, strict=True)},
        leaf_se={k: float(math.sqrt(x)) for k, x in zip(leaves, v, strict=True)},
    )


def score_test_from_cluster_sums(
    sums: pd.DataFrame,
    *,
    score: str = "score",
    covariance: str = "HC1",
    min_leaf_n: int = 2,
) -> ScoreTestResult:
    """Cluster-robust Wald test of equal leaf means from per-(leaf, cluster) sums.

    The aggregate form of the test for a cluster-randomised design: Spark or Dask compute
    :func:`~mlearner_dist.core.design_variance.cluster_sums` per partition,
    :func:`~mlearner_dist.core.design_variance.combine_cluster_sums` adds them (a cluster split
    across partitions adds up), and this function gives the same result as
    :func:`score_pvalue` with the design on all rows.

    Parameters
    ----------
    sums : DataFrame
        Columns ``leaf``, ``cluster``, ``n``, ``w``, ``ws``.
    score : str
        Name recorded in the result.
    covariance : {"HC1", "HC0"}
        CR1 (statsmodels' default cluster correction) or CR0.
    min_leaf_n : int, default 2
        Leaves with fewer units are left out.

    Returns
    -------
    ScoreTestResult
        ``covariance`` is ``"CR1"`` or ``"CR0"``.
    """
    if covariance not in COVARIANCES:
        raise MLearnerError(f"covariance={covariance!r}: choose one of {list(COVARIANCES)}")
    n_leaf = sums.groupby("leaf")["n"].transform("sum")
    kept = sums[n_leaf.to_numpy() >= min_leaf_n]
    label = "CR0" if covariance == "HC0" else "CR1"
    if kept.empty:
        return ScoreTestResult(score, 0.0, 0, 1.0, 0, 0, label, {}, {})
    leaves, means, cov, counts = leaf_covariance_from_sums(kept, covariance=covariance)
    stat, df = wald_equal_means(means, cov)
    if df == 0 or math.isnan(stat):
        p = 1.0
    else:
        p = 0.0 if math.isinf(stat) else float(stats.chi2.sf(stat, df))
    return ScoreTestResult(
        score=score,
        statistic=float(stat),
        df=int(df),
        pvalue=p,
        n_leaves=len(leaves),
        n_units=int(counts.sum()),
        covariance=label,
        leaf_means={k: float(m) for k, m in zip(leaves.tolist(), means, strict=True)},
        leaf_se={
            k: float(math.sqrt(max(v, 0.0)))
            for k, v in zip(leaves.tolist(), np.diag(cov), strict=True)
        },
    )


def score_test(
    scores: Any, leaf: Any, *, covariance: str = "HC1", min_leaf_n: int = 2
) -> dict[str, ScoreTestResult]:
    """Robust Wald test of equal leaf means for each score (indirect, direct, total separately).

    Parameters
    ----------
    scores : DataFrame, mapping or array-like
        As in :func:`score_aggregates` (the effects table works directly).
    leaf : array-like, shape (n,)
    covariance : {"HC1", "HC0"}
    min_leaf_n : int, default 2

    Returns
    -------
    dict of str to ScoreTestResult
        One entry per score, keyed by its name (``indirect``, ``direct``, ``total`` for the
        effects table; absent scores are skipped).
    """
    agg = score_aggregates(scores, leaf)
    return {
        name: score_test_from_aggregates(
            agg, score=name, covariance=covariance, min_leaf_n=min_leaf_n
        )
        for name in dict.fromkeys(agg["score"])
    }


def score_pvalue(
    score: Any,
    leaf: Any,
    *,
    covariance: str = "HC1",
    min_leaf_n: int = 2,
    design: Design | None = None,
) -> float:
    """p-value of the score test for one score vector (the selection's statistic).

    The same test as :func:`score_test`, computed with ``numpy.bincount`` on integer leaf ids
    (other ids are factorised first) because the calibration calls it thousands of times.
    Leaves with fewer than ``min_leaf_n`` units are dropped silently.

    Parameters
    ----------
    score : array-like, shape (n,)
    leaf : array-like, shape (n,)
    covariance : {"HC1", "HC0"}
    min_leaf_n : int, default 2
    design : Design, optional
        Clusters and weights of the units (:mod:`mlearner_dist.core.design_variance`): the
        weighted leaf means and their cluster-robust covariance
        (:func:`~mlearner_dist.core.design_variance.design_pvalue`). None: independent units
        with equal weights (the formula above, unchanged).

    Returns
    -------
    float
    """
    if covariance not in COVARIANCES:
        raise MLearnerError(f"covariance={covariance!r}: choose one of {list(COVARIANCES)}")
    s = np.asarray(score, dtype=float).ravel()
    lf = np.asarray(leaf).ravel()
    if design is not None:
        design.check_length(s.shape[0])
        _, inv, counts = np.unique(lf, return_inverse=True, return_counts=True)
        keep = counts[inv] >= min_leaf_n
        return design_pvalue(s[keep], lf[keep], design.take(keep), covariance=covariance)
    if s.shape != lf.shape or not np.isfinite(s).all():
        return score_test(s, lf, covariance=covariance, min_leaf_n=min_leaf_n)["score"].pvalue
    if not (np.issubdtype(lf.dtype, np.integer) and lf.size and lf.min() >= 0):
        lf = pd.factorize(lf)[0]
    n = np.bincount(lf).astype(float)
    sums = np.bincount(lf, weights=s, minlength=n.size)
    keep = n >= min_leaf_n
    mean = np.divide(sums, n, out=np.zeros_like(sums), where=n > 0)
    m2 = np.bincount(lf, weights=(s - mean[lf]) ** 2, minlength=n.size)
    return pvalue_from_moments(n[keep], mean[keep], m2[keep], covariance=covariance)


def pvalue_from_moments(
    n: np.ndarray, mean: np.ndarray, m2: np.ndarray, *, covariance: str = "HC1"
) -> float:
    """p-value of the Wald test from per-leaf counts, means and centred sums of squares.

    The kernel of :func:`score_test_from_aggregates` without checks (every leaf is used).

    Parameters
    ----------
    n, mean, m2 : ndarray, shape (L,)
    covariance : {"HC1", "HC0"}

    Returns
    -------
    float
        1.0 when ``L < 2``.
    """
    n = np.asarray(n, dtype=float)
    if n.size < 2:
        return 1.0
    n_units = float(n.sum())
    c = 1.0 if covariance == "HC0" else n_units / (n_units - n.size)
    stat = _wald_equal_means(np.asarray(mean, dtype=float), c * np.asarray(m2, dtype=float) / n**2)
    return 0.0 if math.isinf(stat) else float(stats.chi2.sf(stat, n.size - 1))


# ---------------------------------------------------------------------------------------------
def _wald_equal_means(m: np.ndarray, v: np.ndarray) -> float:
    """``sum w (m - m_w)^2`` with ``w = 1 / v``; zero-variance leaves handled exactly."""
    zero = v <= 0.0
    if zero.any():
        # a leaf with no spread has an exactly known mean: any difference is infinite evidence
        ref = m[zero][0]
        if np.any(np.abs(m[zero] - ref) > 1e-12 * max(1.0, abs(ref))):
            return math.inf
        w_pos = 1.0 / v[~zero]
        dev = m[~zero] - ref
        return float(np.sum(w_pos * dev * dev))
    w = 1.0 / v
    mw = float(np.sum(w * m) / np.sum(w))
    return float(np.sum(w * (m - mw) ** 2))


def _named_scores(scores: Any) -> dict[str, np.ndarray]:
    if isinstance(scores, pd.DataFrame):
        out: dict[str, np.ndarray] = {}
        for col in scores.columns:
            name = str(col)
            if name.startswith("score_"):
                name = name[len("score_") :]
            elif any(str(c).startswith("score_") for c in scores.columns):
                continue  # an effects table: only its score columns are scores
            values = scores[col].to_numpy(dtype=float)
            if np.isnan(values).all():
                continue
            out[name] = values
        if not out:
            raise InputValidationError(
                [
                    "scores has no usable column: pass the effects table (score_indirect, "
                    "score_direct, score_total) or a frame of score columns"
                ]
            )
        return out
    if isinstance(scores, Mapping):
        if not scores:
            raise InputValidationError(["scores is an empty mapping: give at least one score"])
        return {str(k): np.asarray(v, dtype=float).ravel() for k, v in scores.items()}
    return {"score": np.asarray(scores, dtype=float).ravel()}


def _select_score(agg: pd.DataFrame, score: str | None) -> tuple[pd.DataFrame, str]:
    if not isinstance(agg, pd.DataFrame):
        raise MLearnerError(
            f"agg must be a DataFrame of score aggregates, got {type(agg).__name__}"
        )
    name = score if score is not None else "score"
    if "score" in agg.columns:
        names = list(dict.fromkeys(agg["score"].astype(str)))
        if score is None:
            if len(names) != 1:
                raise MLearnerError(f"agg holds scores {names}: say which one with score=")
            name = names[0]
        elif score not in names:
            raise MLearnerError(f"score={score!r} is not in the aggregates; they hold {names}")
        agg = agg[agg["score"].astype(str) == name]
    have_moments = {"mean", "m2"} <= set(agg.columns)
    need = ["leaf", "n"] + ([] if have_moments else ["sum", "sumsq"])
    missing = [c for c in need if c not in agg.columns]
    if missing:
        raise InputValidationError(
            [f"score aggregate table lacks column(s) {missing}: build it with score_aggregates"]
        )
    cells = agg[agg["n"] > 0].copy()
    if cells.empty:
        raise InputValidationError([f"score {name!r}: the aggregate table has no leaf with n > 0"])
    if cells["leaf"].duplicated().any():
        raise InputValidationError(
            [f"score {name!r}: repeated leaves; merge the parts first (combine_score_aggregates)"]
        )
    cells["_mean"], cells["_m2"] = cell_mean_m2(cells, have_moments)
    if not np.isfinite(cells[["_mean", "_m2"]].to_numpy()).all():
        raise InputValidationError([f"score {name!r}: non-finite means or sums of squares"])
    return cells.sort_values("leaf", kind="stable").reset_index(drop=True), name


__all__ = [
    "COVARIANCES",
    "SCORE_AGG_COLUMNS",
    "SCORE_NAMES",
    "ScoreTestResult",
    "combine_score_aggregates",
    "pvalue_from_moments",
    "score_aggregates",
    "score_pvalue",
    "score_test",
    "score_test_from_aggregates",
    "score_test_from_cluster_sums",
]
