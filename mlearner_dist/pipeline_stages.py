"""What each stage of the pipeline does: the run functions of the stage registry.

Each ``run_<stage>(ctx)`` reads only earlier stages' outputs under ``ctx.output``, writes its own
(atomically) and returns a :class:`~mlearner_dist.stages.Manifest` with its row counts; the driver
(:func:`mlearner_dist.pipeline.run_pipeline`) fingerprints, skips, times and records them. The
math is in ``core``: these functions move data between Spark, Dask and the core functions that the
in-memory :class:`~mlearner_dist.core.estimator.MLearner` also uses.
"""

from __future__ import annotations

import dataclasses
import logging
import pickle
import uuid
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from mlearner_dist import __version__
from mlearner_dist.config import estimator_params
from mlearner_dist.core.effect_summaries import average_effects, mark_post_selection, subgroup_table
from mlearner_dist.core.effects import cross_fit_effects
from mlearner_dist.core.estimator import MLearner
from mlearner_dist.core.honest_calibration import cross_split_stability
from mlearner_dist.core.profile_tree import ProfileTree
from mlearner_dist.core.roles import Roles
from mlearner_dist.core.row_account import RowAccount
from mlearner_dist.core.score_calibration import ScoreReplicateBasis
from mlearner_dist.core.score_selection import target_score
from mlearner_dist.core.selection import (
    ProfileChoice,
    choose_profile,
    decision_target,
    profiles_document,
    resolve_effect_names,
    tree_pvalues,
)
from mlearner_dist.core.subgroup_statistics import (
    average_effects_from_sums,
    pool_sums,
    subgroup_table_from_sums,
)
from mlearner_dist.exceptions import ConfigError, RowAccountError, StageError, TrackingError
from mlearner_dist.record import analysis_record
from mlearner_dist.result_schema import SCHEMA_VERSION, validate_result
from mlearner_dist.run_context import RunContext, tracking_uri_for
from mlearner_dist.stages import (
    STAGES,
    Manifest,
    atomic_output,
    read_manifest,
    to_jsonable,
    write_json_atomic,
)

logger = logging.getLogger(__name__)

EFFECT_OUTCOME = "__effect_outcome"


def _manifest(rows: dict[str, int], **extra: Any) -> Manifest:
    return Manifest(
        stage="", fingerprint="", rows=rows, seed=0, seconds=0.0, finished="", extra=extra
    )


def _row_account(ctx: RunContext) -> dict[str, Any]:
    m = read_manifest(ctx.output, "validate")
    if m is None:
        raise StageError("the validate stage has not run")
    return dict(m.extra["row_account"])


def _expect_rows(ctx: RunContext, stage: str, n_out: int) -> None:
    n_used = int(_row_account(ctx)["n_used"])
    if n_out != n_used:
        raise RowAccountError(
            f"stage {stage}: {n_out} rows out but {n_used} units were accepted by validation; "
            "rows were lost or duplicated, the run stops here"
        )


# --- stages ---------------------------------------------------------------------------------


def has_design(roles: Roles) -> bool:
    """Whether the roles name a trial design (strata, clusters or weights)."""
    return bool(roles.strata or roles.cluster or roles.weight)


def _validate_design_in_memory(
    ctx: RunContext, sdf: Any, check_roles: Roles
) -> tuple[Any, RowAccount]:
    """Validate a design's units on the driver with the in-memory estimator's checks.

    The Spark effects stage has no per-stratum or per-cluster folds, propensities or variances;
    designs of up to ``effects.design_max_n`` units are therefore validated (strata with both
    arms, treatment constant within a cluster, positive weights, ...) and analysed in memory.
    Above it, a clear error before any further work.
    """
    from mlearner_dist.core.validation import validate_frame

    cfg = ctx.cfg
    n = sdf.count()
    limit = cfg.effects.design_max_n
    if n > limit:
        raise ConfigError(
            f"columns.strata/cluster/weight with {n:,} units: designs are analysed in memory on "
            f"the driver up to effects.design_max_n={limit:,} units (the Spark effects stage "
            "does not support them yet); raise effects.design_max_n if the driver has the "
            "memory, or leave the design columns empty"
        )
    present = [c for c in check_roles.used_columns if c in sdf.columns]
    pdf = sdf.select(*present).toPandas()
    clean, account = validate_frame(pdf, check_roles, **_validation_settings(cfg))
    return ctx.spark.createDataFrame(clean), account


