"""Step 1 on Spark: cross-fitted nuisances fitted on the driver, scored on every partition.

The plan, per run:

1. Fold and subsampling draw of every unit in a pandas UDF, with the same
   :func:`~mlearner_dist.core.folds.assign_folds` / :func:`~mlearner_dist.core.folds.stable_uniform`
   as the in-memory path (so they do not depend on partitioning).
2. One aggregation: row counts per fold and arm, missing values, duplicate ids, treatment coding,
   whether the mediator is binary.
3. Per fold (once for the ``reference`` estimator): the training rows of each arm are collected to
   the driver, at most ``row_budget`` per arm (the smallest draws, chosen in Spark by
   ``orderBy(u).limit(row_budget)``), and fitted with
   :func:`~mlearner_dist.core.nuisance.fit_fold_models`.
4. One ``mapInPandas`` pass scores every row with the models of its own fold
   (:func:`~mlearner_dist.core.nuisance.predict_nuisances` then
   :func:`~mlearner_dist.core.effects.compute_effects`). The models travel in the closure:
   DataFrame API only, no RDD and no ``sparkContext.broadcast``, so this runs on Spark Connect and
   Databricks serverless too.
5. Diagnostics from Spark aggregations of the scored rows, assembled by the core's one builder
   (:func:`~mlearner_dist.core.nuisance_diagnostics.effects_diagnostics`).

The result equals :func:`~mlearner_dist.core.effects.cross_fit_effects` for the same seed and
settings, whatever the number of partitions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as St

from mlearner_dist.core.effects import (
    compute_effects,
    density_ratio,
    density_ratio_summary,
    effect_columns,
    fold_problems,
)
from mlearner_dist.core.fold_progress import FoldTally, cross_fitting_progress, report_fold
from mlearner_dist.core.folds import assign_folds, check_n_folds, stable_uniform
from mlearner_dist.core.nuisance import (
    FoldModels,
    NuisanceSpec,
    fit_fold_models,
    predict_nuisances,
)
from mlearner_dist.core.nuisance_diagnostics import (
    OVERLAP_BOUNDS,
    binned_auc,
    diagnostic_targets,
    effects_diagnostics,
    model_quality,
    overlap_record,
)
from mlearner_dist.core.roles import Roles
from mlearner_dist.exceptions import ConfigError, InputValidationError

__all__ = ["AUC_BINS", "refuse_design", "spark_cross_fit_effects"]

logger = logging.getLogger(__name__)

#: Histogram bins of predicted probabilities for the AUC aggregation (ties within a bin count 1/2).
AUC_BINS = 4096

_FOLD, _U, _RATIO = "__fold", "__u", "__ratio"


def _persist(sdf: DataFrame, what: str) -> DataFrame:
    """Persist when the engine allows it (Databricks serverless refuses; then recompute)."""
    try:
        return sdf.persist(StorageLevel.MEMORY_AND_DISK)
    except Exception as exc:
        logger.warning("could not persist %s (%s); it will be recomputed", what, exc)
        return sdf


def _diag_name(i: int) -> str:
    return f"__diag{i}"


def _validate(sdf: DataFrame, roles: Roles, n_folds: Any, spec: Any) -> tuple[int, NuisanceSpec]:
    n_folds = check_n_folds(n_folds)
    if not isinstance(spec, NuisanceSpec):
        raise ConfigError(f"spec: expected a NuisanceSpec, got {type(spec).__name__}")
    if not isinstance(roles, Roles):
        raise ConfigError(f"roles: expected a Roles object, got {type(roles).__name__}")
    absent = [c for c in roles.used_columns if c not in sdf.columns]
    if absent:
        raise InputValidationError(
            [f"column {c!r} is not in the Spark DataFrame; check the column roles" for c in absent]
        )
    numeric = (St.NumericType, St.BooleanType)
    problems = []
    for c in (roles.treatment, roles.outcome, *roles.mediators):
        dt = sdf.schema[c].dataType
        if not isinstance(dt, numeric):
            problems.append(f"column {c!r} has Spark type {dt.simpleString()}; it must be numeric")
    if problems:
        raise InputValidationError(problems)
    return int(n_folds), spec


def _checks(base: DataFrame, roles: Roles) -> tuple[dict[tuple[int, int], int], str]:
    """Counts per (fold, arm), and the mediator kind; raise on invalid data."""
    T, uid = roles.treatment, roles.unit_id
    aggs: list[Column] = [
        F.count(F.lit(1)).alias("n"),
        F.countDistinct(uid).alias("n_ids"),
        F.sum(F.when(~F.col(T).cast("double").isin(0.0, 1.0), 1).otherwise(0)).alias("bad_t"),
    ]
    for i, c in enumerate(roles.used_columns):
        aggs.append(F.sum(F.when(F.col(c).isNull(), 1).otherwise(0)).alias(f"null{i}"))
    if len(roles.mediators) == 1:
        m = F.col(roles.mediators[0]).cast("double")
        aggs.append(F.sum(F.when(~m.isin(0.0, 1.0), 1).otherwise(0)).alias("nonbinary_m"))
    row = base.agg(*aggs).collect()[0].asDict()
    problems = []
    for i, c in enumerate(roles.used_columns):
        if row[f"null{i}"]:
            problems.append(
                f"column {c!r} has {row[f'null{i}']} missing values; drop or impute them first"
            )
    if row["n"] != row["n_ids"]:
        problems.append(
            f"column {uid!r} (unit_id) has {row['n'] - row['n_ids']} duplicated ids; one row per "
            "unit"
        )
    if row["bad_t"]:
        problems.append(
            f"column {T!r} (treatment) must be coded 0/1; {row['bad_t']} rows hold other values"
        )
    if problems:
        raise InputValidationError(problems)
    counts = {
        (int(r[_FOLD]), int(r["t"])): int(r["count"])
        for r in base.groupBy(_FOLD, F.col(T).cast("int").alias("t")).count().collect()
    }
    if not roles.has_mediator:
        kind = "none"
    elif len(roles.mediators) == 1 and row["n"] > 0 and row["nonbinary_m"] == 0:
        kind = "binary"
    else:
        kind = "continuous"
    return counts, kind


def _collect_training(
    base: DataFrame, roles: Roles, condition: Column | None, n_arm: tuple[int, int], budget: int
) -> pd.DataFrame:
    """Each arm's training rows, at most ``budget`` per arm (smallest draw first) on the driver."""
    parts = []
    for a in (0, 1):
        rows = base.filter(F.col(roles.treatment).cast("int") == a)
        if condition is not None:
            rows = rows.filter(condition)
        if n_arm[a] > budget:
            rows = rows.orderBy(_U, roles.unit_id).limit(budget)
        parts.append(rows.select(*roles.used_columns).toPandas())
    return pd.concat(parts, ignore_index=True)


