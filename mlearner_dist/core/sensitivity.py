"""Sensitivity of the indirect effect to an unmeasured confounder of the mediator and outcome.

Sequential ignorability (no unmeasured M-Y confounding given T and X) cannot be tested. Imai,
Keele and Yamamoto (2010, *Statistical Science* 25(1), Theorem 2) measure how much it matters in
the linear structural equation model

    M = a_2 + beta_2 T + xi_2' X + e_2,
    Y = a_3 + beta_3 T + gamma M + xi_3' X + e_3,
    Y = a_1 + beta_1 T + xi_1' X + e_1     (the total-effect regression),

with ``rho = corr(e_2, e_3)`` the sensitivity parameter (0 under sequential ignorability). The
average indirect effect at a given rho is

    ACME(rho) = (beta_2 sigma_1 / sigma_2) * (rho~ - rho sqrt((1 - rho~^2) / (1 - rho^2))),

where ``sigma_j = sd(e_j)`` and ``rho~ = corr(e_1, e_2)``; all three are identified from the
observed data. At ``rho = 0`` it equals the product ``beta_2 gamma`` of the two OLS fits, and it is
zero at ``rho = rho~``. The intervals are percentile intervals of a nonparametric bootstrap of the
units (the whole curve is recomputed on every draw from the weighted Gram matrix of
``[1, T, X, M, Y]``, so a draw costs one matrix product). The bootstrap runs on at most
``max_rows`` units per group (a hashed subsample above it, stated in the output).

This is the sensitivity analysis R's ``mediation::medsens`` reports for the whole sample; here it
is also computed within every subgroup. It concerns the linear model's indirect effect, a summary
beside the flexible estimates of step 1, and assumes no T x M interaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from mlearner_dist.exceptions import MLearnerError

__all__ = ["acme_curve", "rho_curve_from_moments", "sensitivity_analysis"]

DEFAULT_RHO = tuple(float(r) for r in np.round(np.linspace(-0.9, 0.9, 37), 3))


def _design(frame: pd.DataFrame, covariates: Sequence[str]) -> np.ndarray:
    X = pd.get_dummies(frame[list(covariates)], drop_first=True, dtype=float)
    X = X.loc[:, X.std(ddof=0).to_numpy() > 0] if len(X) else X
    return X.to_numpy(dtype=float)


def _solve(G: np.ndarray, cols: Sequence[int], target: int) -> tuple[np.ndarray, float]:
    """OLS of column ``target`` on ``cols`` from the Gram matrix: coefficients and RSS."""
    A = G[np.ix_(cols, cols)]
    b = G[cols, target]
    coef = np.linalg.lstsq(A, b, rcond=None)[0]
    rss = float(G[target, target] - b @ coef)
    return coef, max(rss, 0.0)


def rho_curve_from_moments(
    G: np.ndarray, n: float, rho: np.ndarray, *, k_x: int
) -> tuple[np.ndarray, float]:
    """ACME(rho) from the Gram matrix of ``Z = [1, T, X (k_x columns), M, Y]``.

    Parameters
    ----------
    G : ndarray, shape (3 + k_x + 1, 3 + k_x + 1)
        ``Z' W Z`` for unit weights W (ones, or bootstrap counts).
    n : float
        Sum of the weights.
    rho : ndarray, shape (R,)
        Sensitivity parameters in (-1, 1).
    k_x : int
        Number of covariate columns.

    Returns
    -------
    acme : ndarray, shape (R,)
    rho_tilde : float
        ``corr(e_1, e_2)``: the rho at which the indirect effect is zero.
    """
    base = list(range(2 + k_x))  # 1, T, X
    i_m, i_y = 2 + k_x, 3 + k_x
    coef_m, rss_m = _solve(G, base, i_m)
    coef_y, rss_y = _solve(G, base, i_y)
    # cross-moment of the two residuals: e_1' e_2 = G_ym - coef_y' G_base,m (normal equations)
    cross = float(G[i_y, i_m] - coef_y @ G[base, i_m])
    if rss_m <= 0 or rss_y <= 0:
        raise MLearnerError("sensitivity: the mediator or outcome has no residual variance")
    sigma_2 = np.sqrt(rss_m / n)
    sigma_1 = np.sqrt(rss_y / n)
    rho_t = cross / np.sqrt(rss_m * rss_y)
    beta_2 = float(coef_m[1])
    r = np.asarray(rho, dtype=float)
    acme = beta_2 * sigma_1 / sigma_2 * (rho_t - r * np.sqrt((1 - rho_t**2) / (1 - r**2)))
    return acme, float(rho_t)


def acme_curve(
    frame: pd.DataFrame,
    *,
    treatment: str,
    mediator: str,
    outcome: str,
    covariates: Sequence[str],
    rho: Sequence[float] = DEFAULT_RHO,
    n_bootstrap: int = 200,
    level: float = 0.95,
    max_rows: int = 20_000,
    random_state: int = 0,
) -> dict[str, Any]:
    """ACME(rho) with bootstrap intervals for one group of units.

    Parameters
    ----------
    frame : DataFrame
        The group's units (validated: finite, binary treatment).
    treatment, mediator, outcome : str
        Column names.
    covariates : sequence of str
        Adjustment covariates (categorical ones enter as dummies).
    rho : sequence of float
        Grid of sensitivity parameters in (-1, 1).
    n_bootstrap : int
        Bootstrap draws for the intervals.
    level : float
        Interval level.
    max_rows : int
        Bootstrap on at most this many units (a seeded subsample above it).
    random_state : int

    Returns
    -------
    dict
        ``n``, ``rho`` (the grid), ``estimate``, ``ci_low``, ``ci_high`` (lists over the grid),
        ``rho_zero`` (where the estimate crosses zero, rho~), ``rho_ci_covers_zero`` (the rho of
        smallest absolute value at which the interval contains 0; None if it never does on the
        grid), ``n_bootstrap``, ``bootstrap_rows``.
    """
    r = np.asarray(rho, dtype=float)
    if r.size == 0 or np.any(np.abs(r) >= 1):
        raise MLearnerError(f"sensitivity: rho must lie in (-1, 1), got {list(r)}")
    if not 0 < level < 1:
        raise MLearnerError(f"sensitivity: level must be in (0, 1), got {level}")
    X = _design(frame, covariates)
    t = frame[treatment].to_numpy(dtype=float)
    n = len(frame)
    if n < X.shape[1] + 5 or t.min() == t.max():
        raise MLearnerError(
            f"sensitivity: {n} units with {X.shape[1]} covariate columns and "
            f"{'one arm' if t.min() == t.max() else 'both arms'}: too few to fit the linear models"
        )
    Z = np.column_stack(
        [
            np.ones(n),
            t,
            X,
            frame[mediator].to_numpy(dtype=float),
            frame[outcome].to_numpy(dtype=float),
        ]
    )
    k_x = X.shape[1]
    est, rho_t = rho_curve_from_moments(Z.T @ Z, float(n), r, k_x=k_x)
    rng = np.random.default_rng(random_state)
    Zb = Z if n <= max_rows else Z[np.sort(rng.choice(n, max_rows, replace=False))]
    nb = len(Zb)
    draws = np.empty((n_bootstrap, r.size))
    for b in range(n_bootstrap):
        w = rng.multinomial(nb, np.full(nb, 1.0 / nb)).astype(float)
        Gw = (Zb * w[:, None]).T @ Zb
        draws[b] = rho_curve_from_moments(Gw, float(nb), r, k_x=k_x)[0]
    lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2], axis=0)
    covers = (lo <= 0) & (hi >= 0)
    rho_cover = None
    if covers.any():
        idx = np.flatnonzero(covers)
        rho_cover = float(r[idx[np.argmin(np.abs(r[idx]))]])
    return {
        "n": int(n),
        "rho": [float(x) for x in r],
        "estimate": [float(x) for x in est],
        "ci_low": [float(x) for x in lo],
        "ci_high": [float(x) for x in hi],
        "rho_zero": rho_t,
        "rho_ci_covers_zero": rho_cover,
        "n_bootstrap": int(n_bootstrap),
        "bootstrap_rows": int(nb),
    }


def sensitivity_analysis(
    frame: pd.DataFrame,
    leaf: np.ndarray | None,
    rules: dict[int, str] | None,
    *,
    treatment: str,
    mediator: str,
    outcome: str,
    covariates: Sequence[str],
    min_size: int = 30,
    **kwargs: Any,
) -> dict[str, Any]:
    """The ACME(rho) curve for the whole sample and for every subgroup (leaf) large enough.

    Parameters
    ----------
    frame : DataFrame
        Validated units.
    leaf : ndarray of shape (n,), optional
        Subgroup of each unit (None: whole sample only).
    rules : dict of leaf -> str, optional
        Readable rule of each leaf.
    min_size : int
        Smaller subgroups get a note instead of a curve.
    **kwargs
        Passed to :func:`acme_curve` (rho, n_bootstrap, level, max_rows, random_state).

    Returns
    -------
    dict
        ``method``, ``whole`` (an :func:`acme_curve` dict) and ``subgroups`` (one per leaf with
        ``leaf``, ``rule`` and the curve or a ``note``).
    """
    roles = {"treatment": treatment, "mediator": mediator, "outcome": outcome}
    out: dict[str, Any] = {
        "method": (
            "Imai, Keele and Yamamoto (2010) linear structural equation model: ACME as a function "
            "of rho = corr(mediator error, outcome error); bootstrap percentile intervals"
        ),
        "whole": acme_curve(frame, covariates=covariates, **roles, **kwargs),
        "subgroups": [],
    }
    if leaf is None:
        return out
    leaf = np.asarray(leaf)
    for lf in sorted(rules or {int(v) for v in np.unique(leaf)}):
        mask = leaf == lf
        entry: dict[str, Any] = {"leaf": int(lf), "rule": (rules or {}).get(lf, str(lf))}
        if mask.sum() < min_size:
            entry["note"] = f"{int(mask.sum())} units < {min_size}: no sensitivity curve"
        else:
            try:
                entry.update(acme_curve(frame[mask], covariates=covariates, **roles, **kwargs))
            except MLearnerError as exc:
                entry["note"] = str(exc)
        out["subgroups"].append(entry)
    return out