def _validation_settings(cfg: Any) -> dict[str, Any]:
    """The checks' settings, the same for the Spark and the in-memory validation."""
    return {
        "min_treated": cfg.validation.min_treated,
        "min_control": cfg.validation.min_control,
        "n_folds": cfg.effects.n_folds,
        "missing": cfg.data.missing,
    }


def run_validate(ctx: RunContext) -> Manifest:
    """Read the source, check it against the roles, write the used columns to ``units/``."""
    from mlearner_dist.backends.spark_io import read_source, write_parquet_fingerprinted
    from mlearner_dist.backends.spark_validation import validate_spark_frame

    cfg, roles = ctx.cfg, ctx.roles
    sdf, source_info = read_source(ctx.spark, cfg.data)
    extra_cols = (
        [cfg.columns.effect_outcome_baseline] if cfg.columns.effect_outcome_baseline else []
    )
    check_roles = dataclasses.replace(roles, covariates=(*roles.covariates, *extra_cols))
    if has_design(roles):
        clean, account = _validate_design_in_memory(ctx, sdf, check_roles)
    else:
        clean, account = validate_spark_frame(sdf, check_roles, **_validation_settings(cfg))
    clean = clean.select(*[c for c in check_roles.used_columns])
    if cfg.compute.spark.partitions:
        clean = clean.repartition(cfg.compute.spark.partitions)
    data_hash = write_parquet_fingerprinted(clean, ctx.output / "units", check_roles.used_columns)
    n_written = data_hash["n_rows"]
    if n_written != account.n_used:
        raise RowAccountError(
            f"stage validate: wrote {n_written} rows but accounted for {account.n_used}"
        )
    return _manifest(
        {"in": account.n_input, "out": account.n_used},
        row_account=account.to_dict(),
        data_hash=data_hash,
        source=cfg.data.source,
        source_info=source_info,
    )


def run_effects(ctx: RunContext) -> Manifest:
    """Cross-fitted nuisance models on Spark; write ``effects/``."""
    from mlearner_dist.backends.spark_effects import spark_cross_fit_effects
    from mlearner_dist.backends.spark_io import with_difference, write_parquet

    cfg, roles = ctx.cfg, ctx.roles
    units = ctx.spark.read.parquet(str(ctx.output / "units"))
    effect_roles = roles
    if cfg.columns.effect_outcome_baseline:
        units = with_difference(
            units, EFFECT_OUTCOME, roles.outcome, cfg.columns.effect_outcome_baseline
        )
        # every other role (strata, cluster, weight) is kept: nothing is dropped silently
        effect_roles = dataclasses.replace(roles, outcome=EFFECT_OUTCOME)
    model = MLearner(**estimator_params(cfg))
    if has_design(roles):
        # strata, clusters, weights: the core's cross-fitting on the driver (bounded by
        # effects.design_max_n in the validate stage); the Spark stage does not support them
        eff, diagnostics = cross_fit_effects(  # it orders the units by id itself
            units.toPandas(),
            effect_roles,
            model.nuisance_spec(),
            n_folds=cfg.effects.n_folds,
            seed=cfg.random_state,
        )
        effects = ctx.spark.createDataFrame(eff)
    else:
        effects, diagnostics = spark_cross_fit_effects(
            units,
            effect_roles,
            model.nuisance_spec(),
            n_folds=cfg.effects.n_folds,
            seed=cfg.random_state,
        )
    write_parquet(effects, ctx.output / "effects")
    n_out = ctx.spark.read.parquet(str(ctx.output / "effects")).count()
    _expect_rows(ctx, "effects", n_out)
    return _manifest({"in": n_out, "out": n_out}, diagnostics=diagnostics)


def _read_pandas(path: Path, columns: Sequence[str] | None = None) -> pd.DataFrame:
    return pd.read_parquet(path, columns=list(columns) if columns else None)


def run_embed(ctx: RunContext) -> Manifest:
    """Landmark (or exact) t-SNE of the effect vectors on Dask; write ``embedding/``."""
    from mlearner_dist.backends.dask_embedding import dask_embed

    cfg = ctx.cfg
    has_mediator = ctx.roles.has_mediator
    names = resolve_effect_names(cfg.embed.effects, has_mediator)
    model = MLearner(**estimator_params(cfg))
    info = dask_embed(
        ctx.output / "effects",
        ctx.output / "embedding",
        ctx.dask,
        effects=names,
        scaling=model.scaling,
        block_size=cfg.embed.block_size,
        **model.embedding_settings(),
    )
    n_out = int(info.get("n_units", -1))
    _expect_rows(ctx, "embed", n_out)
    return _manifest({"in": n_out, "out": n_out}, embedding=info)