def _r2_aggs(i: int, pred: str, target: str, cond: Column) -> list[Column]:
    y, p = F.col(target).cast("double"), F.col(pred)
    return [
        F.sum(F.when(cond, 1).otherwise(0)).alias(f"n{i}"),
        F.sum(F.when(cond, y)).alias(f"sy{i}"),
        F.sum(F.when(cond, y * y)).alias(f"syy{i}"),
        F.sum(F.when(cond, (y - p) * (y - p))).alias(f"sse{i}"),
    ]


def _finite(x: float) -> float | None:
    # 10 significant digits: Spark sums the squares partition by partition, so the last bits of a
    # diagnostic depend on the partitioning while the effects do not (result.json stays identical)
    return float(f"{float(x):.10g}") if x is not None and np.isfinite(x) else None


def _spark_diagnostics(
    scored: DataFrame, roles: Roles, kind: str, n_folds: int, target_cols: dict[str, str]
) -> dict[str, Any]:
    targets = diagnostic_targets(roles, kind)
    T = F.col(target_cols[roles.treatment])
    r2_aggs: list[Column] = []
    for i, d in enumerate(targets):
        if d.metric != "r2":
            continue
        cond = T == float(d.arm) if d.arm is not None else F.lit(True)
        r2_aggs += _r2_aggs(i, d.prediction, target_cols[d.target], cond)
    r2_rows = {int(r["fold"]): r.asDict() for r in scored.groupBy("fold").agg(*r2_aggs).collect()}
    models: dict[str, Any] = {}
    for i, d in enumerate(targets):
        by_fold: list[float | None] = []
        if d.metric == "r2":
            for k in range(n_folds):
                r = r2_rows.get(k)
                n = r[f"n{i}"] if r else 0
                if n < 2:
                    by_fold.append(None)
                    continue
                sst = r[f"syy{i}"] - r[f"sy{i}"] ** 2 / n
                by_fold.append(_finite(1.0 - r[f"sse{i}"] / sst) if sst > 0 else None)
        else:
            cond = T == float(d.arm) if d.arm is not None else F.lit(True)
            y = F.col(target_cols[d.target]).cast("double")
            b = F.least(F.floor(F.col(d.prediction) * AUC_BINS), F.lit(AUC_BINS - 1)).cast("int")
            hist = (
                scored.filter(cond)
                .groupBy("fold", b.alias("bin"))
                .agg(
                    F.sum(F.when(y == 1.0, 1).otherwise(0)).alias("pos"),
                    F.sum(F.when(y == 0.0, 1).otherwise(0)).alias("neg"),
                )
                .collect()
            )
            pos = np.zeros((n_folds, AUC_BINS))
            neg = np.zeros((n_folds, AUC_BINS))
            for r in hist:
                pos[r["fold"], r["bin"]] += r["pos"]
                neg[r["fold"], r["bin"]] += r["neg"]
            by_fold = [_finite(binned_auc(pos[k], neg[k])) for k in range(n_folds)]
        models[d.name] = model_quality(d.metric, by_fold)
    lo, hi = OVERLAP_BOUNDS
    cols = ["propensity", *(["propensity_mx"] if roles.has_mediator else [])]
    aggs = []
    for c in cols:
        aggs += [
            F.min(c).alias(f"{c}_min"),
            F.max(c).alias(f"{c}_max"),
            F.avg(((F.col(c) < lo) | (F.col(c) > hi)).cast("double")).alias(f"{c}_out"),
        ]
    row = scored.agg(*aggs).collect()[0]
    overlap = {
        c: overlap_record(
            _finite(row[f"{c}_min"]), _finite(row[f"{c}_max"]), _finite(row[f"{c}_out"])
        )
        for c in cols
    }
    return {"models": models, "overlap": overlap}


