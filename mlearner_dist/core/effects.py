"""Step 1: individual indirect, direct and total effects from cross-fitted nuisance predictions.

:func:`cross_fit_effects` is the in-memory path: folds from a hash of the unit id, nuisance models
fitted on the other folds (:mod:`mlearner_dist.core.nuisance`), predictions on the held-out fold,
then :func:`compute_effects` turns the nuisance table into effects and doubly robust scores. The
Spark backend runs the same functions per fold and per partition. The diagnostics record
(:func:`~mlearner_dist.core.nuisance_diagnostics.effects_diagnostics`, one builder for both
engines) and its parts live in :mod:`mlearner_dist.core.nuisance_diagnostics` and are re-exported
here.

Effects (``nested``, the default):

    NIE(x) = mu_y1(x) - eta(x),   NDE(x) = eta(x) - mu_y0(x),   TE(x) = NIE(x) + NDE(x)

``reference`` (the paper's plug-in, in-sample, no cross-fitting):

    NIE(x) = mu_Y(1, m1(x), x) - mu_Y(1, m0(x), x),   NDE(x) = mu_Y(1, m0(x), x) - mu_Y(0, m0(x), x)

``total`` is computed as ``indirect + direct``, so the identity holds exactly in floating point.

Weight stabilisation (the documented rule): in the indirect effect's score the treated units'
residuals are weighted by the mediator density ratio w = f(M | T=0, X) / f(M | T=1, X), computed
as ((1 - r) / r) (e / (1 - e)) from the clipped propensities (for a binary mediator the closed
form q_0 / q_1 of the mediator models). w is truncated at ``max_density_ratio`` (default 10);
the number of treated units truncated, the mean of w among the treated (1 in theory) and the
weights' effective sample size are reported in the diagnostics (``density_ratio``), and
``indirect_supported`` is false (with the reasons) when more than 5% of the treated are
truncated, the mean weight leaves [2/3, 3/2] (mass of the controls' mediator distribution the
treated do not cover) or the effective sample size is below 10% of the treated: the data then
cannot support the indirect effect without extrapolating the outcome model.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from mlearner_dist.core.clusters import cluster_codes, cluster_shares
from mlearner_dist.core.fold_progress import FoldTally, cross_fitting_progress, report_fold
from mlearner_dist.core.folds import assign_folds, check_n_folds
from mlearner_dist.core.nuisance import (
    ESTIMATORS,
    NuisanceSpec,
    fit_fold_models,
    infer_mediator_kind,
    nuisance_columns,
    predict_nuisances,
)
from mlearner_dist.core.nuisance_diagnostics import (
    OVERLAP_BOUNDS,
    DiagnosticTarget,
    binned_auc,
    diagnostic_targets,
    effects_diagnostics,
    learner_diagnostics,
    nuisance_diagnostics,
    overlap_mask,
    overlap_summary,
)
from mlearner_dist.core.roles import Roles
from mlearner_dist.core.strata import stratum_codes, stratum_shares
from mlearner_dist.core.validation import design_problems, strata_problems
from mlearner_dist.exceptions import ConfigError, InputValidationError, StageError

__all__ = [
    "OVERLAP_BOUNDS",
    "DiagnosticTarget",
    "attach_design",
    "binned_auc",
    "check_effects_frame",
    "compute_effects",
    "cross_fit_effects",
    "density_ratio",
    "density_ratio_summary",
    "design_blocks",
    "design_summary",
    "diagnostic_targets",
    "effect_columns",
    "fold_problems",
    "leaf_density_ratio",
    "learner_diagnostics",
    "nuisance_diagnostics",
    "overlap_mask",
    "overlap_summary",
]

logger = logging.getLogger(__name__)

SCORE_COLUMNS = ("score_total", "score_indirect", "score_direct")
#: ``indirect_supported`` needs at most this share of truncated treated weights ...
SUPPORT_MAX_TRUNCATED = 0.05
#: ... the treated units' mean density ratio inside these bounds (1 in theory) ...
SUPPORT_MEAN_BOUNDS = (2.0 / 3.0, 1.5)
#: ... and an effective sample size of the weights of at least this share of the treated.
SUPPORT_MIN_RELATIVE_ESS = 0.10


def density_ratio(propensity: np.ndarray, propensity_mx: np.ndarray, clip: float) -> np.ndarray:
    """The untruncated mediator density ratio f(M | T=0, X) / f(M | T=1, X); shape (n,).

    w = ((1 - r) / r) (e / (1 - e)) with e = clip(propensity), r = clip(propensity_mx) to
    [c, 1 - c] (Bayes' rule: P(T=1 | M, X) / P(T=0 | M, X) = f(M | T=1, X) e / (f(M | T=0, X)
    (1 - e))).
    """
    e = np.clip(np.asarray(propensity, dtype=np.float64), clip, 1.0 - clip)
    r = np.clip(np.asarray(propensity_mx, dtype=np.float64), clip, 1.0 - clip)
    return ((1.0 - r) / r) * (e / (1.0 - e))


def density_ratio_summary(
    n_treated: int,
    sum_w: float,
    sum_w2: float,
    n_truncated: int,
    max_raw: float | None,
    bound: float,
) -> dict[str, Any]:
    """Weight diagnostics of the indirect effect from sums over the treated units.

    Parameters
    ----------
    n_treated : int
        Treated units n_1.
    sum_w, sum_w2 : float
        Sums of the truncated ratios w_i = min(raw_i, bound) and of their squares.
    n_truncated : int
        Treated units with raw_i > bound.
    max_raw : float or None
        Largest untruncated ratio among the treated.
    bound : float
        ``max_density_ratio``.

    Returns
    -------
    dict
        ``max_density_ratio``, ``n_treated``, ``n_truncated``, ``share_truncated``,
        ``max_untruncated``, ``mean_weight`` (sum_w / n_1), ``relative_ess``
        ((sum_w)^2 / sum_w2 / n_1), ``indirect_supported`` and ``reasons`` (empty when
        supported); values to 6 significant digits so that engines agree.
    """

    def r6(x: float | None) -> float | None:
        return float(f"{x:.6g}") if x is not None and np.isfinite(x) else None

    n1 = int(n_treated)
    mean_w = sum_w / n1 if n1 else float("nan")
    ess = (sum_w**2 / sum_w2 / n1) if n1 and sum_w2 > 0 else float("nan")
    share = n_truncated / n1 if n1 else float("nan")
    reasons = []
    if n1 and share > SUPPORT_MAX_TRUNCATED:
        reasons.append(
            f"{n_truncated} of {n1} treated units ({share:.1%}) have a mediator density ratio "
            f"above {bound:g} and were truncated"
        )
    lo, hi = SUPPORT_MEAN_BOUNDS
    if n1 and not lo <= mean_w <= hi:
        reasons.append(
            f"the treated units' mean density ratio is {mean_w:.3g} (1 when the treated cover the "
            "controls' mediator values)"
        )
    if n1 and not ess >= SUPPORT_MIN_RELATIVE_ESS:
        reasons.append(f"the weights' effective sample size is {ess:.1%} of the treated units")
    return {
        "max_density_ratio": r6(float(bound)),
        "n_treated": n1,
        "n_truncated": int(n_truncated),
        "share_truncated": r6(share),
        "max_untruncated": r6(max_raw),
        "mean_weight": r6(mean_w),
        "relative_ess": r6(ess),
        "indirect_supported": not reasons,
        "reasons": reasons,
    }


def effect_columns(roles: Roles, estimator: str = "nested") -> list[str]:
    """Columns of the effects table, in order.

    ``unit_id``, ``fold``, ``indirect``, ``direct``, ``total``, the nuisance columns of
    :func:`~mlearner_dist.core.nuisance.nuisance_columns`, then ``score_total``,
    ``score_indirect``, ``score_direct``.
    """
    return [
        "unit_id",
        "fold",
        "indirect",
        "direct",
        "total",
        *nuisance_columns(roles, estimator),
        *SCORE_COLUMNS,
    ]


def _check_choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is unknown; choose one of {list(allowed)}")


def _check_clip(propensity_clip: Any) -> float:
    if (
        isinstance(propensity_clip, bool)
        or not isinstance(propensity_clip, int | float)
        or not 0 <= propensity_clip < 0.5
    ):
        raise ConfigError(f"propensity_clip={propensity_clip!r}: give a number in [0, 0.5)")
    return float(propensity_clip)


def compute_effects(
    nuisances: pd.DataFrame,
    frame: pd.DataFrame,
    roles: Roles,
    *,
    estimator: str,
    propensity_clip: float,
    max_density_ratio: float = float("inf"),
) -> pd.DataFrame:
    """Effects and doubly robust scores from the nuisance predictions.

    With e = clip(propensity), r = clip(propensity_mx), clip to [c, 1 - c], and the mediator
    density ratio w = min(((1-r)/r) (e/(1-e)), max_density_ratio) (see :func:`density_ratio`):

    - psi1 = T/e (Y - mu_y1) + mu_y1, psi0 = (1-T)/(1-e) (Y - mu_y0) + mu_y0
    - psi_cross = T/e w (Y - mu_y1m) + (1-T)/(1-e) (mu_y1m - eta) + eta
    - score_total = psi1 - psi0, score_indirect = psi1 - psi_cross, score_direct = psi_cross - psi0

    Parameters
    ----------
    nuisances : DataFrame of shape (n, ...)
        ``unit_id``, optionally ``fold``, and the nuisance columns (from
        :func:`~mlearner_dist.core.nuisance.predict_nuisances`), row-aligned with ``frame``.
    frame : DataFrame of shape (n, ...)
        The units, with the treatment and outcome columns named by ``roles``.
    roles : Roles
    estimator : {"nested", "reference"}
    propensity_clip : float
        In [0, 0.5).
    max_density_ratio : float
        Truncation of w (> 1; ``inf``: none).

    Returns
    -------
    DataFrame of shape (n, len(effect_columns))
        The effects table (``fold`` only if ``nuisances`` has it). Without a mediator
        ``indirect``, ``direct`` and their scores are NaN.

    Raises
    ------
    ConfigError
        Unknown ``estimator`` or a clip outside [0, 0.5).
    StageError
        ``nuisances`` lacks a column or is not aligned with ``frame``.
    """
    _check_choice("estimator", estimator, ESTIMATORS)
    clip = _check_clip(propensity_clip)
    bound = float(max_density_ratio)
    if not bound > 1.0:
        raise ConfigError(
            f"max_density_ratio={max_density_ratio!r}: give a number > 1 (inf: no truncation)"
        )
    needed = ["unit_id", *nuisance_columns(roles, estimator)]
    absent = [c for c in needed if c not in nuisances.columns]
    if absent:
        raise StageError(
            f"the nuisance table lacks columns {absent} (estimator={estimator!r}); "
            "produce it with predict_nuisances for the same roles and estimator"
        )
    if len(nuisances) != len(frame):
        raise StageError(
            f"the nuisance table has {len(nuisances)} rows but the frame has {len(frame)}; "
            "they must be row-aligned"
        )
    ids = frame[roles.unit_id].to_numpy()
    if not np.array_equal(nuisances["unit_id"].to_numpy(), ids):
        raise StageError(
            "nuisances['unit_id'] is not row-aligned with frame[roles.unit_id]; "
            "predict on the same rows in the same order"
        )
    col = {c: nuisances[c].to_numpy(dtype=np.float64) for c in needed[1:]}
    T = frame[roles.treatment].to_numpy(dtype=np.float64)
    Y = frame[roles.outcome].to_numpy(dtype=np.float64)
    n = len(frame)
    e = np.clip(col["propensity"], clip, 1.0 - clip)
    mu1, mu0 = col["mu_y1"], col["mu_y0"]
    psi1 = T / e * (Y - mu1) + mu1
    psi0 = (1.0 - T) / (1.0 - e) * (Y - mu0) + mu0
    nan = np.full(n, np.nan)
    if roles.has_mediator:
        if estimator == "nested":
            indirect = mu1 - col["eta"]
            direct = col["eta"] - mu0
        else:
            indirect = col["mu_y1_m1"] - col["mu_y1_m0"]
            direct = col["mu_y1_m0"] - col["mu_y0_m0"]
        total = indirect + direct
        w = np.minimum(density_ratio(col["propensity"], col["propensity_mx"], clip), bound)
        mu1m, eta = col["mu_y1m"], col["eta"]
        psi_cross = T / e * w * (Y - mu1m) + (1.0 - T) / (1.0 - e) * (mu1m - eta) + eta
        s_ind, s_dir = psi1 - psi_cross, psi_cross - psi0
    else:
        indirect, direct, total = nan, nan.copy(), mu1 - mu0
        s_ind, s_dir = nan.copy(), nan.copy()
    out: dict[str, Any] = {"unit_id": nuisances["unit_id"].to_numpy()}
    if "fold" in nuisances.columns:
        out["fold"] = nuisances["fold"].to_numpy(dtype=np.int64)
    out.update({"indirect": indirect, "direct": direct, "total": total})
    out.update(col)
    out.update({"score_total": psi1 - psi0, "score_indirect": s_ind, "score_direct": s_dir})
    return pd.DataFrame(out)


def check_effects_frame(frame: pd.DataFrame, roles: Roles) -> list[str]:
    """Every problem that stops step 1 on this frame (empty list: fine).

    Checks: columns present, no missing values, unique unit ids, treatment coded 0/1 with both
    arms present, numeric outcome and mediators, both arms in every stratum, one arm per cluster,
    positive weights (:func:`~mlearner_dist.core.validation.design_problems`).

    Parameters
    ----------
    frame : DataFrame
    roles : Roles

    Returns
    -------
    list of str
        One line per problem: the column, its role, what was found and what to do.
    """
    problems: list[str] = []
    if not isinstance(roles, Roles):
        return [f"roles: expected a Roles object, got {type(roles).__name__}"]
    if not isinstance(frame, pd.DataFrame):
        return [f"frame: expected a pandas DataFrame, got {type(frame).__name__}"]
    role_of = {roles.unit_id: "unit_id", roles.treatment: "treatment", roles.outcome: "outcome"}
    role_of.update({m: "mediator" for m in roles.mediators})
    role_of.update({c: "stratum" for c in roles.strata})
    design_roles = ((roles.cluster, "cluster"), (roles.weight, "weight"))
    role_of.update({c: r for c, r in design_roles if c})
    role_of.update({c: "covariate" for c in roles.covariates})
    absent = [c for c in roles.used_columns if c not in frame.columns]
    for c in absent:
        problems.append(f"column {c!r} ({role_of[c]}) is not in the frame; check the column roles")
    present = [c for c in roles.used_columns if c in frame.columns]
    for c in present:
        k = int(frame[c].isna().sum())
        if k:
            problems.append(
                f"column {c!r} ({role_of[c]}) has {k} missing values; drop or impute them first"
            )
    if roles.unit_id in frame.columns:
        dup = int(frame[roles.unit_id].duplicated().sum())
        if dup:
            problems.append(
                f"column {roles.unit_id!r} (unit_id) has {dup} duplicated ids; one row per unit"
            )
    for c in (roles.outcome, *roles.mediators, *([roles.weight] if roles.weight else [])):
        if c in frame.columns and not pd.api.types.is_numeric_dtype(frame[c].dtype):
            problems.append(
                f"column {c!r} ({role_of[c]}) has dtype {frame[c].dtype}; it must be numeric"
            )
    if roles.treatment in frame.columns:
        t = pd.to_numeric(frame[roles.treatment], errors="coerce")
        bad = frame[roles.treatment][~t.isin([0, 1])].dropna()
        if len(bad):
            problems.append(
                f"column {roles.treatment!r} (treatment) must be coded 0/1; found "
                f"{sorted(map(str, bad.unique()))[:5]}"
            )
        elif t.nunique() < 2:
            problems.append(
                f"column {roles.treatment!r} (treatment) holds one arm only; both 0 and 1 needed"
            )
    if not problems:
        problems.extend(strata_problems(frame, roles))
        problems.extend(design_problems(frame, roles))
    return problems


def fold_problems(counts: Mapping[tuple[int, int], int], n_folds: int, treatment: str) -> list[str]:
    """Every reason the cross-fitting folds cannot be used (empty list: fine).

    A fold with no unit cannot be predicted (and the learners refuse empty input); the training
    folds of a fold (all the others) need both arms.

    Parameters
    ----------
    counts : mapping of (fold, arm) to int
        Units per fold and treatment arm; missing keys count 0.
    n_folds : int
    treatment : str
        Name of the treatment column, for the messages.

    Returns
    -------
    list of str
    """
    n_arm = [sum(counts.get((k, a), 0) for k in range(n_folds)) for a in (0, 1)]
    n = n_arm[0] + n_arm[1]
    problems = []
    for k in range(n_folds):
        held = counts.get((k, 0), 0) + counts.get((k, 1), 0)
        if held == 0:
            problems.append(
                f"unit_id: fold {k} of {n_folds} holds no units ({n} units hashed into "
                f"{n_folds} folds); use fewer folds (effects.n_folds) or more data"
            )
        t0 = n_arm[0] - counts.get((k, 0), 0)
        t1 = n_arm[1] - counts.get((k, 1), 0)
        if t0 == 0 or t1 == 0:
            problems.append(
                f"treatment column {treatment!r}: the training folds of fold {k} hold {t1} "
                f"treated and {t0} controls; use fewer folds or more data"
            )
    return problems


def cross_fit_effects(
    frame: pd.DataFrame,
    roles: Roles,
    spec: NuisanceSpec,
    *,
    n_folds: int,
    seed: int,
    progress: Callable[[str], None] | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Individual effects with cross-fitted nuisances, in memory.

    Folds are ``assign_folds(unit_id, n_folds, seed)`` (balanced within strata with
    ``roles.strata``; whole clusters, balanced by arm, with ``roles.cluster``). ``nested``: for
    each fold k the models are fitted on the other folds
    (:func:`~mlearner_dist.core.nuisance.fit_fold_models`) and predict fold k.
    ``reference``: the models are fitted once on all units and predict in-sample (the ``fold``
    column is still filled). Then :func:`compute_effects`.

    Parameters
    ----------
    frame : DataFrame of shape (n, ...)
        One row per unit with the columns named by ``roles``.
    roles : Roles
    spec : NuisanceSpec
    n_folds : int
        At least 2.
    seed : int
        Seed of the fold hash.
    progress : callable(str), optional
        Called once per fitted fold with a short message.

    Returns
    -------
    effects : DataFrame of shape (n, len(effect_columns))
        The effects table sorted by ``unit_id``.
    diagnostics : dict
        JSON-serialisable: ``estimator``, ``design``, ``mediator_kind``, ``n_folds``, ``n_units``,
        ``models`` (out-of-fold R2/AUC per model and fold), ``overlap`` and ``training_rows``
        (rows used per model and fold).

    Raises
    ------
    ConfigError
        Bad ``n_folds``, ``seed`` or ``spec``.
    InputValidationError
        The frame does not fit the roles (every problem listed), or a training fold misses an arm.
    """
    n_folds = check_n_folds(n_folds)
    if not isinstance(spec, NuisanceSpec):
        raise ConfigError(f"spec: expected a NuisanceSpec, got {type(spec).__name__}")
    problems = check_effects_frame(frame, roles)
    if problems:
        raise InputValidationError(problems)
    frame = frame.sort_values(roles.unit_id, kind="mergesort").reset_index(drop=True)
    codes, clusters = design_blocks(frame, roles)
    folds = assign_folds(frame[roles.unit_id], n_folds, seed, strata=codes, clusters=clusters)
    T = frame[roles.treatment].to_numpy(dtype=np.float64)
    kind = infer_mediator_kind(frame, roles)
    parts: list[pd.DataFrame] = []
    training_rows: list[dict[str, Any]] = []
    share = float(T.mean())
    # the known design: P(T=1) is the whole data's treated share (per stratum with strata);
    # with clusters, the share of treated clusters
    by_stratum = stratum_shares(frame, roles.treatment, roles.strata) if roles.strata else None
    if roles.cluster:
        shares = cluster_shares(frame, roles.treatment, roles.cluster, roles.strata)
        if isinstance(shares, dict):
            by_stratum = shares
        else:
            share = shares
    if spec.estimator == "reference":
        tally = FoldTally()
        with cross_fitting_progress(1, "nuisance models") as bar:
            models = fit_fold_models(
                frame,
                roles,
                spec,
                mediator_kind=kind,
                assignment_probability=share,
                stratum_probabilities=by_stratum,
                on_model=tally,
            )
            report_fold(bar, "in-sample (reference estimator)", len(frame), tally)
        chosen = models
        part = predict_nuisances(models, frame, roles)
        part.insert(1, "fold", folds)
        parts.append(part)
        training_rows.append({"fold": None, "models": dict(models.n_train)})
        if progress is not None:
            progress(f"effects: reference models fitted in-sample on {len(frame)} units")
    else:
        counts = {
            (k, a): int(((folds == k) & (T == a)).sum()) for k in range(n_folds) for a in (0, 1)
        }
        problems = fold_problems(counts, n_folds, roles.treatment)
        if problems:
            raise InputValidationError(problems)
        choices = None
        with cross_fitting_progress(n_folds) as bar:
            for k in range(n_folds):
                train = frame[folds != k]
                tally = FoldTally()
                models = fit_fold_models(
                    train,
                    roles,
                    spec,
                    mediator_kind=kind,
                    assignment_probability=share,
                    stratum_probabilities=by_stratum,
                    choices=choices,
                    on_model=tally,
                )
                # ``auto`` decides once, on the first fold's training set
                choices = models.choices
                chosen = models
                held = frame[folds == k]
                part = predict_nuisances(models, held, roles)
                part.insert(1, "fold", np.full(len(held), k, dtype=np.int64))
                parts.append(part)
                training_rows.append({"fold": k, "models": dict(models.n_train)})
                msg = report_fold(bar, f"fold {k + 1}/{n_folds}", len(train), tally)
                if progress is not None:
                    progress(f"effects: {msg}")
    nuis = pd.concat(parts, ignore_index=True)
    # nested parts come fold by fold: restore the frame's (unit_id-sorted) order
    nuis = nuis.iloc[pd.Index(nuis["unit_id"]).get_indexer(frame[roles.unit_id])]
    nuis = nuis.reset_index(drop=True)
    effects = compute_effects(
        nuis,
        frame,
        roles,
        estimator=spec.estimator,
        propensity_clip=spec.propensity_clip,
        max_density_ratio=spec.max_density_ratio,
    )
    effects = attach_design(effects, frame, roles)
    ratio = None
    if roles.has_mediator:
        T = frame[roles.treatment].to_numpy(dtype=np.float64) == 1.0
        raw = density_ratio(
            effects["propensity"].to_numpy(),
            effects["propensity_mx"].to_numpy(),
            _check_clip(spec.propensity_clip),
        )[T]
        ratio = _density_ratio_from_raw(raw, spec.max_density_ratio)
    diagnostics = effects_diagnostics(
        spec,
        chosen,
        mediator_kind=kind,
        n_folds=n_folds,
        n_units=len(frame),
        quality=nuisance_diagnostics(effects, frame, roles, mediator_kind=kind, n_folds=n_folds),
        training_rows=training_rows,
        density_ratio=ratio,
    )
    if roles.cluster or roles.weight:
        diagnostics["design"] = design_summary(frame, roles)
    return effects, diagnostics


