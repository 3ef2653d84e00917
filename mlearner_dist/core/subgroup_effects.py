"""Effects within each subgroup (leaf): covariate-adjusted, and the reference's unadjusted version.

* :func:`adjusted_subgroup_effects` averages the doubly robust scores of the effects table within
  each leaf. The mean of ``score_e`` over a leaf estimates the leaf's average effect ``e``; its
  standard error is the scores' standard deviation over ``sqrt(n)`` (the scores are efficient
  influence functions, cross-fitted); with clusters or weights the weighted mean and its
  cluster-robust standard error (:mod:`mlearner_dist.core.design_variance`).
* :func:`unadjusted_subgroup_effects` is the reference: within each leaf ``lm(M ~ T)`` and
  ``lm(Y ~ T + M)``; indirect ``a b``, direct ``c'``, total ``a b + c'``, with percentile
  bootstrap intervals. It ignores confounding of M -> Y by X and is reported beside the adjusted
  effects for comparison with the paper.

The proportion mediated follows one rule everywhere (the whole sample in
:func:`mlearner_dist.core.effect_summaries.average_effects` and every leaf here):
:func:`proportion_mediated`, a Fieller interval, reported only when the total effect differs from
zero at the interval's level (otherwise the Fieller set is unbounded and the estimate and interval
are NaN, with a note).

Both return one row per leaf with columns ``leaf``, ``n``, and for each effect ``e`` in
``indirect``, ``direct``, ``total``, ``prop_mediated``: ``e``, ``e_ci_low``, ``e_ci_high``, plus a
``note`` (empty when nothing needs saying).
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm

from mlearner_dist.core.design_variance import Design, interval_quantile, mean_covariance
from mlearner_dist.core.roles import Roles
from mlearner_dist.exceptions import InputValidationError, MLearnerError, SmallSubgroupWarning

logger = logging.getLogger(__name__)

EFFECT_NAMES = ("indirect", "direct", "total", "prop_mediated")
_BOOT_CELLS = 2**22  # draws x units materialised at once in the bootstrap


def _empty_row(lf: Any, n: int, note: str) -> dict[str, Any]:
    row: dict[str, Any] = {"leaf": lf, "n": n}
    for name in EFFECT_NAMES:
        row[name] = row[f"{name}_ci_low"] = row[f"{name}_ci_high"] = math.nan
    row["note"] = note
    return row


def _check_level(level: float) -> float:
    if not (isinstance(level, (int, float, np.floating)) and 0.0 < float(level) < 1.0):
        raise MLearnerError(f"level must be in (0, 1), e.g. 0.95; got {level!r}")
    return float(level)


def _check_leaf(leaf: Any, n: int) -> np.ndarray:
    lf = np.asarray(leaf).ravel()
    if lf.shape[0] != n:
        raise InputValidationError([f"leaf has {lf.shape[0]} entries for {n} units: one per unit"])
    if pd.isna(pd.Series(lf)).any():
        raise InputValidationError(["leaf has missing values: every unit needs a leaf id"])
    return lf


PROP_MEDIATED_SUPPRESSED = (
    "prop_mediated not reported: the total effect's interval covers 0 (its Fieller set is "
    "unbounded)"
)


def proportion_mediated(
    s_indirect: np.ndarray,
    s_total: np.ndarray,
    *,
    level: float = 0.95,
    design: Design | None = None,
) -> dict[str, Any]:
    """The proportion mediated rho = NIE / TE with its Fieller interval, from the DR scores.

    With a = mean(s_ind), b = mean(s_tot), and the estimated (co)variances of the means
    v_a = var(s_ind) / n, v_b = var(s_tot) / n, c = cov(s_ind, s_tot) / n (ddof 1), the Fieller
    set at level ``level`` (z = z_{(1+level)/2}) is {rho : (a - rho b)^2 <= z^2 (v_a - 2 rho c
    + rho^2 v_b)}, the roots of

        (b^2 - z^2 v_b) rho^2 - 2 (a b - z^2 c) rho + (a^2 - z^2 v_a) = 0.

    It is a bounded interval exactly when b^2 > z^2 v_b, that is when the total effect's normal
    interval excludes 0. Otherwise (the set is the whole line or the complement of an interval)
    nothing is reported: estimate and interval NaN and ``note`` says why. This one rule serves the
    average effects and every subgroup. Unlike the delta method, the interval is not symmetric
    around a / b and stays valid as |b| approaches its standard error.

    Parameters
    ----------
    s_indirect, s_total : ndarray of shape (n,)
        Doubly robust scores of the indirect and total effects of the same units (n >= 2).
    level : float in (0, 1)
    design : Design, optional
        Clusters and weights of the units: a, b are weighted means and v_a, v_b, c their
        cluster-robust (co)variances (:func:`~mlearner_dist.core.design_variance.mean_covariance`)
        and with clusters ``z`` is Student's t quantile with ``G - 1`` degrees of freedom.

    Returns
    -------
    dict
        ``estimate`` (a / b), ``ci_low``, ``ci_high``, ``se`` (delta method, for reference),
        ``note`` (empty when reported).
    """
    level = _check_level(level)
    si = np.asarray(s_indirect, dtype=np.float64)
    st = np.asarray(s_total, dtype=np.float64)
    n = len(si)
    nan = {"estimate": math.nan, "ci_low": math.nan, "ci_high": math.nan, "se": math.nan}
    if n < 2 or len(st) != n:
        return {**nan, "note": "prop_mediated not reported: fewer than 2 units"}
    z = float(norm.ppf(0.5 + level / 2)) if design is None else interval_quantile(level, design)
    if design is None:
        a, b = float(si.mean()), float(st.mean())
        cov = np.cov(np.vstack([si, st]), ddof=1) / n
    else:
        means, cov = mean_covariance(np.column_stack([si, st]), design)
        a, b = float(means[0]), float(means[1])
    va, vb, c = float(cov[0, 0]), float(cov[1, 1]), float(cov[0, 1])
    if not (np.isfinite(cov).all()):
        return {**nan, "note": "prop_mediated not reported: no variance estimate (one cluster)"}
    return fieller_ratio(a, b, va, vb, c, z)


def fieller_ratio(a: float, b: float, va: float, vb: float, c: float, z: float) -> dict[str, Any]:
    """The Fieller interval of ``a / b`` from the means' (co)variances (see
    :func:`proportion_mediated`); NaN with a note when ``b^2 <= z^2 v_b``."""
    nan = {"estimate": math.nan, "ci_low": math.nan, "ci_high": math.nan, "se": math.nan}
    qa = b * b - z * z * vb
    if not qa > 0:
        return {**nan, "note": PROP_MEDIATED_SUPPRESSED}
    qb = a * b - z * z * c
    qc = a * a - z * z * va
    disc = max(qb * qb - qa * qc, 0.0)
    root = math.sqrt(disc)
    rho = a / b
    se = math.sqrt(max(va - 2 * rho * c + rho * rho * vb, 0.0)) / abs(b)
    return {
        "estimate": rho,
        "ci_low": (qb - root) / qa,
        "ci_high": (qb + root) / qa,
        "se": se,
        "note": "",
    }


# ---------------------------------------------------------------------------------------------
# Adjusted: averages of doubly robust scores
# ---------------------------------------------------------------------------------------------
def adjusted_subgroup_effects(
    scores: pd.DataFrame,
    leaf: Any,
    *,
    level: float = 0.95,
    min_size: int = 2,
    design: Design | None = None,
) -> pd.DataFrame:
    """Covariate-adjusted effects per leaf: means of the doubly robust scores.

    For a leaf ``G`` with ``n_G`` units and scores ``s_i`` (``score_indirect``, ``score_direct``,
    ``score_total``): estimate ``mean_G(s)``, standard error ``sd_G(s) / sqrt(n_G)`` (ddof 1),
    normal interval ``estimate -/+ z_{(1+level)/2} se``. With a ``design`` (clusters, weights)
    the estimate is the leaf's weighted mean and the standard error its cluster-robust one over
    the clusters present in the leaf (:func:`~mlearner_dist.core.design_variance.mean_covariance`:
    ``G_l / (G_l - 1) sum_c u_c^2 / W_l^2``), and with clusters the interval uses Student's t
    with ``G_l - 1`` degrees of freedom
    (:func:`~mlearner_dist.core.design_variance.interval_quantile`).

    Proportion mediated ``rho = mean(s_ind) / mean(s_tot)`` by :func:`proportion_mediated`: the
    Fieller interval, reported only when the total effect's interval excludes 0 (otherwise NaN
    and the ``note`` says why); ``prop_mediated_se`` is the delta-method standard error.

    Parameters
    ----------
    scores : DataFrame, shape (n, >= 1)
        The effects table, row-aligned with ``leaf``: ``score_total`` and, with a mediator,
        ``score_indirect`` and ``score_direct`` (absent or all NaN without a mediator: those
        effects are NaN).
    leaf : array-like, shape (n,)
        Leaf id of every unit.
    level : float in (0, 1)
        Confidence level.
    min_size : int
        Leaves with fewer units get NaN intervals, a ``note``, and a
        :class:`SmallSubgroupWarning`.
    design : Design, optional
        Clusters and weights, row-aligned with ``scores`` (default: independent, equal units).

    Returns
    -------
    DataFrame, one row per leaf (sorted)
        ``leaf``, ``n``, ``e``, ``e_se``, ``e_ci_low``, ``e_ci_high`` for ``e`` in indirect,
        direct, total, prop_mediated, and ``note``.
    """
    if not isinstance(scores, pd.DataFrame):
        raise MLearnerError(f"scores must be a DataFrame (the effects table), got {type(scores)}")
    level = _check_level(level)
    if "score_total" not in scores.columns:
        raise InputValidationError(
            ["column 'score_total' (doubly robust score) is missing from the effects table"]
        )
    lf = _check_leaf(leaf, len(scores))
    if design is not None:
        design.check_length(len(scores), "rows of the effects table")
    z = float(norm.ppf(0.5 + level / 2))
    cols: dict[str, np.ndarray | None] = {}
    for name in ("indirect", "direct", "total"):
        col = f"score_{name}"
        if col not in scores.columns or scores[col].isna().all():
            if name == "total":
                raise InputValidationError(["column 'score_total' is entirely missing"])
            cols[name] = None
            continue
        v = scores[col].to_numpy(dtype=float)
        if not np.isfinite(v).all():
            raise InputValidationError(
                [f"column {col!r} has {int((~np.isfinite(v)).sum())} missing/non-finite scores"]
            )
        cols[name] = v
    rows = []
    small = []
    for g in np.unique(lf):
        idx = lf == g
        n = int(idx.sum())
        row: dict[str, Any] = {"leaf": g, "n": n}
        notes = []
        too_small = n < max(int(min_size), 2)
        if too_small:
            small.append(g)
            notes.append(f"only {n} units (< {max(int(min_size), 2)}): no interval")
        for name, v in cols.items():
            if v is None:
                est = se = math.nan
            elif design is None:
                s = v[idx]
                est = float(s.mean())
                se = float(s.std(ddof=1) / math.sqrt(n)) if n > 1 and not too_small else math.nan
            else:
                mean, cov = mean_covariance(v[idx], design.take(idx))
                est = float(mean[0])
                se = float(math.sqrt(cov[0, 0])) if not too_small else math.nan
            q = z if design is None else interval_quantile(level, design.take(idx))
            row[name], row[f"{name}_se"] = est, se
            row[f"{name}_ci_low"], row[f"{name}_ci_high"] = est - q * se, est + q * se
        pm = {"estimate": math.nan, "ci_low": math.nan, "ci_high": math.nan, "se": math.nan}
        si, st = cols["indirect"], cols["total"]
        if si is not None and st is not None and not too_small:
            pm = proportion_mediated(
                si[idx], st[idx], level=level, design=None if design is None else design.take(idx)
            )
            if pm["note"]:
                notes.append(pm["note"])
        row["prop_mediated"], row["prop_mediated_se"] = pm["estimate"], pm["se"]
        row["prop_mediated_ci_low"] = pm["ci_low"]
        row["prop_mediated_ci_high"] = pm["ci_high"]
        row["note"] = "; ".join(notes)
        rows.append(row)
    if small:
        warnings.warn(
            f"leaves {[int(s) for s in small]} have fewer than {max(int(min_size), 2)} units: "
            "adjusted effects without intervals",
            SmallSubgroupWarning,
            stacklevel=2,
        )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# Unadjusted (reference): within-leaf regressions with a vectorised bootstrap
# ---------------------------------------------------------------------------------------------
def _triu_products(Z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    iu, ju = np.triu_indices(Z.shape[1])
    return Z[:, iu] * Z[:, ju], iu, ju


def _moments_to_square(tri: np.ndarray, iu: np.ndarray, ju: np.ndarray, d: int) -> np.ndarray:
    """(B, d(d+1)/2) upper-triangle moments -> (B, d, d) symmetric moment matrices."""
    S = np.zeros((tri.shape[0], d, d))
    S[:, iu, ju] = tri
    S[:, ju, iu] = tri
    return S


def _effects_from_moments(S: np.ndarray, q: int) -> dict[str, np.ndarray]:
    """Reference effects from moment matrices of z = [1, T, M_1..M_q, Y], shape (B, d, d).

    ``a_j`` = difference in means of ``M_j`` between arms (the slope of ``lm(M_j ~ T)``);
    ``(c', b)`` = coefficients of T and M in ``lm(Y ~ 1 + T + M)``. Degenerate draws (an arm
    missing, singular design) give NaN.
    """
    n, n1 = S[:, 0, 0], S[:, 1, 1]
    n0 = n - n1
    ok = (n1 > 0.5) & (n0 > 0.5)
    with np.errstate(divide="ignore", invalid="ignore"):
        y_idx = 2 + q
        total_dm = S[:, 1, y_idx] / n1 - (S[:, 0, y_idx] - S[:, 1, y_idx]) / n0
        if q == 0:
            total = np.where(ok, total_dm, np.nan)
            nan = np.full_like(total, np.nan)
            return {"indirect": nan, "direct": nan, "total": total, "prop_mediated": nan}
        m_idx = np.arange(2, 2 + q)
        a = S[:, 1, m_idx] / n1[:, None] - (S[:, 0, m_idx] - S[:, 1, m_idx]) / n0[:, None]
        reg = np.arange(0, 2 + q)
        A = S[:, reg[:, None], reg[None, :]]
        rhs = S[:, reg, y_idx]
        good = ok & np.isfinite(A).all(axis=(1, 2))
        if good.any():
            good[good] &= np.linalg.cond(A[good]) < 1e12
        beta = np.full((S.shape[0], 2 + q), np.nan)
        if good.any():
            beta[good] = np.linalg.solve(A[good], rhs[good][..., None])[..., 0]
        indirect = np.sum(a * beta[:, 2:], axis=1)
        direct = beta[:, 1]
        total = indirect + direct
        prop = indirect / total
    indirect = np.where(good, indirect, np.nan)
    direct = np.where(good, direct, np.nan)
    total = np.where(good, total, np.nan)
    prop = np.where(good, prop, np.nan)
    return {"indirect": indirect, "direct": direct, "total": total, "prop_mediated": prop}


def normal_bootstrap_moments(
    total: np.ndarray, m2: np.ndarray, n_bootstrap: int, rng: np.random.Generator
) -> np.ndarray:
    """Resampled moment vectors from the bootstrap's normal approximation, shape (B, k).

    ``total`` is the leaf's summed moment vector and ``m2`` the centred cross-products of the
    units' moment vectors (``n`` times their population covariance): the exact mean and
    covariance of the multinomial bootstrap's resampled sum.
    """
    vals, vecs = np.linalg.eigh(np.asarray(m2, dtype=float))
    root = vecs * np.sqrt(np.clip(vals, 0.0, None))
    noise = rng.standard_normal((n_bootstrap, len(total)))
    return np.asarray(total, dtype=float) + noise @ root.T


def _bootstrap_moments(
    tri: np.ndarray, n_bootstrap: int, rng: np.random.Generator, exact_max_n: int
) -> tuple[np.ndarray, bool]:
    """Moment vectors of ``n_bootstrap`` bootstrap resamples, shape (B, n_moments).

    Exact (``n <= exact_max_n``): a resample's moments are ``sum_i w_i tri_i`` with multinomial
    counts ``w`` (how often unit ``i`` is drawn), processed in blocks of at most ``_BOOT_CELLS``
    counts. Larger leaves: the resampled moment vector is drawn from its normal approximation,
    mean ``sum_i tri_i`` and covariance ``n Cov(tri)`` (population covariance), which are the
    exact first two moments of the multinomial bootstrap; the cost no longer grows with ``n``.

    Returns
    -------
    moments : ndarray, shape (B, n_moments)
    exact : bool
    """
    n = tri.shape[0]
    if n > exact_max_n:
        centred = tri - tri.mean(axis=0)
        # centred.T @ centred = n * population covariance
        m2 = centred.T @ centred
        return normal_bootstrap_moments(tri.sum(axis=0), m2, n_bootstrap, rng), False
    out = np.empty((n_bootstrap, tri.shape[1]))
    block = max(1, min(n_bootstrap, _BOOT_CELLS // max(n, 1)))
    for start in range(0, n_bootstrap, block):
        b = min(block, n_bootstrap - start)
        draws = rng.integers(0, n, size=(b, n))
        flat = (draws + (np.arange(b) * n)[:, None]).ravel()
        counts = np.bincount(flat, minlength=b * n).reshape(b, n).astype(float)
        out[start : start + b] = counts @ tri
    return out, True


def unadjusted_subgroup_effects(
    frame: pd.DataFrame,
    roles: Roles,
    leaf: Any,
    *,
    n_bootstrap: int = 1000,
    level: float = 0.95,
    random_state: int = 0,
    min_size: int = 10,
    exact_max_n: int = 50_000,
) -> pd.DataFrame:
    """The reference's per-leaf effects: ``lm(M ~ T)``, ``lm(Y ~ T + M)``, percentile bootstrap.

    Within leaf ``G``: ``a_j`` is the coefficient of T in ``lm(M_j ~ T)``; ``c'`` and ``b_j`` the
    coefficients of T and ``M_j`` in ``lm(Y ~ T + M_1 + ... + M_q)``. Indirect ``sum_j a_j b_j``,
    direct ``c'``, total ``a b + c'`` (which equals the difference in means of Y between arms, an
    identity of least squares), proportion mediated ``a b / (a b + c')``. Without a mediator only
    the total effect, the difference in means. Intervals: percentiles ``(1 -/+ level) / 2`` of
    ``n_bootstrap`` resamples of the leaf's units (resamples lacking an arm or with a singular
    design are dropped; NaN when more than half are). With ``roles.weight`` the regressions are
    weighted least squares with the analysis weights; with ``roles.cluster`` the resamples draw
    whole clusters (the cluster bootstrap), as a cluster-randomised design requires.

    The regressions use only cross-products of ``z = [1, T, M, Y]``, so each resample costs one
    multinomial count vector times the units' products (1000 draws of a 5,000-unit leaf take
    well under a second). Leaves above ``exact_max_n`` units draw the resampled cross-products
    from their normal approximation (same mean and covariance as the multinomial bootstrap; the
    ``note`` says so), so the cost does not grow with the leaf size.

    Parameters
    ----------
    frame : DataFrame, shape (n, ...)
        Units with the columns of ``roles``, row-aligned with ``leaf``.
    roles : Roles
    leaf : array-like, shape (n,)
    n_bootstrap : int >= 0
        Resamples; 0 gives point estimates with NaN intervals.
    level : float in (0, 1)
    random_state : int
        Seeds the resampling (one stream, leaves in sorted order).
    min_size : int
        Leaves with fewer units, or without both treated and control units, get NaN effects,
        a ``note`` and a :class:`SmallSubgroupWarning`.
    exact_max_n : int
        Largest leaf resampled exactly (see above).

    Returns
    -------
    DataFrame, one row per leaf (sorted)
        ``leaf``, ``n``, ``n_treated``, ``e``, ``e_ci_low``, ``e_ci_high`` for ``e`` in
        indirect, direct, total, prop_mediated (NaN without a mediator except total),
        ``n_bootstrap_used`` and ``note``.
    """
    if not isinstance(frame, pd.DataFrame):
        raise MLearnerError(f"frame must be a pandas DataFrame, got {type(frame).__name__}")
    if not isinstance(roles, Roles):
        raise MLearnerError(f"roles must be a Roles, got {type(roles).__name__}")
    level = _check_level(level)
    if not isinstance(n_bootstrap, (int, np.integer)) or n_bootstrap < 0:
        raise MLearnerError(f"n_bootstrap must be an integer >= 0, got {n_bootstrap!r}")
    cols = [roles.treatment, *roles.mediators, roles.outcome]
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        raise InputValidationError(
            [f"column {c!r} (named in roles) is missing from frame" for c in missing]
        )
    lf = _check_leaf(leaf, len(frame))
    Z = np.column_stack([np.ones(len(frame)), *(frame[c].to_numpy(dtype=float) for c in cols)])
    problems = []
    if not np.isfinite(Z).all():
        problems.append("treatment, mediator or outcome columns hold missing/non-finite values")
    if not np.isin(Z[:, 1], (0.0, 1.0)).all():
        problems.append(f"column {roles.treatment!r} (treatment) must be coded 0/1")
    if problems:
        raise InputValidationError(problems)
    q = len(roles.mediators)
    # the design: weighted regressions with roles.weight, a cluster bootstrap with roles.cluster
    w_all = frame[roles.weight].to_numpy(dtype=float) if roles.weight else None
    cl_all = frame[roles.cluster].to_numpy() if roles.cluster else None
    rng = np.random.default_rng(random_state)
    rows, small = [], []
    for g in np.unique(lf):
        Zg = Z[lf == g]
        n, n1 = Zg.shape[0], int(Zg[:, 1].sum())
        if n < min_size or n1 == 0 or n1 == n:
            small.append(g)
            why = (
                f"only {n} units (< min_size={min_size})"
                if n < min_size
                else "units of one arm only"
            )
            row = _empty_row(g, n, f"{why}: no unadjusted effects")
            row.update(n_treated=n1, n_bootstrap_used=0)
            rows.append(row)
            continue
        tri = _triu_products(Zg)[0]
        design_note = ""
        if w_all is not None:
            wg = w_all[lf == g]
            tri = tri * (wg / wg.mean())[:, None]  # weighted least squares cross-products
        if cl_all is not None:
            # resample whole clusters: a cluster's cross-products are summed into one row
            codes_g, inv = np.unique(cl_all[lf == g], return_inverse=True)
            summed = np.zeros((len(codes_g), tri.shape[1]))
            np.add.at(summed, inv, tri)
            tri = summed
            design_note = f"cluster bootstrap over {len(codes_g)} clusters"
        notes = [design_note] if design_note and n_bootstrap > 0 else []
        moments, exact = (
            _bootstrap_moments(tri, n_bootstrap, rng, exact_max_n)
            if n_bootstrap > 0
            else (None, True)
        )
        if not exact:
            notes.append(
                f"bootstrap by the normal approximation of the resampled moments "
                f"(n > exact_max_n={exact_max_n})"
            )
        rows.append(
            unadjusted_row(g, n, n1, tri.sum(axis=0), moments, n_bootstrap, q, level, notes)
        )
    if small:
        warnings.warn(
            f"leaves {[int(s) for s in small]} have fewer than {min_size} units or lack an arm: "
            "unadjusted effects "
            "are NaN",
            SmallSubgroupWarning,
            stacklevel=2,
        )
    return unadjusted_frame(rows)


def unadjusted_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The rows of :func:`unadjusted_subgroup_effects` as its DataFrame (columns in order)."""
    out = pd.DataFrame(rows)
    order = ["leaf", "n", "n_treated"]
    for name in EFFECT_NAMES:
        order += [name, f"{name}_ci_low", f"{name}_ci_high"]
    return out[[*order, "n_bootstrap_used", "note"]]