def run_cluster(ctx: RunContext) -> Manifest:
    """K-means on the embedding for each K; write ``clusters/``."""
    from mlearner_dist.backends.dask_clustering import dask_cluster_embedding

    c = ctx.cfg.cluster
    info = dask_cluster_embedding(
        ctx.output / "embedding",
        ctx.output / "clusters",
        ctx.dask,
        k_values=list(range(c.k_min, c.k_max + 1)),
        n_init=c.n_init,
        max_iter=c.max_iter,
        engine=c.engine,
        random_state=ctx.cfg.random_state,
    )
    n_out = int(info.get("n_units", -1))
    _expect_rows(ctx, "cluster", n_out)
    return _manifest({"in": n_out, "out": n_out}, clustering=info)


def _load_profile_inputs(ctx: RunContext) -> pd.DataFrame:
    """Units joined with their cluster labels, ordered by unit id."""
    units = _read_pandas(ctx.output / "units")
    clusters = _read_pandas(ctx.output / "clusters")
    uid = ctx.roles.unit_id
    merged = units.merge(
        clusters,
        left_on=uid,
        right_on="unit_id",
        how="left",
        suffixes=("", "__c"),
        validate="one_to_one",
    )
    k_cols = [c for c in clusters.columns if c.startswith("k_")]
    if merged[k_cols].isna().any().any():
        raise RowAccountError("stage profile: some units have no cluster label")
    return merged.sort_values(uid, kind="stable").reset_index(drop=True)


#: the tree sample holds this many times ``profile.max_rows`` units (the stratified sample the
#: trees grow on is drawn from it); pulling 200,000 rows to the driver took 8 of the profile
#: stage's 24 s at 1M units
TREE_SAMPLE_FACTOR = 5
#: units drawn for the report's scatter plots above ``compute.driver_max_rows``
FIGURE_SAMPLE_ROWS = 50_000


def tree_sample_rows(cfg: Any) -> int:
    """Units the bounded profile stage pulls to the driver to grow the trees on."""
    cap = int(cfg.compute.driver_max_rows)
    per_tree = cfg.profile.max_rows
    return cap if per_tree is None else min(cap, TREE_SAMPLE_FACTOR * int(per_tree))


def subgroup_table_settings(cfg: Any) -> dict[str, Any]:
    """The configuration's keyword arguments of the subgroup tables (in memory and from sums)."""
    return {
        "n_bootstrap": cfg.subgroups.n_bootstrap,
        "level": cfg.subgroups.level,
        "min_size": cfg.validation.min_subgroup,
        "random_state": cfg.random_state,
    }


def profile_on_sample(ctx: RunContext) -> bool:
    """Whether the profile stage grows its trees on a sample and tests from leaf moments.

    Above ``compute.driver_max_rows`` units, for independent units (strata, clusters and
    weights are analysed on the driver, bounded by ``effects.design_max_n``).
    """
    n = int(_row_account(ctx)["n_used"])
    return n > int(ctx.cfg.compute.driver_max_rows) and not has_design(ctx.roles)