def _spark_density_ratio(scored: DataFrame, t_col: str, bound: float) -> dict[str, Any]:
    """:func:`~mlearner_dist.core.effects.density_ratio_summary` from sums over the treated."""
    raw = F.col(_RATIO)
    w = F.least(raw, F.lit(bound))
    row = (
        scored.filter(F.col(t_col) == 1.0)
        .agg(
            F.count(F.lit(1)).alias("n"),
            F.sum(w).alias("sw"),
            F.sum(w * w).alias("sw2"),
            F.sum(F.when(raw > bound, 1).otherwise(0)).alias("nt"),
            F.max(raw).alias("mx"),
        )
        .collect()[0]
    )
    return density_ratio_summary(
        int(row["n"]),
        float(row["sw"] or 0.0),
        float(row["sw2"] or 0.0),
        int(row["nt"] or 0),
        None if row["mx"] is None else float(row["mx"]),
        bound,
    )


def refuse_design(roles: Roles) -> None:
    """Refuse the designs the Spark cross-fitting does not support yet.

    ``columns.strata``, ``columns.cluster`` and ``columns.weight`` need per-stratum or
    per-cluster assignment probabilities, folds by cluster and design-based variances, which
    the core's in-memory cross-fitting implements; the pipeline's validate and effects stages
    run such designs in memory on the driver (up to ``effects.design_max_n`` units) and never
    call the Spark cross-fitting with them, so nothing runs with a design silently dropped.

    Raises
    ------
    ConfigError
        Naming the setting and what to do.
    """
    if roles.strata:
        raise ConfigError(
            f"columns.strata={list(roles.strata)}: the Spark cross-fitting does not yet use "
            "per-stratum assignment probabilities; the pipeline runs designs in memory "
            "(effects.design_max_n), or use the in-memory MLearner (fit_frame), or leave "
            "columns.strata empty"
        )
    for name, col, what in (
        ("cluster", roles.cluster, "cluster-randomised designs"),
        ("weight", roles.weight, "analysis weights"),
    ):
        if col:
            raise ConfigError(
                f"columns.{name}={col!r}: the Spark cross-fitting does not yet support {what} "
                "(folds, replicates and variances by design); the pipeline runs designs in "
                "memory (effects.design_max_n), or use the in-memory MLearner "
                f"(MLearner.fit_frame), or leave columns.{name} empty"
            )


