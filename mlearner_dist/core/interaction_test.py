"""Leaf x treatment interaction tests from cell aggregates, and the choice of configuration.

The test of step 4 compares, for a response ``r`` (outcome or mediator), the additive model
``r ~ leaf + T`` with the model with interaction ``r ~ leaf + T + leaf:T``. The second is the
cell-means model of the (leaf, T) cells, so both fits depend on the data only through each cell's
count ``n``, mean and sum of squared deviations ``m2``:

* full model: fitted values are cell means, ``RSS_1 = sum_cells m2``, ``df_1 = N - 2L``;
* additive model: weighted least squares of the cell means on (leaf dummies, T) with weights
  ``n``; ``RSS_0 = RSS_1 + sum_cells n (mean - fitted)^2``, ``df_0 = N - L - 1``;
* partial F test: ``F = ((RSS_0 - RSS_1) / (L - 1)) / (RSS_1 / df_1)`` on ``(L - 1, df_1)``
  degrees of freedom; Gaussian likelihood ratio: ``LR = N log(RSS_0 / RSS_1)`` against
  chi-square with ``L - 1`` degrees of freedom (what ``statsmodels``' ``compare_lr_test`` gives).

``L`` counts the *testable* leaves, those with treated and control units. So Spark or Dask compute
the aggregates over any number of rows (:func:`cell_aggregates` per partition, then
:func:`combine_cell_aggregates`), and the driver computes the p-value from a table of ``2L`` rows.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from mlearner_dist.core.moments import cell_mean_m2, merge_moment_rows
from mlearner_dist.exceptions import InputValidationError, MLearnerError, SmallSubgroupWarning

logger = logging.getLogger(__name__)

METHODS = ("f", "lr")
AGG_COLUMNS = ("leaf", "treatment", "n", "sum", "sumsq", "mean", "m2")


def cell_aggregates(response: Any, treatment: Any, leaf: Any) -> pd.DataFrame:
    """Count, sums and centred sum of squares of the response in every (leaf, treatment) cell.

    Parameters
    ----------
    response : array-like, shape (n,)
        Outcome or mediator, finite.
    treatment : array-like, shape (n,)
        0/1 treatment.
    leaf : array-like, shape (n,)
        Leaf (subgroup) id of every unit.

    Returns
    -------
    DataFrame, shape (n_cells, 7)
        Columns ``leaf``, ``treatment`` (0/1), ``n``, ``sum`` and ``sumsq`` (sum and sum of
        squares of the response), ``mean`` and ``m2`` (sum of squared deviations from the cell
        mean, computed in two passes so it is accurate even when the mean is large). Sorted by
        leaf, then treatment. :func:`interaction_pvalue_from_aggregates` uses ``n``, ``mean`` and
        ``m2`` when present, else ``n``, ``sum`` and ``sumsq``.
    """
    r, t, lf = _validate_unit_arrays(response, treatment, leaf)
    df = pd.DataFrame({"leaf": lf, "treatment": t, "r": r})
    g = df.groupby(["leaf", "treatment"], sort=True)["r"]
    agg = g.agg(n="size", sum="sum", mean="mean").reset_index()
    df["dev2"] = (df["r"] - g.transform("mean")) ** 2
    df["sq"] = df["r"] ** 2
    g2 = df.groupby(["leaf", "treatment"], sort=True)
    agg["sumsq"] = g2["sq"].sum().to_numpy()
    agg["m2"] = g2["dev2"].sum().to_numpy()
    agg["n"] = agg["n"].astype(np.int64)
    agg["treatment"] = agg["treatment"].astype(np.int64)
    return agg[list(AGG_COLUMNS)]


def combine_cell_aggregates(parts: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Merge cell aggregates computed on disjoint parts of the data (partitions, chunks).

    Counts and sums add; ``m2`` is combined with Chan et al.'s parallel formula
    ``m2 = m2_a + m2_b + d^2 n_a n_b / (n_a + n_b)`` with ``d = mean_b - mean_a``.

    Parameters
    ----------
    parts : sequence of DataFrame
        Outputs of :func:`cell_aggregates`.

    Returns
    -------
    DataFrame
        The aggregates of the union, same columns, sorted by leaf then treatment.
    """
    parts = [p for p in parts if p is not None and len(p)]
    if not parts:
        raise MLearnerError("combine_cell_aggregates needs at least one non-empty table")
    for p in parts:
        missing = [c for c in AGG_COLUMNS if c not in p.columns]
        if missing:
            raise InputValidationError([f"aggregate table lacks column(s) {missing}"])
    out = merge_moment_rows(
        ((row.leaf, int(row.treatment)), (row.n, row.sum, row.sumsq, row.mean, row.m2))
        for p in parts
        for row in p[list(AGG_COLUMNS)].itertuples(index=False)
    )
    rows = [(k[0], k[1], *v) for k, v in sorted(out.items(), key=lambda kv: kv[0])]
    agg = pd.DataFrame(rows, columns=list(AGG_COLUMNS))
    agg["n"] = agg["n"].astype(np.int64)
    return agg


