"""The split calibration through the distributed stages, for a driver that does not hold the units.

:func:`mlearner_dist.core.honest_calibration.split_calibration` discovers on one half of the
units and tests the chosen profile once on the other half, in memory. Above
``compute.driver_max_rows`` units the pipeline runs the same design on its engines:

1. Spark writes the two halves (``split/discovery/units``, ``split/holdout/units``) by the same
   hash rule (:func:`mlearner_dist.core.calibration.in_discovery_half`);
2. the discovery half goes through the effects (Spark), embed and cluster (Dask) and profile
   (bounded: trees on a hashed sample, tests from Spark's leaf moments) stages in its own folder;
3. the held-out half gets its own effects, cross-fitted within it alone (Spark);
4. the discovery tree is tested once on the held-out half's scores (the DR-score test, or the
   reference interaction test, from leaf moments), and the subgroup effects are estimated on the
   held-out half from leaf sums (:mod:`mlearner_dist.core.subgroup_statistics`).

The record has the keys of the in-memory split record, so the report stage and result.json
read it the same way. The driver holds the discovery half's hashed sample and O(leaves) sums.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pandas as pd

from mlearner_dist.core.calibration import in_discovery_half
from mlearner_dist.core.estimator import MLearner
from mlearner_dist.core.folds import unit_hash
from mlearner_dist.core.selection import decision_target
from mlearner_dist.core.subgroup_statistics import subgroup_table_from_sums
from mlearner_dist.exceptions import InputValidationError
from mlearner_dist.run_context import RunContext
from mlearner_dist.stages import Manifest, read_manifest, write_manifest

logger = logging.getLogger(__name__)

__all__ = ["distributed_split_calibration"]


def _write_halves(ctx: RunContext, seed: int) -> dict[str, int]:
    """Write the discovery and held-out units; their counts."""
    from mlearner_dist.backends.spark_io import write_parquet

    uid = ctx.roles.unit_id
    units = ctx.spark.read.parquet(str(ctx.output / "units"))

    def half(discovery: bool) -> Any:
        def keep(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
            for pdf in batches:
                h = unit_hash(pdf[uid].to_numpy(), "split", int(seed))
                yield pdf[in_discovery_half(h) == discovery]

        return keep

    counts = {}
    for name, flag in (("discovery", True), ("holdout", False)):
        write_parquet(
            units.mapInPandas(half(flag), units.schema), ctx.output / "split" / name / "units"
        )
        counts[name] = ctx.spark.read.parquet(str(ctx.output / "split" / name / "units")).count()
    return counts


def _child(ctx: RunContext, name: str, n_units: int) -> RunContext:
    """A run context for one half: its own folder, the parent's engines and configuration."""
    out = ctx.output / "split" / name
    child = RunContext(ctx.cfg, out, _spark=ctx._spark, _dask=ctx._dask)
    parent = read_manifest(ctx.output, "validate")
    account = dict(parent.extra["row_account"]) if parent is not None else {}
    account.update(n_used=int(n_units), n_input=int(n_units), half=name)
    write_manifest(
        out,
        Manifest(
            stage="validate",
            fingerprint="",
            rows={"in": int(n_units), "out": int(n_units)},
            seed=int(ctx.cfg.random_state),
            seconds=0.0,
            finished="",
            extra={"row_account": account},
        ),
    )
    return child