def spark_cross_fit_effects(
    sdf: DataFrame,
    roles: Roles,
    spec: NuisanceSpec,
    *,
    n_folds: int,
    seed: int,
) -> tuple[DataFrame, dict[str, Any]]:
    """Individual effects with cross-fitted nuisances on Spark.

    Parameters
    ----------
    sdf : pyspark.sql.DataFrame
        One row per unit with the columns named by ``roles``.
    roles : Roles
    spec : NuisanceSpec
        ``row_budget`` caps the rows collected to the driver per arm and fold.
    n_folds : int
        At least 2.
    seed : int
        Seed of the fold hash (``spec.random_state`` seeds the learners and the subsampling).

    Returns
    -------
    effects : pyspark.sql.DataFrame
        The effects table (:func:`~mlearner_dist.core.effects.effect_columns`), persisted when
        the engine allows it; ``unit_id`` keeps the input type.
    diagnostics : dict
        As :func:`~mlearner_dist.core.effects.cross_fit_effects` (AUCs from a
        ``AUC_BINS``-bin histogram), plus ``timings`` in seconds.

    Raises
    ------
    ConfigError
        Bad ``n_folds`` or ``spec``, or ``roles.strata``, ``roles.cluster`` or ``roles.weight``
        set (not supported on Spark yet).
    InputValidationError
        Missing columns, missing values, duplicate ids, a treatment not coded 0/1, or a training
        fold without one arm.
    """
    refuse_design(roles)
    n_folds, spec = _validate(sdf, roles, n_folds, spec)
    t0 = time.perf_counter()
    uid, T = roles.unit_id, roles.treatment
    fold_seed, u_seed = int(seed), int(spec.random_state)
    keys_schema = St.StructType(
        [St.StructField("fold", St.LongType()), St.StructField("u", St.DoubleType())]
    )

    @F.pandas_udf(keys_schema)
    def unit_keys(ids: pd.Series) -> pd.DataFrame:
        return pd.DataFrame(
            {"fold": assign_folds(ids, n_folds, fold_seed), "u": stable_uniform(ids, u_seed)}
        )

    cols = list(dict.fromkeys(roles.used_columns))
    base = (
        sdf.select(*cols)
        .withColumn("__keys", unit_keys(F.col(uid)))
        .select(*cols, F.col("__keys.fold").alias(_FOLD), F.col("__keys.u").alias(_U))
    )
    base = _persist(base, "the units with their folds")
    counts, kind = _checks(base, roles)
    arm_totals = tuple(sum(v for (k, a), v in counts.items() if a == arm) for arm in (0, 1))
    if arm_totals[0] == 0 or arm_totals[1] == 0:
        raise InputValidationError(
            [f"column {T!r} (treatment) holds one arm only; both 0 and 1 are needed"]
        )
    share = arm_totals[1] / (arm_totals[0] + arm_totals[1])
    problems = fold_problems(counts, n_folds, T)
    if problems and spec.estimator != "reference":
        raise InputValidationError(problems)
    budget = int(spec.row_budget)
    t_checks = time.perf_counter()
    fold_models: dict[int, FoldModels] = {}
    training_rows: list[dict[str, Any]] = []
    if spec.estimator == "reference":
        tally = FoldTally()
        with cross_fitting_progress(1, "nuisance models (Spark)") as bar:
            train = _collect_training(base, roles, None, arm_totals, budget)
            models = fit_fold_models(
                train,
                roles,
                spec,
                mediator_kind=kind,
                arm_counts=(arm_totals[0], arm_totals[1]),
                assignment_probability=share,
                on_model=tally,
            )
            report_fold(bar, "in-sample (reference estimator)", sum(arm_totals), tally)
        fold_models = dict.fromkeys(range(n_folds), models)
        training_rows.append({"fold": None, "models": dict(models.n_train)})
    else:
        choices = None
        with cross_fitting_progress(n_folds, "cross-fitting (Spark)") as bar:
            for k in range(n_folds):
                n_arm = (
                    arm_totals[0] - counts.get((k, 0), 0),
                    arm_totals[1] - counts.get((k, 1), 0),
                )
                train = _collect_training(base, roles, F.col(_FOLD) != k, n_arm, budget)
                tally = FoldTally()
                fold_models[k] = fit_fold_models(
                    train,
                    roles,
                    spec,
                    mediator_kind=kind,
                    arm_counts=n_arm,
                    assignment_probability=share,
                    choices=choices,
                    on_model=tally,
                )
                # ``auto`` decides once, on fold 0's training rows (the same rows as in memory)
                choices = fold_models[k].choices
                training_rows.append({"fold": k, "models": dict(fold_models[k].n_train)})
                what = f"fold {k + 1}/{n_folds}"
                if len(train) < sum(n_arm):
                    what += f" ({len(train)} rows collected to the driver)"
                report_fold(bar, what, sum(n_arm), tally)
    t_fit = time.perf_counter()

    out_cols = effect_columns(roles, spec.estimator)
    target_sources = [roles.treatment, roles.outcome, *roles.mediators]
    target_cols = {c: _diag_name(i) for i, c in enumerate(target_sources)}
    target_cols["mu_y1m"] = "mu_y1m"
    fields = [
        St.StructField("unit_id", sdf.schema[uid].dataType),
        St.StructField("fold", St.LongType()),
    ]
    fields += [St.StructField(c, St.DoubleType()) for c in out_cols[2:]]
    fields += [St.StructField(_diag_name(i), St.DoubleType()) for i in range(len(target_sources))]
    with_ratio = roles.has_mediator
    if with_ratio:
        fields.append(St.StructField(_RATIO, St.DoubleType()))
    schema = St.StructType(fields)
    estimator, clip = spec.estimator, float(spec.propensity_clip)
    bound = float(spec.max_density_ratio)

    def score(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from threadpoolctl import threadpool_limits

        # one Spark task per core: OpenMP threads inside a task only oversubscribe the executor
        # (10-20 times slower prediction on a busy 2-core machine)
        limits = threadpool_limits(limits=1)
        try:
            yield from _score_batches(batches)
        finally:
            limits.restore_original_limits()

    def _score_batches(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for pdf in batches:
            if len(pdf) == 0:
                continue
            folds = pdf[_FOLD].to_numpy()
            parts = []
            for k in np.unique(folds):
                rows = pdf[folds == k]
                nuis = predict_nuisances(fold_models[int(k)], rows, roles)
                nuis.insert(1, "fold", np.full(len(rows), int(k), dtype=np.int64))
                eff = compute_effects(
                    nuis,
                    rows,
                    roles,
                    estimator=estimator,
                    propensity_clip=clip,
                    max_density_ratio=bound,
                )
                for i, c in enumerate(target_sources):
                    eff[_diag_name(i)] = rows[c].to_numpy(dtype=np.float64)
                if with_ratio:
                    eff[_RATIO] = density_ratio(
                        eff["propensity"].to_numpy(), eff["propensity_mx"].to_numpy(), clip
                    )
                parts.append(eff)
            yield pd.concat(parts, ignore_index=True)

    scored = _persist(base.mapInPandas(score, schema), "the effects table")
    quality = _spark_diagnostics(scored, roles, kind, n_folds, target_cols)
    ratio = _spark_density_ratio(scored, target_cols[T], bound) if with_ratio else None
    n_units = sum(counts.values())
    base.unpersist()
    t_score = time.perf_counter()
    diagnostics = effects_diagnostics(
        spec,
        fold_models[0],
        mediator_kind=kind,
        n_folds=n_folds,
        n_units=n_units,
        quality=quality,
        training_rows=training_rows,
        density_ratio=ratio,
        timings={
            "checks": t_checks - t0,
            "fit": t_fit - t_checks,
            "score_and_diagnostics": t_score - t_fit,
        },
    )
    logger.info(
        "effects (Spark): %d units, fit %.1f s, scoring and diagnostics %.1f s",
        n_units,
        t_fit - t_checks,
        t_score - t_fit,
    )
    return scored.select(*out_cols), diagnostics