def design_blocks(frame: pd.DataFrame, roles: Roles) -> tuple[np.ndarray | None, Any]:
    """What folds and halves are balanced on: (stratum codes, cluster labels) of every unit.

    Without clusters: the stratum codes (None without strata) and no clusters. With clusters
    (``roles.cluster``): whole clusters are the blocks, balanced within (stratum, arm), so each
    fold and half holds treated and control clusters (the treatment is a cluster attribute).

    Returns
    -------
    codes : ndarray of int, shape (n,), or None
    clusters : ndarray, shape (n,), or None
    """
    codes = stratum_codes(frame, roles.strata) if roles.strata else None
    if not roles.cluster:
        return codes, None
    t = frame[roles.treatment].to_numpy(dtype=np.int64)
    arm_codes = t if codes is None else 2 * codes + t
    return arm_codes, frame[roles.cluster].to_numpy()


def design_summary(frame: pd.DataFrame, roles: Roles) -> dict[str, Any]:
    """JSON-ready description of the cluster and weight design of the analysed units.

    Returns
    -------
    dict
        ``cluster`` (column), ``n_clusters``, ``treated_clusters``, ``cluster_size`` (min,
        median, max) with a cluster column; ``weight`` (column), ``weight_sum``, ``weight_min``,
        ``weight_max`` with a weight column; ``treatment_probability`` (the known P(T=1) of a
        cluster design without strata).
    """
    out: dict[str, Any] = {}
    if roles.cluster:
        sizes = frame.groupby(roles.cluster, sort=True).size()
        by_cluster = frame.groupby(roles.cluster, sort=True)[roles.treatment].first()
        out.update(
            cluster=roles.cluster,
            n_clusters=len(sizes),
            treated_clusters=int((by_cluster == 1).sum()),
            cluster_size={
                "min": int(sizes.min()),
                "median": float(sizes.median()),
                "max": int(sizes.max()),
            },
        )
        if not roles.strata:
            out["treatment_probability"] = float((by_cluster == 1).mean())
    if roles.weight:
        w = frame[roles.weight].to_numpy(dtype=float)
        out.update(
            weight=roles.weight,
            weight_sum=float(w.sum()),
            weight_min=float(w.min()),
            weight_max=float(w.max()),
        )
    return out