def run_profile(ctx: RunContext) -> Manifest:
    """Profile trees per K, interaction tests, and the chosen configuration.

    Up to ``compute.driver_max_rows`` units in memory on the driver. Above it the driver holds a
    hashed sample of that size (the trees are grown on it) and every test, the leaf merging and
    the leaf sizes come from leaf moments computed on Spark
    (:mod:`mlearner_dist.backends.spark_leaf_statistics`).
    """
    cfg, roles = ctx.cfg, ctx.roles
    model = MLearner(**estimator_params(cfg))
    target = decision_target(roles.has_mediator)
    dr_score = model.test_statistic == "dr_score"
    n_used = int(_row_account(ctx)["n_used"])
    if profile_on_sample(ctx):
        from mlearner_dist.backends.spark_leaf_statistics import (
            spark_tree_sample,
            spark_tree_statistics,
        )

        frame = spark_tree_sample(
            ctx.spark,
            ctx.output,
            roles,
            n_units=n_used,
            max_rows=tree_sample_rows(cfg),
            seed=cfg.random_state,
        )
        scores = {name: f"score_{name}" for name in ("indirect", "total")}
        if not roles.has_mediator:
            scores.pop("indirect")

        def statistics(trees: Any) -> Any:
            return spark_tree_statistics(
                ctx.spark, ctx.output, roles, trees, scores=scores, method=model.test_method
            )

        pvalues, score, kw = None, None, {"statistics": statistics}
        n_rows = n_used
    else:
        frame = _load_profile_inputs(ctx)
        _expect_rows(ctx, "profile", len(frame))
        pvalues = tree_pvalues(frame, roles, model.test_method)
        score = target_score(_aligned_effects(ctx, frame), target) if dr_score else None
        kw = {}
        n_rows = len(frame)
    k_cols = sorted((c for c in frame.columns if c.startswith("k_")), key=lambda c: int(c[2:]))
    labels = {int(c[2:]): frame[c].to_numpy(dtype=int) for c in k_cols}
    choice = choose_profile(
        frame[list(roles.covariates)],
        labels,
        pvalues,
        has_mediator=roles.has_mediator,
        settings=model.profile_settings(),
        random_state=cfg.random_state,
        score=score,
        target=target if dr_score else None,
        **kw,
    )
    if kw:
        counted = sum(choice.chosen_tree.leaf_sizes.values())
        if counted != n_used:
            raise RowAccountError(
                f"stage profile: the leaf moments count {counted} units, the run has {n_used}: "
                "units/ and effects/ do not hold the same unit ids; rerun from the effects stage"
            )
    doc = profiles_document(choice)
    write_json_atomic(ctx.output / "profiles.json", doc)
    with atomic_output(ctx.output / "trees.pkl") as tmp:
        tmp.write_bytes(pickle.dumps(choice.trees))
    with atomic_output(ctx.output / "raw_trees.pkl") as tmp:
        tmp.write_bytes(pickle.dumps(choice.raw_trees))
    return _manifest(
        {"in": n_rows, "out": n_rows},
        n_configurations=len(doc["configurations"]),
        driver_rows=len(frame),
    )


def _aligned_effects(ctx: RunContext, frame: pd.DataFrame) -> pd.DataFrame:
    """The effects table in the row order of ``frame`` (ordered by unit id)."""
    effects = _read_pandas(ctx.output / "effects").set_index("unit_id")
    return effects.loc[frame[ctx.roles.unit_id].to_numpy()].reset_index()


def _read_json(path: Path) -> dict[str, Any]:
    import json

    return json.loads(path.read_text())


def _calibration_units(ctx: RunContext) -> tuple[pd.DataFrame, Roles]:
    """The units the in-memory calibrations refit effects on, with the effects stage's outcome.

    With ``columns.effect_outcome_baseline`` the effects stage estimates effects on
    ``outcome - baseline`` (a change score); the split, cross-split and permutation calibrations
    refit effects on halves or replicates, so they get the same change score under the same
    name, and the statistic they calibrate is the observed one.
    """
    cfg, roles = ctx.cfg, ctx.roles
    frame = _read_pandas(ctx.output / "units").sort_values(roles.unit_id, kind="stable")
    frame = frame.reset_index(drop=True)
    base = cfg.columns.effect_outcome_baseline
    if not base:
        return frame, roles
    frame[EFFECT_OUTCOME] = frame[roles.outcome].to_numpy(dtype=float) - frame[base].to_numpy(
        dtype=float
    )
    return frame, dataclasses.replace(roles, outcome=EFFECT_OUTCOME)


def task_map(ctx: RunContext, label: str) -> Any:
    """The calibration's ``map_fn``: Dask futures or Spark tasks (``calibration.engine``)."""
    if ctx.cfg.calibration.engine == "spark":
        from mlearner_dist.backends.spark_map import spark_map

        return spark_map(ctx.spark, label=label)
    from mlearner_dist.backends.dask_map import dask_map

    return dask_map(ctx.dask, label=label)