def unadjusted_row(
    g: Any,
    n: int,
    n1: int,
    total: np.ndarray,
    moments: np.ndarray | None,
    n_bootstrap: int,
    q: int,
    level: float,
    notes: list[str],
) -> dict[str, Any]:
    """One leaf's reference effects from its summed moment vector and resampled ones.

    Parameters
    ----------
    g, n, n1
        Leaf id, units, treated units.
    total : ndarray, shape (k,)
        Sum over the leaf's units of the upper-triangle products of ``z = [1, T, M, Y]``.
    moments : ndarray, shape (B, k), or None
        Resampled sums (None: no bootstrap).
    n_bootstrap : int
    q : int
        Number of mediators.
    level : float
    notes : list of str
        Notes so far (extended here).
    """
    d = q + 3
    iu, ju = np.triu_indices(d)
    lo_q, hi_q = (1 - level) / 2, (1 + level) / 2
    point = _effects_from_moments(_moments_to_square(np.asarray(total)[None], iu, ju, d), q)
    row: dict[str, Any] = {"leaf": g, "n": n, "n_treated": n1}
    notes = list(notes)
    if moments is not None:
        boot = _effects_from_moments(_moments_to_square(moments, iu, ju, d), q)
        used = int(np.isfinite(boot["total"]).sum())
        if used < n_bootstrap:
            notes.append(f"{n_bootstrap - used} of {n_bootstrap} resamples degenerate")
    else:
        boot, used = None, 0
        notes.append("no bootstrap (n_bootstrap=0): no intervals")
    for name in EFFECT_NAMES:
        row[name] = float(point[name][0])
        lo = hi = math.nan
        if boot is not None and used * 2 >= n_bootstrap:
            vals = boot[name][np.isfinite(boot[name])]
            if vals.size * 2 >= n_bootstrap:
                lo, hi = (float(v) for v in np.quantile(vals, [lo_q, hi_q]))
        row[f"{name}_ci_low"], row[f"{name}_ci_high"] = lo, hi
    if boot is not None and used * 2 < n_bootstrap:
        notes.append("more than half of the resamples degenerate: no intervals")
    row["n_bootstrap_used"] = used
    row["note"] = "; ".join(notes)
    return row


__all__ = [
    "EFFECT_NAMES",
    "PROP_MEDIATED_SUPPRESSED",
    "adjusted_subgroup_effects",
    "fieller_ratio",
    "normal_bootstrap_moments",
    "proportion_mediated",
    "unadjusted_frame",
    "unadjusted_row",
    "unadjusted_subgroup_effects",
]