def attach_design(effects: pd.DataFrame, frame: pd.DataFrame, roles: Roles) -> pd.DataFrame:
    """Add the design columns ``design_cluster`` (cluster code) and ``design_weight``.

    Only when ``roles.cluster`` or ``roles.weight`` is set (the default effects table is
    unchanged). ``effects`` and ``frame`` are row-aligned. Every later variance reads the
    design from these columns (:func:`mlearner_dist.core.design_variance.design_of`), so it
    travels with the rows through re-orderings and halves.
    """
    if not (roles.cluster or roles.weight):
        return effects
    effects = effects.copy()
    if roles.cluster:
        effects["design_cluster"] = cluster_codes(frame, roles.cluster)
    if roles.weight:
        effects["design_weight"] = frame[roles.weight].to_numpy(dtype=float)
    return effects


def leaf_density_ratio(
    effects: pd.DataFrame,
    treatment: np.ndarray,
    leaf: np.ndarray,
    *,
    propensity_clip: float,
    max_density_ratio: float,
) -> dict[int, dict[str, Any]]:
    """:func:`density_ratio_summary` of every leaf, over the leaf's treated units.

    The whole-sample diagnostic can hide a subgroup in which the treatment moves the mediator
    so far that few treated units have control-like mediator values; there the subgroup's
    indirect effect rests on the outcome model's extrapolation (docs/method.md, "Where the
    indirect effect's intervals do not hold").

    Parameters
    ----------
    effects : DataFrame of shape (n, ...)
        The effects table with ``propensity`` and ``propensity_mx``.
    treatment : ndarray of shape (n,)
        T in {0, 1}, row-aligned with ``effects``.
    leaf : ndarray of shape (n,)
        Leaf id of every unit.
    propensity_clip, max_density_ratio : float
        As in :func:`compute_effects`.

    Returns
    -------
    dict of int to dict
        Leaf id -> the summary (``relative_ess``, ``mean_weight``, ``indirect_supported``,
        ``reasons``, ...); leaves without treated units are absent.
    """
    raw = density_ratio(
        effects["propensity"].to_numpy(),
        effects["propensity_mx"].to_numpy(),
        _check_clip(propensity_clip),
    )
    treated = np.asarray(treatment, dtype=np.float64) == 1.0
    leaf = np.asarray(leaf)
    out = {}
    for lf in np.unique(leaf[treated]):
        out[int(lf)] = _density_ratio_from_raw(raw[treated & (leaf == lf)], max_density_ratio)
    return out


def _density_ratio_from_raw(raw: np.ndarray, bound: float) -> dict[str, Any]:
    """:func:`density_ratio_summary` from the treated units' untruncated ratios."""
    w = np.minimum(raw, bound)
    return density_ratio_summary(
        len(raw),
        float(w.sum()),
        float((w**2).sum()),
        int((raw > bound).sum()),
        float(raw.max()) if len(raw) else None,
        float(bound),
    )