def run_calibrate(ctx: RunContext) -> Manifest:
    """The threshold for p_leaf: fixed, null replicates (in parallel on Dask) or split sample.

    The calibration itself is :meth:`MLearner.calibrate`, the same code the in-memory estimator
    runs; this stage only supplies the units and a map function that runs replicates on Dask.
    """
    cfg, roles = ctx.cfg, ctx.roles
    prof = _read_json(ctx.output / "profiles.json")
    model = MLearner(**estimator_params(cfg))
    n_used = int(_row_account(ctx)["n_used"])
    if model.splits_for_subgroups(n_used):
        # subgroups.honest: selection and calibration on a hashed half, subgroups on the other
        # (in memory, like the split calibration; replicates as Dask or Spark tasks)
        frame, effect_roles = _calibration_units(ctx)
        doc = model.calibrate(
            frame, effect_roles, float(prof["p_leaf"]), map_fn=task_map(ctx, "null replicate")
        )
    elif cfg.calibration.mode == "fixed":
        doc = model.calibrate(pd.DataFrame(), roles, float(prof["p_leaf"]), discovery_half=False)
    elif (resolved := model.resolved_calibration(n_used))[0] == "split" and profile_on_sample(ctx):
        # above compute.driver_max_rows: the same split design through the distributed stages
        from mlearner_dist.pipeline_split import distributed_split_calibration

        doc = distributed_split_calibration(ctx, model)
        fallback = resolved[1]
        if fallback is not None:
            logger.warning("calibration: %s", fallback)
            doc["requested_mode"] = "null"
            doc["fallback"] = fallback
    elif model.uses_cross_split() or cfg.calibration.mode == "split":
        # the honest cross-split (and the split) calibration refit both halves in memory; the
        # cross-split's half fits, discovery selections and stability seeds run as Dask tasks
        frame, effect_roles = _calibration_units(ctx)
        tasks = task_map(ctx, "cross-split task") if model.uses_cross_split() else None
        doc = model.calibrate(frame, effect_roles, float(prof["p_leaf"]), map_fn=tasks)
        if doc.get("honest") and roles.has_mediator and model.test_statistic == "dr_score":
            # the total target, calibrated the same way on the same halves
            doc["targets"] = model.cross_split_targets(frame, effect_roles, doc, map_fn=tasks)
        if doc.get("honest"):
            # seed stability of the cross-split decision, on the halves fitted above
            doc["stability"] = cross_split_stability(
                model,
                frame,
                effect_roles,
                ProfileTree.from_dict(doc["discovery_tree"]),
                map_fn=tasks,
            )
    elif cfg.calibration.mode == "null" and model.null_replicates == "scores":
        # score replicates re-run only the score-dependent steps on the observed raw trees:
        # cheap, so they run in this process (no Dask round trip per replicate)
        frame = _load_profile_inputs(ctx)
        raw_trees = pickle.loads((ctx.output / "raw_trees.pkl").read_bytes())
        basis = ScoreReplicateBasis(
            effects=_aligned_effects(ctx, frame),
            profile=ProfileChoice(
                configurations=prof["configurations"],
                trees={},
                chosen=prof["chosen"],
                p_leaf=float(prof["p_leaf"]),
                p_leaf_y=float(prof["p_leaf_y"]),
                p_leaf_m=prof["p_leaf_m"],
                response=str(prof.get("statistic", prof["chosen"].get("response"))),
                raw_trees=raw_trees,
            ),
        )
        doc = model.calibrate(frame, roles, float(prof["p_leaf"]), selection=basis)
    else:
        frame, effect_roles = _calibration_units(ctx)
        doc = model.calibrate(
            frame, effect_roles, float(prof["p_leaf"]), map_fn=task_map(ctx, "null replicate")
        )
    write_json_atomic(ctx.output / "calibration.json", doc)
    return _manifest({}, threshold=doc["threshold"], mode=doc["mode"])