def interaction_pvalue_from_aggregates(agg: pd.DataFrame, *, method: str = "f") -> float:
    """p-value of the leaf x treatment interaction from (leaf, treatment) cell aggregates.

    Parameters
    ----------
    agg : DataFrame
        One row per (leaf, treatment) cell with ``leaf``, ``treatment`` (0/1), ``n`` and either
        ``mean`` and ``m2`` or ``sum`` and ``sumsq`` (see :func:`cell_aggregates`).
    method : {"f", "lr"}
        Partial F test, or Gaussian likelihood-ratio test.

    Returns
    -------
    float
        The p-value. 1.0 when fewer than two leaves have both treated and control units (a single
        leaf has no interaction to test); leaves with one arm only are dropped from the test with a
        :class:`SmallSubgroupWarning` naming them. When the interaction model fits perfectly
        (``RSS_1`` below 1e-12 of the total sum of squares), 0.0 if the additive model does not,
        else 1.0; a constant response gives 1.0.

    Raises
    ------
    MLearnerError
        Unknown method, missing columns, invalid counts or treatment codes.
    """
    if method not in METHODS:
        raise MLearnerError(f"method={method!r}: choose 'f' (partial F) or 'lr' (likelihood ratio)")
    cells = _clean_aggregates(agg)
    arms = cells.groupby("leaf")["treatment"].nunique()
    one_arm = arms.index[arms < 2].tolist()
    if one_arm and len(arms) > 1:
        warnings.warn(
            f"leaves {one_arm} have only treated or only control units and are left out of the "
            "interaction test",
            SmallSubgroupWarning,
            stacklevel=2,
        )
    cells = cells[cells["leaf"].isin(arms.index[arms == 2])]
    n_leaves = int(cells["leaf"].nunique())
    if n_leaves < 2:
        if len(arms) > 1:
            warnings.warn(
                f"only {n_leaves} leaf has both treated and control units: no interaction can be "
                "tested, p = 1",
                SmallSubgroupWarning,
                stacklevel=2,
            )
        return 1.0
    return _pvalue(cells, n_leaves, method)


def interaction_pvalue(response: Any, treatment: Any, leaf: Any, *, method: str = "f") -> float:
    """p-value of ``response ~ leaf + T`` against ``response ~ leaf + T + leaf:T``.

    Parameters
    ----------
    response : array-like, shape (n,)
        Outcome or mediator, finite.
    treatment : array-like, shape (n,)
        0/1 treatment.
    leaf : array-like, shape (n,)
        Leaf id of every unit.
    method : {"f", "lr"}
        Partial F test (the reference), or the Gaussian likelihood-ratio test (the reference's
        Jobs II analysis).

    Returns
    -------
    float
        See :func:`interaction_pvalue_from_aggregates` (computed from :func:`cell_aggregates`).
    """
    if method not in METHODS:
        raise MLearnerError(f"method={method!r}: choose 'f' (partial F) or 'lr' (likelihood ratio)")
    return interaction_pvalue_from_aggregates(
        cell_aggregates(response, treatment, leaf), method=method
    )


def select_configuration(candidates: Sequence[Mapping[str, Any]], response: str) -> dict[str, Any]:
    """The configuration (K, tree) with the smallest p-value for the decision response.

    Parameters
    ----------
    candidates : sequence of dict
        Each with ``k``, ``tree_id``, ``n_leaves`` and the p-value ``p_m`` (response "m") or
        ``p_y`` (response "y"). Entries whose p-value is None or NaN are skipped.
    response : {"m", "y"}
        ``"m"`` with a mediator (the reference's decision statistic), ``"y"`` without.

    Returns
    -------
    dict
        A copy of the winning candidate. Ties in p go to fewer leaves, then smaller K, then the
        smaller tree id.
    """
    if response not in ("m", "y"):
        raise MLearnerError(f"response={response!r}: choose 'm' (mediator) or 'y' (outcome)")
    key = f"p_{response}"
    if not candidates:
        raise MLearnerError("candidates is empty: no (K, tree) configuration was tested")
    usable = []
    for i, c in enumerate(candidates):
        missing = [f for f in ("k", "tree_id", "n_leaves") if f not in c]
        if missing:
            raise MLearnerError(f"candidate {i} lacks {missing}: got keys {sorted(c)}")
        p = c.get(key)
        if p is None or not math.isfinite(float(p)):
            continue
        if not 0.0 <= float(p) <= 1.0:
            raise MLearnerError(f"candidate {i} has {key}={p}, not a p-value in [0, 1]")
        usable.append(c)
    if not usable:
        raise MLearnerError(
            f"no candidate has a finite {key}: with response={response!r} every tested "
            f"configuration needs {key} (was the {'mediator' if response == 'm' else 'outcome'} "
            "tested?)"
        )
    best = min(
        usable,
        key=lambda c: (float(c[key]), int(c["n_leaves"]), int(c["k"]), int(c["tree_id"])),
    )
    return dict(best)


