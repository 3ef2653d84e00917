"""Calibration of the heterogeneity threshold: null replicates, order-statistic thresholds, splits.

Heterogeneity is declared when ``p_leaf`` (the smallest interaction p-value over the tested
configurations) falls below a threshold. ``p_leaf`` is the minimum over data-driven choices
(effects, embedding, K, tree), so it is far from uniform under the null and the nominal level is
not a valid threshold. Two valid ways are built here:

* **null replicates** (:func:`make_null_replicate`, :func:`null_threshold`,
  :func:`monte_carlo_pvalue`): the whole selection is re-run on B copies of the user's data in
  which the treatment is re-randomised and every effect is constant; the threshold is a low order
  statistic of the B null ``p_leaf`` values;
* **sample splitting** (:func:`split_sample`): discover on one half, test the discovered profile
  once on the other half, where its p-value is an ordinary p-value.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from mlearner_dist.core.clusters import permute_between_clusters
from mlearner_dist.core.folds import cluster_blocks, unit_hash
from mlearner_dist.core.progress import Progress
from mlearner_dist.core.roles import Roles
from mlearner_dist.core.strata import permute_within_strata
from mlearner_dist.exceptions import InputValidationError, MLearnerError

logger = logging.getLogger(__name__)

#: ``map_fn(func, items) -> list``: applies ``func`` to every item and returns the results in the
#: order of ``items``. The default runs them one after another in this process; backends provide
#: versions that spread the items over Dask workers or Spark tasks.
MapFn = Callable[[Callable[[Any], Any], Sequence[Any]], list[Any]]

CALIBRATION_MODES = ("fixed", "null", "split")


def make_null_replicate(
    frame: pd.DataFrame,
    roles: Roles,
    *,
    rng: np.random.Generator,
    shift_mediator: float | Sequence[float] | np.ndarray | None,
    shift_outcome: float,
) -> pd.DataFrame:
    """One null replicate of the data: treatment re-randomised, every effect constant.

    Construction, for units ``i = 1..n`` with observed ``(X_i, T_i, M_i, Y_i)`` and the average
    effects ``dM`` (one per mediator) and ``dY`` estimated on the observed data (e.g. differences
    in means between arms):

    1. ``T*`` is a uniformly random permutation of ``T`` (the same number treated), so ``T*`` is
       independent of ``(X, M, Y, T)``. With strata (``roles.strata``) ``T`` is permuted within
       each stratum (:func:`~mlearner_dist.core.strata.permute_within_strata`): each stratum
       keeps its number treated, as a re-run of a design randomised within strata would, and
       ``T*`` is independent of ``(X, M, Y, T)`` given the stratum. With a cluster column
       (``roles.cluster``) the clusters' treatments are permuted among the clusters
       (:func:`~mlearner_dist.core.clusters.permute_between_clusters`, within strata when both
       are given): every cluster keeps one arm and the number of treated clusters is kept.
    2. A continuous column ``V`` (outcome or mediator) with shift ``d`` becomes
       ``V* = V + (T*_i - T_i) d = (V - T d) + T* d``: the observed average effect is removed
       with the real assignment and added back with the new one. ``V - T d`` is the unit's value
       put on the control scale; under constant effects it equals the control potential value
       ``V(0)`` up to the error of ``d``.
    3. A binary column (values in {0, 1}) stays binary: with ``p = |d|``, if ``d >= 0`` units with
       ``T* = 1`` and ``V = 0`` switch to 1 with probability ``p`` and units with ``T* = 0`` and
       ``V = 1`` switch to 0 with probability ``p`` (roles reversed if ``d < 0``). For every
       ``x``, ``P(V* = 1 | T* = 1, x) - P(V* = 1 | T* = 0, x) = p(1 - m(x)) + p m(x) = p``
       with ``m(x) = P(V = 1 | x)``: a constant additive effect ``d``.
    4. ``X`` and the unit ids are kept unchanged.

    So in a replicate the effect of ``T*`` on each mediator and on the outcome is the same
    constant for every covariate value: no leaf x treatment interaction exists for any partition
    of ``X``, whatever the selection chooses, while ``X`` and the ``(M, Y)`` relation keep the
    user's joint distribution (only the treatment effect is made constant).

    **Why the Type I error holds.** Under the sharp null of constant effects on M and Y
    (``M_i(1) - M_i(0) = dM``, ``Y_i(1) - Y_i(0) = dY``) in a completely randomised experiment,
    ``(X, M(0), Y(0), T)`` and ``(X, M(0), Y(0), T*)`` have the same distribution. With the true
    ``dM, dY`` the replicate is ``(X, M(0) + T* dM, Y(0) + T* dY, T*)``, so the observed data and
    the B replicates are exchangeable, and so are the B + 1 values of ``p_leaf``: each comes from
    the *same* data-driven selection (effects, embedding, K-means, trees, choice, test) applied to
    exchangeable data sets. The rank of the observed ``p_leaf`` among them is then uniform, which
    makes :func:`null_threshold` and :func:`monte_carlo_pvalue` exact level-alpha rules (ties
    break conservatively). With ``dM, dY`` estimated, and under the composite null (effects
    constant in X but not across units), exchangeability holds approximately, with an error
    driven by the estimation error of the average effects. Observational designs: ``T*`` is
    independent of ``X``, so a replicate is a randomised version of the data; the calibration then
    ignores confounding in the treatment assignment.

    Parameters
    ----------
    frame : DataFrame, shape (n, >= 3)
        Validated units with the columns named by ``roles``.
    roles : Roles
    rng : numpy.random.Generator
        Source of the permutation (and of the flips of binary columns).
    shift_mediator : float or sequence of float, optional
        ``dM`` per mediator (in ``roles.mediators`` order); None exactly when there is no
        mediator.
    shift_outcome : float
        ``dY``.

    Returns
    -------
    DataFrame, shape (n, frame's columns)
        A copy of ``frame`` with the treatment, mediator and outcome columns replaced.
    """
    if not isinstance(rng, np.random.Generator):
        raise MLearnerError(
            f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), got "
            f"{type(rng).__name__}"
        )
    shifts_m = _check_replicate_inputs(frame, roles, shift_mediator, shift_outcome)
    t = frame[roles.treatment].to_numpy()
    if roles.cluster:
        t_star = permute_between_clusters(t, frame, roles.cluster, roles.strata, rng)
    else:
        t_star = permute_within_strata(t, frame, roles.strata, rng)
    delta = t_star.astype(float) - t.astype(float)
    out = frame.copy()
    out[roles.treatment] = pd.Series(t_star, index=frame.index).astype(frame[roles.treatment].dtype)
    columns = [*roles.mediators, roles.outcome]
    shifts = [*shifts_m, float(shift_outcome)]
    for col, d in zip(columns, shifts, strict=True):
        v = frame[col].to_numpy(dtype=float)
        if _is_binary(v):
            out[col] = _flip_binary(v, t_star, d, rng).astype(frame[col].dtype)
        else:
            out[col] = v + delta * d
    return out


def null_threshold(null_p: Sequence[float] | np.ndarray, alpha: float) -> float:
    """The threshold for ``p_leaf`` from its null sample, with ``P(declare | null) <= alpha``.

    With ``B`` null values sorted ``p_(1) <= ... <= p_(B)`` and ``k = floor(alpha (B + 1))``, the
    threshold is ``p_(k)`` and heterogeneity is declared when ``p_leaf < p_(k)`` (strictly). If the
    observed ``p_leaf`` and the null values are exchangeable, ``p_leaf < p_(k)`` means that it is
    among the ``k`` smallest of the ``B + 1`` values, an event of probability at most
    ``k / (B + 1) <= alpha`` (ties only lower it).

    Too few replicates: when ``alpha (B + 1) < 1`` (e.g. ``B = 10``, ``alpha = 0.05``) no order
    statistic gives level alpha; the threshold is 0.0 (never declare) and a warning is logged
    asking for ``B >= ceil(1 / alpha) - 1``. With ``B = 19``, ``alpha = 0.05``: ``k = 1``, the
    threshold is the smallest null value.

    Parameters
    ----------
    null_p : sequence of float, shape (B,)
        ``p_leaf`` of each null replicate, in [0, 1].
    alpha : float in (0, 1)

    Returns
    -------
    float
    """
    p = _check_pvalues(null_p, "null_p")
    if not (isinstance(alpha, (int, float, np.floating)) and 0.0 < float(alpha) < 1.0):
        raise MLearnerError(f"alpha must be in (0, 1), got {alpha!r}")
    b = p.size
    k = math.floor(float(alpha) * (b + 1) + 1e-9)
    if k < 1:
        need = math.ceil(1.0 / float(alpha)) - 1
        logger.warning(
            "null_threshold: %d null replicates cannot give level alpha=%g (need >= %d); "
            "threshold 0, heterogeneity is never declared",
            b,
            alpha,
            need,
        )
        return 0.0
    return float(np.sort(p)[k - 1])


def monte_carlo_pvalue(observed: float, null_p: Sequence[float] | np.ndarray) -> float:
    """Monte Carlo p-value of the observed ``p_leaf``: ``(1 + #{null <= observed}) / (B + 1)``.

    Small ``p_leaf`` is evidence of heterogeneity, so the null values at least as extreme are those
    ``<= observed``. Under exchangeability ``P(mc_pvalue <= u) <= u`` for every ``u``.

    Parameters
    ----------
    observed : float in [0, 1]
    null_p : sequence of float, shape (B,)

    Returns
    -------
    float in [1 / (B + 1), 1]
    """
    p = _check_pvalues(null_p, "null_p")
    obs = float(observed)
    if not 0.0 <= obs <= 1.0:
        raise MLearnerError(f"observed must be a p-value in [0, 1], got {observed!r}")
    return float((1 + int(np.sum(p <= obs))) / (p.size + 1))


def sequential_map(
    func: Callable[[Any], Any],
    items: Sequence[Any],
    *,
    progress: Callable[[int, int, float], None] | None = None,
) -> list[Any]:
    """The default :data:`MapFn`: ``[func(x) for x in items]``, reporting each finished item.

    ``progress(done, total, seconds)`` is called after every item.
    """
    started = time.perf_counter()
    out = []
    for i, item in enumerate(items, start=1):
        out.append(func(item))
        if progress is not None:
            progress(i, len(items), time.perf_counter() - started)
    return out


def progress_map(
    func: Callable[[Any], Any], items: Sequence[Any], *, desc: str, every: float = 0.1
) -> list[Any]:
    """:func:`sequential_map` with a :class:`~mlearner_dist.core.progress.Progress` line.

    ``every``: the fraction of the items between two log lines when stderr is not a terminal
    (1.0: only the end, for loops that take a fraction of a second).
    """
    with Progress(len(items), desc, every=every) as bar:
        return sequential_map(func, items, progress=lambda done, total, s: bar.update())


def fixed_calibration(threshold: float, alpha: float) -> dict[str, Any]:
    """The calibration record of ``calibration.mode: fixed`` (a threshold given in advance)."""
    return {
        "mode": "fixed",
        "alpha": float(alpha),
        "threshold": float(threshold),
        "n_replicates": 0,
        "null_p_leaf": [],
        "mc_pvalue": None,
        "how": f"fixed threshold {threshold} from the configuration (the reference's value comes "
        "from its simulated null scenarios)",
    }


def project_calibration_seconds(
    n_replicates: int, seconds_per_replicate: float, parallel: int = 1
) -> float:
    """Projected wall time of the null calibration: ``ceil(B / P) * s``.

    ``B`` replicates of about ``s`` seconds each run ``P`` at a time (one per single-thread
    worker), so ``ceil(B / P)`` rounds of ``s`` seconds.
    """
    p = max(1, int(parallel))
    return float(math.ceil(int(n_replicates) / p) * float(seconds_per_replicate))


def null_calibration(
    null_p_leaf: Callable[[int], float],
    n_replicates: int,
    alpha: float,
    observed_p_leaf: float,
    *,
    map_fn: MapFn | None = None,
    seconds_per_replicate: float | None = None,
    parallel: int = 1,
) -> dict[str, Any]:
    """Run the null replicates and turn their ``p_leaf`` values into a threshold.

    Parameters
    ----------
    null_p_leaf : callable
        ``null_p_leaf(r) -> float``: the whole selection re-run on null replicate ``r``. It must
        depend only on ``r`` (its seeds derive from it), so the result does not depend on where
        or in which order replicates run.
    n_replicates : int
        B, at least 1.
    alpha : float in (0, 1)
    observed_p_leaf : float
        ``p_leaf`` of the observed data (for the Monte Carlo p-value).
    map_fn : callable, optional
        How the replicates are run (:data:`MapFn`); default :func:`sequential_map`.
    seconds_per_replicate : float, optional
        Expected cost of one replicate (e.g. the observed selection's wall time). When given,
        the projected time ``B * seconds_per_replicate / parallel`` is logged before the first
        replicate starts and recorded as ``projected_seconds``.
    parallel : int
        Replicates that run at the same time (1 for the default sequential map).

    Returns
    -------
    dict
        ``mode``, ``alpha``, ``threshold`` (:func:`null_threshold`), ``n_replicates``,
        ``null_p_leaf`` (in replicate order), ``mc_pvalue`` (:func:`monte_carlo_pvalue`),
        ``mc_se`` (its Monte Carlo standard error ``sqrt(p (1 - p) / B)``), ``seconds`` and
        ``how``.
    """
    if int(n_replicates) < 1:
        raise MLearnerError(f"n_replicates={n_replicates!r}: give at least 1 null replicate")
    reps = list(range(int(n_replicates)))
    projected = None
    if seconds_per_replicate is not None:
        projected = project_calibration_seconds(len(reps), seconds_per_replicate, parallel)
        logger.info(
            "calibration: %d null replicates at about %.1f s each on %d parallel worker(s): "
            "projected %.0f s (%.1f min)",
            len(reps),
            seconds_per_replicate,
            max(1, int(parallel)),
            projected,
            projected / 60,
        )
    started = time.perf_counter()
    if map_fn is None:
        null_p = progress_map(null_p_leaf, reps, desc="null replicates")
    else:
        null_p = list(map_fn(null_p_leaf, reps))
    null_p = [float(p) for p in null_p]
    thr = null_threshold(null_p, alpha)
    mc = monte_carlo_pvalue(observed_p_leaf, null_p)
    return {
        "mode": "null",
        "alpha": float(alpha),
        "threshold": float(thr),
        "n_replicates": len(null_p),
        "null_p_leaf": null_p,
        "mc_pvalue": float(mc),
        "mc_se": float(math.sqrt(mc * (1.0 - mc) / len(null_p))),
        "seconds": round(time.perf_counter() - started, 2),
        **({"projected_seconds": round(projected, 1)} if projected is not None else {}),
        "how": (
            f"the whole selection (effects, embedding, K-means, trees, tests) re-run on "
            f"{len(null_p)} null replicates of these data (treatment re-randomised, constant "
            f"effect equal to the average effect); threshold = the alpha={alpha} order statistic "
            "of their p_leaf values"
        ),
    }


def average_shifts(frame: pd.DataFrame, roles: Roles) -> tuple[np.ndarray | None, float]:
    """Difference in means (treated - control) of each mediator and of the outcome.

    These are the constant effects the null replicates keep (:func:`make_null_replicate`). With
    strata the difference is taken within each stratum and averaged with the strata's sizes as
    weights, sum_s (n_s / n) (mean_s(V | T=1) - mean_s(V | T=0)), the unbiased estimate when the
    assignment probability differs between strata (every stratum holds both arms).

    Returns
    -------
    shift_mediator : ndarray of shape (q,), or None without a mediator
    shift_outcome : float
    """
    t = frame[roles.treatment].to_numpy() == 1

    def shift(col: str) -> float:
        if not roles.strata:
            return float(frame.loc[t, col].mean() - frame.loc[~t, col].mean())
        v = pd.Series(frame[col].to_numpy(dtype=float))
        by = [frame[c].reset_index(drop=True) for c in roles.strata]
        means = v.groupby([*by, pd.Series(t)]).mean().unstack()
        sizes = v.groupby(by).size()
        diff = (means[True] - means[False]).reindex(sizes.index)
        return float(np.sum(diff.to_numpy() * sizes.to_numpy()) / sizes.sum())

    shift_y = shift(roles.outcome)
    if not roles.has_mediator:
        return None, shift_y
    shift_m = np.array([shift(m) for m in roles.mediators], dtype=float)
    return shift_m, shift_y


def in_discovery_half(hashes: np.ndarray) -> np.ndarray:
    """Whether each unit is in the discovery half, from its ``unit_hash(id, "split", seed)``.

    The unit-level rule of :func:`split_sample` (``h < 2^63``) on its own, so that Spark
    partitions can apply it to their rows without seeing the other units.
    """
    return np.asarray(hashes, dtype=np.uint64) < np.uint64(2**63)


def split_sample(
    unit_ids: Sequence[Any] | np.ndarray | pd.Series,
    seed: int,
    *,
    strata: np.ndarray | None = None,
    clusters: np.ndarray | None = None,
) -> np.ndarray:
    """Discovery / test halves for the ``split`` calibration, from the hash of the unit ids.

    A unit is in the discovery half when ``unit_hash(id, "split", seed) < 2^63``
    (:func:`mlearner_dist.core.folds.unit_hash`, the package's one hash of unit ids). The
    assignment depends only on the id and the seed: not on row order, partitioning or the number
    of workers. The halves are about equal (binomial). With ``strata`` the units of each stratum
    are ordered by the same hash and alternate between the halves, so every stratum is split in
    two halves that differ by at most one unit (a unit's half then also depends on the other
    units of its stratum).

    Parameters
    ----------
    unit_ids : array-like, shape (n,)
        Unique unit identifiers, ``n >= 2``.
    seed : int
    strata : ndarray of int, shape (n,), optional
        Stratum code of every unit (:func:`~mlearner_dist.core.strata.stratum_codes`).
    clusters : ndarray, shape (n,), optional
        Cluster label of every unit: whole clusters alternate between the halves (ordered by
        stratum, then the hash of the cluster label), so no cluster is split.

    Returns
    -------
    ndarray of bool, shape (n,)
        True for the discovery half, False for the test half.

    Raises
    ------
    InputValidationError
        Missing or repeated ids, or a hash that puts every unit in one half.
    """
    ids = np.asarray(unit_ids)
    if ids.ndim != 1 or ids.size < 2:
        raise InputValidationError([f"unit_ids must be 1-D with >= 2 ids; got shape {ids.shape}"])
    if not isinstance(seed, (int, np.integer)):
        raise MLearnerError(f"seed must be an integer, got {seed!r}")
    if pd.isna(pd.Series(ids)).any():
        raise InputValidationError(["unit_ids has missing values: every unit needs an id"])
    if not pd.Index(ids).is_unique:
        raise InputValidationError(["unit_ids has repeated ids: ids must be unique per unit"])
    h = unit_hash(ids, "split", int(seed))
    if clusters is not None:
        mask = cluster_blocks(h, clusters, strata, "split", int(seed), 2) == 0
    elif strata is None:
        mask = in_discovery_half(h)
    else:
        codes = np.asarray(strata)
        if codes.shape != h.shape:
            raise InputValidationError(
                [f"strata: {codes.shape[0]} stratum codes for {h.shape[0]} unit ids; give one each"]
            )
        order = np.lexsort((h, codes))
        mask = np.empty(h.size, dtype=bool)
        mask[order] = np.arange(h.size) % 2 == 0
    if mask.all() or not mask.any():
        raise InputValidationError(
            [f"the hash put all {ids.size} units in one half: use more units or another seed"]
        )
    return mask


# ---------------------------------------------------------------------------------------------
def _is_binary(v: np.ndarray) -> bool:
    return bool(np.isin(v, (0.0, 1.0)).all())


def _flip_binary(
    v: np.ndarray, t_star: np.ndarray, d: float, rng: np.random.Generator
) -> np.ndarray:
    p = abs(d)
    u = rng.random(v.size)
    flip = u < p
    out = v.copy()
    up_arm, down_arm = (1, 0) if d >= 0 else (0, 1)
    out[(t_star == up_arm) & (v == 0) & flip] = 1.0
    out[(t_star == down_arm) & (v == 1) & flip] = 0.0
    return out


def _check_replicate_inputs(
    frame: pd.DataFrame, roles: Roles, shift_mediator: Any, shift_outcome: Any
) -> list[float]:
    if not isinstance(frame, pd.DataFrame):
        raise MLearnerError(f"frame must be a pandas DataFrame, got {type(frame).__name__}")
    if not isinstance(roles, Roles):
        raise MLearnerError(f"roles must be a Roles, got {type(roles).__name__}")
    problems = [
        f"column {c!r} (named in roles) is missing from frame"
        for c in roles.used_columns
        if c not in frame.columns
    ]
    if problems:
        raise InputValidationError(problems)
    t = frame[roles.treatment]
    vals = set(pd.unique(t).tolist())
    if not vals <= {0, 1} or len(vals) < 2:
        problems.append(
            f"column {roles.treatment!r} (treatment) must be 0/1 with both arms; found "
            f"{sorted(vals, key=str)}"
        )
    for c in (*roles.mediators, roles.outcome):
        v = frame[c].to_numpy(dtype=float)
        if not np.isfinite(v).all():
            problems.append(f"column {c!r} has {int((~np.isfinite(v)).sum())} non-finite values")
    if not (isinstance(shift_outcome, (int, float, np.number)) and math.isfinite(shift_outcome)):
        problems.append(f"shift_outcome must be a finite number, got {shift_outcome!r}")
    shifts: list[float] = []
    if roles.has_mediator:
        if shift_mediator is None:
            problems.append(
                f"shift_mediator is None but roles name mediators {list(roles.mediators)}: "
                "give their average effects"
            )
        else:
            shifts = [float(s) for s in np.atleast_1d(np.asarray(shift_mediator, dtype=float))]
            if len(shifts) != len(roles.mediators) or not all(map(math.isfinite, shifts)):
                problems.append(
                    f"shift_mediator={shift_mediator!r}: give one finite shift per mediator "
                    f"{list(roles.mediators)}"
                )
    elif shift_mediator is not None:
        problems.append("shift_mediator was given but roles name no mediator: pass None")
    for c, d in zip([*roles.mediators, roles.outcome], [*shifts, shift_outcome], strict=False):
        if c in frame.columns and _is_binary(frame[c].to_numpy(dtype=float)):
            if isinstance(d, (int, float)) and abs(float(d)) > 1:
                problems.append(f"column {c!r} is binary but its shift {d} is outside [-1, 1]")
    if problems:
        raise InputValidationError(problems)
    return shifts


def _check_pvalues(values: Any, name: str) -> np.ndarray:
    p = np.asarray(values, dtype=float).ravel()
    if p.size == 0:
        raise MLearnerError(f"{name} is empty: run at least one null replicate")
    if not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        raise MLearnerError(f"{name} must hold p-values in [0, 1]; got {p.tolist()[:10]}...")
    return p


__all__ = [
    "in_discovery_half",
    "make_null_replicate",
    "monte_carlo_pvalue",
    "null_threshold",
    "split_sample",
]