def run_report(ctx: RunContext) -> Manifest:
    """Subgroup effects, result.json, figures, report.html, and the MLflow run."""
    cfg, roles = ctx.cfg, ctx.roles
    prof = _read_json(ctx.output / "profiles.json")
    calib = _read_json(ctx.output / "calibration.json")
    trees = pickle.loads((ctx.output / "trees.pkl").read_bytes())
    chosen = prof["chosen"]
    tree = trees[(int(chosen["k"]), int(chosen["tree_id"]))]
    p_leaf = float(prof["p_leaf"])
    configurations = prof["configurations"]
    held_out = calib.get("discovery_tree") is not None
    if held_out:
        # split and cross-split: report what was tested (discovery tree, its held-out p-value,
        # held-out effects)
        chosen = dict(calib["chosen_on_discovery"])
        tree = ProfileTree.from_dict(calib["discovery_tree"])
        p_leaf = float(calib["p_decision"])
    model = MLearner(**estimator_params(cfg))
    table_kw = subgroup_table_settings(cfg)
    n_used = int(_row_account(ctx)["n_used"])
    if profile_on_sample(ctx):
        # bounded driver: leaf sums over every unit from Spark; a hashed sample of
        # compute.driver_max_rows units for the sensitivity analysis and the MLflow example
        from mlearner_dist.backends.spark_leaf_statistics import (
            spark_hashed_sample,
            spark_subgroup_sums,
        )

        sums = spark_subgroup_sums(
            ctx.spark,
            ctx.output,
            roles,
            tree,
            propensity_clip=cfg.effects.propensity_clip,
            max_density_ratio=cfg.effects.max_density_ratio,
        )
        averages = average_effects_from_sums(pool_sums(sums), level=cfg.subgroups.level)
        subgroups = (
            list(calib["subgroups"])
            if held_out
            else mark_post_selection(
                subgroup_table_from_sums(
                    sums,
                    tree.rules,
                    has_mediator=roles.has_mediator,
                    max_density_ratio=cfg.effects.max_density_ratio,
                    **table_kw,
                )
            )
        )
        frame = spark_hashed_sample(
            ctx.spark,
            [(ctx.output / "units", None)],
            roles.unit_id,
            n_units=n_used,
            max_rows=int(cfg.compute.driver_max_rows),
            seed=cfg.random_state,
        )
        sensitivity = model.sensitivity_curves(frame, roles, tree)
        if sensitivity is not None:
            sensitivity["driver_sample"] = {"n": len(frame), "of": n_used}
        # seed stability re-runs the embedding of every unit: up to stability.max_n units and
        # only on a driver that holds them
        stability = calib.get("stability") if held_out else None
    else:
        frame = _load_profile_inputs(ctx)
        effects = _read_pandas(ctx.output / "effects").set_index("unit_id")
        effects = effects.loc[frame[roles.unit_id].to_numpy()].reset_index()
        averages = average_effects(effects, level=cfg.subgroups.level)
        if held_out:
            subgroups = list(calib["subgroups"])
        else:
            subgroups = mark_post_selection(
                subgroup_table(
                    frame,
                    roles,
                    effects,
                    tree.leaf_of(frame[list(roles.covariates)]),
                    tree.rules,
                    propensity_clip=cfg.effects.propensity_clip,
                    max_density_ratio=cfg.effects.max_density_ratio,
                    **table_kw,
                )
            )
        sensitivity = model.sensitivity_curves(frame, roles, tree)
        if not held_out:
            stability = model.seed_stability(frame, roles, effects, tree, float(calib["threshold"]))
        else:
            stability = calib.get("stability")  # cross-split: computed by the calibrate stage
    decision_p = p_leaf
    manifests = {s: read_manifest(ctx.output, s) for s in STAGES}
    result: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "run_id": uuid.uuid4().hex,
        "mlflow_run_id": None,
        "mlflow_model_uri": None,  # models:/<model_id> of the logged subgroup model
        "mlflow_model_id": None,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "version": __version__,
        "config": cfg.to_dict(),
        "row_account": _row_account(ctx),
        "source": manifests["validate"].extra.get("source_info"),  # Delta: the version read
        "has_mediator": roles.has_mediator,
        "average_effects": averages,
        "nuisance_diagnostics": manifests["effects"].extra.get("diagnostics", {}),
        "embedding": manifests["embed"].extra.get("embedding", {}),
        "clustering": manifests["cluster"].extra.get("clustering", {}),
        "configurations": configurations,
        "chosen": chosen,
        "p_leaf": p_leaf,
        "p_leaf_y": prof["p_leaf_y"],
        "p_leaf_m": prof["p_leaf_m"],
        "threshold": float(calib["threshold"]),
        "calibration": calib,
        "declared": bool(decision_p < float(calib["threshold"])),
        "subgroups": subgroups,
        "sensitivity": sensitivity,
        "stability": stability,
        "record": analysis_record(cfg, manifests["validate"].extra.get("data_hash")),
        "timings": {s: m.seconds for s, m in manifests.items() if m is not None},
    }
    main_target = decision_target(roles.has_mediator)
    result["targets"] = {
        main_target: {
            "target": main_target,
            "p_leaf": p_leaf,
            "threshold": float(calib["threshold"]),
            "declared": result["declared"],
            "mc_pvalue": calib.get("mc_pvalue"),
            "mc_se": calib.get("mc_se"),
            "chosen": chosen,
        }
    }
    if calib.get("targets"):
        result["targets"] = dict(calib["targets"])
    elif roles.has_mediator:
        result["targets"]["total"] = {
            "target": "total",
            "note": "the distributed pipeline analyses the total target with the cross-split "
            "calibration (calibration.mode null, the default); with this calibration it "
            "analyses the indirect target only",
        }
    validate_result(to_jsonable(result))
    figures = _write_figures(ctx, result, tree) if cfg.report.figures else []
    if cfg.report.html:
        from mlearner_dist.report import write_report

        write_report(result, ctx.output)
    write_json_atomic(ctx.output / "result.json", result)
    if cfg.tracking.enabled:
        from mlearner_dist.backends.mlflow_tracking import log_analysis, model_fields

        uri = tracking_uri_for(cfg, ctx.output)
        try:
            run_id = log_analysis(
                uri,
                cfg,
                result,
                ctx.output,
                tree=tree,
                example=frame[list(roles.covariates)].head(5),
            )
        except Exception as exc:  # the store went away mid-run: keep every output, say what to do
            raise TrackingError(
                f"MLflow at {uri} failed while logging ({type(exc).__name__}: {exc}). Every "
                f"output is complete and kept in {ctx.output} (result.json, figures, report.html); "
                f"when the tracking server is back, log them with `mlearner report --output "
                f"{ctx.output}` and the same --config/--set flags (only the report stage reruns), "
                f"or set tracking.enabled=false to skip MLflow."
            ) from exc
        result["mlflow_run_id"] = run_id
        result.update(model_fields(uri, run_id))
        write_json_atomic(ctx.output / "result.json", result)
    return _manifest({"subgroups": len(subgroups)}, figures=figures)