def distributed_split_calibration(ctx: RunContext, model: MLearner) -> dict[str, Any]:
    """The split calibration of the run's units through the distributed stages.

    Parameters
    ----------
    ctx : RunContext
        The run (its ``units/`` were written by the validate stage).
    model : MLearner
        The estimator of the run's configuration (test statistic, alpha, seeds).

    Returns
    -------
    dict
        The keys of :func:`~mlearner_dist.core.honest_calibration.split_calibration`'s record,
        plus ``engine: "distributed"`` and ``stage_seconds`` (each half's stages).
    """
    import json
    import pickle

    from mlearner_dist.backends.spark_leaf_statistics import (
        spark_subgroup_sums,
        spark_tree_statistics,
    )
    from mlearner_dist.pipeline_stages import (
        run_cluster,
        run_effects,
        run_embed,
        run_profile,
        subgroup_table_settings,
    )

    cfg, roles = ctx.cfg, ctx.roles
    counts = _write_halves(ctx, model.random_state)
    if not counts["discovery"] or not counts["holdout"]:
        raise InputValidationError(
            [f"the split put every unit in one half ({counts}): use more units or another seed"]
        )
    disc = _child(ctx, "discovery", counts["discovery"])
    hold = _child(ctx, "holdout", counts["holdout"])
    seconds: dict[str, float] = {}

    def run(child: RunContext, label: str, stage: Any) -> None:
        logger.info("split calibration: %s of the %s half", label, child.output.name)
        started = time.perf_counter()
        manifest = stage(child)
        took = time.perf_counter() - started
        seconds[f"{child.output.name}_{label}"] = round(took, 2)
        finished = datetime.now(timezone.utc).isoformat(timespec="seconds")
        write_manifest(
            child.output,
            dataclasses.replace(manifest, stage=label, seconds=took, finished=finished),
        )

    for label, stage in (
        ("effects", run_effects),
        ("embed", run_embed),
        ("cluster", run_cluster),
        ("profile", run_profile),
    ):
        run(disc, label, stage)
    run(hold, "effects", run_effects)

    prof = json.loads((disc.output / "profiles.json").read_text())
    trees = pickle.loads((disc.output / "trees.pkl").read_bytes())
    chosen = prof["chosen"]
    tree = trees[(int(chosen["k"]), int(chosen["tree_id"]))]
    target = decision_target(roles.has_mediator)
    scores = {target: f"score_{target}"}
    stats = spark_tree_statistics(
        ctx.spark, hold.output, roles, {0: tree}, scores=scores, method=model.test_method
    )[0]
    if model.test_statistic == "dr_score":
        p = stats.score_pvalue(target, covariance=model.test_covariance)
        test = f"the DR-score test of the {target} effect"
    else:
        p_y, p_m = stats.interaction_pvalues()
        p = p_m if roles.has_mediator else p_y
        test = "the interaction test"
    sums = spark_subgroup_sums(
        ctx.spark,
        hold.output,
        roles,
        tree,
        propensity_clip=cfg.effects.propensity_clip,
        max_density_ratio=cfg.effects.max_density_ratio,
    )
    subgroups = subgroup_table_from_sums(
        sums,
        tree.rules,
        has_mediator=roles.has_mediator,
        max_density_ratio=cfg.effects.max_density_ratio,
        **subgroup_table_settings(cfg),
    )
    for sg in subgroups:
        sg["estimated_on"] = "holdout"
    n_d, n_h = counts["discovery"], counts["holdout"]
    return {
        "mode": "split",
        "engine": "distributed",
        "alpha": model.alpha,
        "threshold": float(model.alpha),
        "n_replicates": 0,
        "null_p_leaf": [],
        "mc_pvalue": None,
        "p_decision": float(p),  # type: ignore[arg-type]
        "n_discovery": int(n_d),
        "n_holdout": int(n_h),
        "chosen_on_discovery": dict(chosen),
        "discovery_p_leaf": float(prof["p_leaf"]),
        "discovery_tree": tree.to_dict(),
        "subgroups": subgroups,
        "stage_seconds": seconds,
        "how": (
            f"discovery on {n_d} units through the distributed stages (split/discovery), the "
            f"chosen profile tested once with {test} on the other {n_h} (effects cross-fitted "
            f"on that half alone, split/holdout); declared when that p-value < "
            f"alpha={model.alpha}; subgroup effects are estimated on the held-out half"
        ),
    }