# ---------------------------------------------------------------------------------------------
def _validate_unit_arrays(
    response: Any, treatment: Any, leaf: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r = np.asarray(response, dtype=float).ravel()
    t = np.asarray(treatment).ravel()
    lf = np.asarray(leaf).ravel()
    problems = []
    if not (r.shape == t.shape == lf.shape):
        problems.append(
            f"response, treatment and leaf must have the same length; got {r.shape[0]}, "
            f"{t.shape[0]}, {lf.shape[0]}"
        )
    else:
        if r.size == 0:
            problems.append("no units: response is empty")
        if not np.isfinite(r).all():
            problems.append(f"response has {int((~np.isfinite(r)).sum())} missing/infinite values")
        t_vals = set(pd.unique(pd.Series(t)).tolist())
        if not t_vals <= {0, 1}:
            problems.append(f"treatment must be coded 0/1; found values {sorted(t_vals, key=str)}")
        if pd.isna(pd.Series(lf)).any():
            problems.append("leaf has missing values: every unit needs a leaf id")
    if problems:
        raise InputValidationError(problems)
    return r, t.astype(np.int64), lf


def _clean_aggregates(agg: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(agg, pd.DataFrame):
        raise MLearnerError(f"agg must be a DataFrame of cell aggregates, got {type(agg).__name__}")
    need = ["leaf", "treatment", "n"]
    have_moments = {"mean", "m2"} <= set(agg.columns)
    if not have_moments:
        need += ["sum", "sumsq"]
    missing = [c for c in need if c not in agg.columns]
    if missing:
        raise InputValidationError(
            [f"aggregate table lacks column(s) {missing}: build it with cell_aggregates"]
        )
    cells = agg[agg["n"] > 0].copy()
    if cells.empty:
        raise InputValidationError(["aggregate table has no cell with n > 0"])
    if not set(cells["treatment"].astype(int).unique()) <= {0, 1}:
        raise InputValidationError(["aggregate column 'treatment' must be 0/1"])
    if cells.duplicated(["leaf", "treatment"]).any():
        raise InputValidationError(
            [
                "aggregate table has repeated (leaf, treatment) cells: combine them first "
                "(combine_cell_aggregates)"
            ]
        )
    cells["_mean"], cells["_m2"] = cell_mean_m2(cells, have_moments)
    if not np.isfinite(cells[["_mean", "_m2"]].to_numpy()).all():
        raise InputValidationError(["aggregate table has non-finite means or sums of squares"])
    cells["treatment"] = cells["treatment"].astype(int)
    return cells


def _pvalue(cells: pd.DataFrame, n_leaves: int, method: str) -> float:
    n = cells["n"].to_numpy(dtype=float)
    mean = cells["_mean"].to_numpy()
    rss1 = float(cells["_m2"].sum())
    n_units = float(n.sum())
    codes = pd.factorize(cells["leaf"], sort=True)[0]
    design = np.zeros((len(cells), n_leaves + 1))
    design[np.arange(len(cells)), codes] = 1.0
    design[:, -1] = cells["treatment"].to_numpy(dtype=float)
    w = np.sqrt(n)
    coef, *_ = np.linalg.lstsq(design * w[:, None], mean * w, rcond=None)
    extra = float(np.sum(n * (mean - design @ coef) ** 2))
    df_num = n_leaves - 1
    df_den = n_units - 2 * n_leaves
    grand = float(np.sum(n * mean) / n_units)
    scale = rss1 + float(np.sum(n * (mean - grand) ** 2))  # total sum of squares
    if scale <= 0.0:
        return 1.0  # constant response: nothing to test
    if rss1 <= 1e-12 * scale or df_den <= 0:
        if df_den <= 0:
            logger.warning(
                "interaction test: %d units in %d cells leave no residual degrees of freedom; "
                "p = 1",
                int(n_units),
                2 * n_leaves,
            )
            return 1.0
        return 0.0 if extra > 1e-12 * scale else 1.0
    if method == "f":
        f_stat = (extra / df_num) / (rss1 / df_den)
        return float(stats.f.sf(f_stat, df_num, df_den))
    lr = n_units * math.log1p(extra / rss1)
    return float(stats.chi2.sf(lr, df_num))


__all__ = [
    "AGG_COLUMNS",
    "METHODS",
    "cell_aggregates",
    "combine_cell_aggregates",
    "interaction_pvalue",
    "interaction_pvalue_from_aggregates",
    "select_configuration",
]