def _write_figures(ctx: RunContext, result: dict[str, Any], tree: Any) -> list[str]:
    from mlearner_dist import plots

    fig_dir = ctx.output / "figures"
    fig_dir.mkdir(exist_ok=True)
    if profile_on_sample(ctx):
        # a hashed sample of FIGURE_SAMPLE_ROWS units (a scatter of millions of points shows no
        # more than one of 50,000)
        from mlearner_dist.backends.spark_leaf_statistics import spark_hashed_sample

        emb = spark_hashed_sample(
            ctx.spark,
            [
                (ctx.output / "embedding", None),
                (ctx.output / "clusters", None),
                (ctx.output / "effects", ["indirect", "total"]),
            ],
            "unit_id",
            n_units=int(_row_account(ctx)["n_used"]),
            max_rows=min(int(ctx.cfg.compute.driver_max_rows), FIGURE_SAMPLE_ROWS),
            seed=ctx.cfg.random_state,
        )
    else:
        emb = _read_pandas(ctx.output / "embedding")
        clusters = _read_pandas(ctx.output / "clusters")
        effects = _read_pandas(ctx.output / "effects", ["unit_id", "indirect", "total"])
        emb = emb.merge(clusters, on="unit_id").merge(effects, on="unit_id")
    k = int(result["chosen"]["k"])
    effect_name = "indirect" if result["has_mediator"] else "total"
    made = {
        "embedding_clusters.png": plots.plot_embedding(
            emb, emb[f"k_{k}"].to_numpy(), title=f"t-SNE of effects, K = {k} clusters"
        ),
        "embedding_effect.png": plots.plot_embedding(
            emb, emb[effect_name].to_numpy(), title=f"t-SNE coloured by {effect_name} effect"
        ),
        "p_leaf_by_k.png": plots.plot_p_leaf_by_k(result["configurations"], result["threshold"]),
        "profile_tree.png": plots.plot_profile_tree(tree),
        "subgroup_effects.png": plots.plot_subgroup_forest(result["subgroups"]),
    }
    if result.get("sensitivity"):
        made["sensitivity.png"] = plots.plot_sensitivity(result["sensitivity"])
    calib = result["calibration"]
    if calib.get("null_p_leaf"):
        made["null_calibration.png"] = plots.plot_null_calibration(
            calib["null_p_leaf"], result["p_leaf"], result["threshold"]
        )
    for name, fig in made.items():
        plots.save_figure(fig, fig_dir / name)
    return sorted(made)
