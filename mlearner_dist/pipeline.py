"""The distributed pipeline: stages composed with Spark, Dask and MLflow at the edges.

``run_pipeline(config, output)`` runs validate -> effects -> embed -> cluster -> profile ->
calibrate -> report. The stage registry (:data:`STAGE_SPECS`) says, for every stage, the config
sections and upstream stages its fingerprint covers, the outputs it writes and the function that
runs it (:mod:`mlearner_dist.pipeline_stages`). Every stage reads only earlier stages' outputs
under ``output``, writes its own atomically with a manifest, and is skipped on a re-run while its
configuration and inputs are unchanged (see :mod:`mlearner_dist.stages`). The row account travels
from stage to stage and every stage checks that no row was lost.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from mlearner_dist.backends.storage_paths import shared_output_path
from mlearner_dist.config import Config, estimator_params
from mlearner_dist.core.estimator import (
    MLearner,
)
from mlearner_dist.exceptions import StageError
from mlearner_dist.pipeline_stages import (
    run_calibrate,
    run_cluster,
    run_effects,
    run_embed,
    run_profile,
    run_report,
    run_validate,
)
from mlearner_dist.run_context import (
    RunContext,
    check_tracking_location,
    local_store_path,
    tracking_uri_for,
)
from mlearner_dist.stages import (
    STAGES,
    Manifest,
    StageTimer,
    clean_partial,
    fingerprint,
    invalidate_from,
    read_manifest,
    write_manifest,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StageSpec:
    """One stage of the registry.

    Attributes
    ----------
    name : str
    sections : tuple of str
        Top-level config sections (or keys) its fingerprint covers.
    upstream : tuple of str
        Stages whose outputs it reads (their fingerprints enter its own).
    outputs : tuple of str
        What it writes under the output folder.
    run : callable
        ``run(ctx) -> Manifest``.
    """

    name: str
    sections: tuple[str, ...]
    upstream: tuple[str, ...]
    outputs: tuple[str, ...]
    run: Callable[[RunContext], Manifest]


STAGE_SPECS: dict[str, StageSpec] = {
    s.name: s
    for s in (
        StageSpec("validate", ("data", "columns", "validation"), (), ("units/",), run_validate),
        StageSpec(
            "effects", ("effects", "design", "random_state"), ("validate",), ("effects/",),
            run_effects,
        ),
        StageSpec("embed", ("embed", "random_state"), ("effects",), ("embedding/",), run_embed),
        StageSpec(
            "cluster", ("cluster", "random_state"), ("embed",), ("clusters/",), run_cluster
        ),
        StageSpec(
            "profile",
            ("profile", "test", "random_state", "validation"),
            ("validate", "effects", "cluster"),
            ("profiles.json", "trees.pkl"),
            run_profile,
        ),
        StageSpec(
            "calibrate",
            ("calibration", "profile", "test", "random_state"),
            ("validate", "effects", "profile"),
            ("calibration.json",),
            run_calibrate,
        ),
        StageSpec(
            "report",
            ("subgroups", "report", "sensitivity", "stability"),
            ("validate", "effects", "embed", "cluster", "profile", "calibrate"),
            ("result.json", "figures/", "report.html"),
            run_report,
        ),
    )
}
if tuple(STAGE_SPECS) != tuple(STAGES):  # pragma: no cover - a programming error
    raise RuntimeError(f"the stage registry {tuple(STAGE_SPECS)} differs from STAGES {STAGES}")


# --- fingerprints: a stage's config sections plus its inputs' fingerprints ---------------------


def _source_fingerprint(cfg: Config) -> str:
    src = Path(cfg.data.source)
    if cfg.data.format in ("builtin", "table") or not src.exists():
        return cfg.data.source
    files = [src] if src.is_file() else sorted(p for p in src.rglob("*") if p.is_file())
    return fingerprint([(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files])


def stage_fingerprint(ctx: RunContext, stage: str) -> str:
    """Fingerprint of a stage: its config sections and the fingerprints of its inputs."""
    d = ctx.cfg.to_dict()
    spec = STAGE_SPECS[stage]
    parts: list[Any] = [stage, {k: d[k] for k in spec.sections}]
    if stage == "validate":
        parts.append(_source_fingerprint(ctx.cfg))
    for up in spec.upstream:
        m = read_manifest(ctx.output, up)
        parts.append(m.fingerprint if m else None)
    return fingerprint(*parts)


# --- the driver -----------------------------------------------------------------------------


def run_pipeline(
    cfg: Config,
    output: str | Path,
    *,
    stages: Sequence[str] = STAGES,
    force: Sequence[str] = (),
    on_stage: Callable[[str, str], None] | None = None,
) -> dict[str, Any] | None:
    """Run the configured M-learner analysis, stage by stage.

    Parameters
    ----------
    cfg : Config
        The resolved configuration.
    output : path
        The run's output folder.
    stages : sequence of str
        Which stages to run (default all). A stage whose inputs are missing raises StageError
        naming the stage to run first.
    force : sequence of str
        Stages to re-run even when current (every later stage re-runs too).
    on_stage : callable, optional
        ``on_stage(stage, event)`` with event ``"start"``, ``"end"`` or ``"skip"`` (benchmarks
        use it to measure each stage).

    Returns
    -------
    dict or None
        The contents of ``result.json`` when the report stage ran.
    """
    out = shared_output_path(output)  # a URI output is refused before any work
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StageError(
            f"output folder {out} cannot be created ({exc}); choose another --output"
        ) from exc
    _check_writable(out)
    clean_partial(out)
    for stage in force:
        invalidate_from(out, stage)
    ctx = RunContext(cfg=cfg, output=out)
    if "report" in stages and cfg.tracking.enabled:
        from mlearner_dist.backends.mlflow_tracking import check_tracking_reachable

        check_tracking_location(cfg, out)
        check_tracking_reachable(tracking_uri_for(cfg, out))
    try:
        for stage in STAGES:
            if stage not in stages:
                continue
            for up in STAGE_SPECS[stage].upstream:
                if read_manifest(out, up) is None and up not in stages:
                    raise StageError(
                        f"stage {stage} needs the outputs of stage {up}, which has not run in "
                        f"{out}: run `mlearner {up} --output {out}` (or `mlearner run`) first"
                    )
            fp = stage_fingerprint(ctx, stage)
            current = read_manifest(out, stage)
            if current is not None and current.fingerprint == fp:
                logger.info("stage %s: current (fingerprint %s), skipped", stage, fp)
                if on_stage is not None:
                    on_stage(stage, "skip")
                continue
            invalidate_from(out, stage)
            if on_stage is not None:
                on_stage(stage, "start")
            with StageTimer(stage) as timer:
                manifest = STAGE_SPECS[stage].run(ctx)
            if on_stage is not None:
                on_stage(stage, "end")
            manifest = Manifest(
                stage=stage,
                fingerprint=fp,
                rows=manifest.rows,
                seed=cfg.random_state,
                seconds=round(timer.seconds, 3),
                finished=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                extra=manifest.extra,
            )
            write_manifest(out, manifest)
    finally:
        ctx.close()
    result_path = out / "result.json"
    if "report" in stages and result_path.exists():
        import json

        return json.loads(result_path.read_text())
    return None


def _check_writable(out: Path) -> None:
    probe = out / f".tmp-write-check-{uuid.uuid4().hex[:6]}"
    try:
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise StageError(
            f"output folder {out} is not writable ({exc}); choose another --output"
        ) from exc


def fit_in_memory(cfg: Config, frame: pd.DataFrame) -> MLearner:
    """Run the whole method in memory (no Spark/Dask): used by tests, studies and notebooks."""
    return MLearner(**estimator_params(cfg)).fit_frame(frame, cfg.roles)


__all__ = [
    "STAGE_SPECS",
    "RunContext",
    "StageSpec",
    "check_tracking_location",
    "fit_in_memory",
    "local_store_path",
    "run_pipeline",
    "stage_fingerprint",
    "tracking_uri_for",
]
