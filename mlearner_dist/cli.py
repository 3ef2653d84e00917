"""The ``mlearner`` command.

Subcommands: ``run`` (every stage), one per stage (``validate``, ``effects``, ``embed``,
``cluster``, ``profile``, ``calibrate``, ``report``), ``simulate``, ``study``, ``score`` and
``runs``.
``jobs/*.py`` are thin wrappers that call :func:`main` with a subcommand.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from mlearner_dist.exceptions import MLearnerError
from mlearner_dist.stages import STAGES

logger = logging.getLogger("mlearner_dist")

STAGE_COMMANDS = STAGES


def _add_logging(p: argparse.ArgumentParser) -> None:
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument(
        "--quiet",
        action="store_true",
        help="only warnings and errors (no progress lines); the summary is still printed",
    )
    p.add_argument(
        "--verbose",
        action="store_true",
        help="also show the INFO lines of Spark, Dask, MLflow and other libraries",
    )


def _add_common(p: argparse.ArgumentParser, *, output_required: bool = True) -> None:
    p.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="FILE",
        help="YAML config file; repeat to layer files (later files win)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        dest="overrides",
        metavar="KEY=VALUE",
        help="override one key, e.g. --set cluster.k_max=4 (repeatable; applied last)",
    )
    p.add_argument(
        "--output",
        required=output_required,
        metavar="DIR",
        help="the run's output folder (stage outputs, result.json, figures, report.html)",
    )
    p.add_argument(
        "--force",
        action="append",
        default=[],
        metavar="STAGE",
        choices=STAGES,
        help="re-run this stage (and every later one) even if its outputs are current",
    )
    _add_logging(p)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``mlearner`` command."""
    parser = argparse.ArgumentParser(
        prog="mlearner",
        description="M-learner: subgroups with heterogeneous total and mediated treatment effects.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run every stage (skipping those already current)")
    _add_common(p)
    for stage in STAGE_COMMANDS:
        p = sub.add_parser(stage, help=f"run the {stage} stage alone (reads earlier outputs)")
        _add_common(p)

    p = sub.add_parser("simulate", help="write one of the paper's simulation scenarios")
    p.add_argument("--scenario", required=True)
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--noise-sd", type=float, default=0.01)
    p.add_argument("--output", required=True, metavar="FILE.parquet")
    _add_logging(p)

    p = sub.add_parser("study", help="run the whole method over R simulated data sets")
    p.add_argument("--scenario", required=True)
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--replicates", type=int, default=100)
    p.add_argument("--noise-sd", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2, help="parallel processes (local Dask)")
    p.add_argument("--config", action="append", default=[], metavar="FILE")
    p.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE")
    p.add_argument("--output", required=True, metavar="FILE.json")
    _add_logging(p)

    p = sub.add_parser("score", help="assign new units to subgroups with a logged subgroup model")
    p.add_argument("--model-uri", required=True, help="e.g. runs:/<run id>/subgroup_model")
    p.add_argument("--input", required=True, metavar="FILE.parquet")
    p.add_argument("--output", required=True, metavar="FILE.parquet")
    p.add_argument("--tracking-uri", default="", help="MLflow tracking URI of the run")
    _add_logging(p)

    p = sub.add_parser(
        "verify", help="re-run an analysis from its result.json record; say whether it reproduces"
    )
    p.add_argument("result", metavar="RESULT.json")
    p.add_argument("--output", default="", metavar="DIR", help="re-run folder (default: temp)")
    p.add_argument("--rtol", type=float, default=1e-6, help="relative tolerance for numbers")
    _add_logging(p)

    p = sub.add_parser("runs", help="list past analyses with their chosen configuration")
    p.add_argument("--config", action="append", default=[], metavar="FILE")
    p.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE")
    p.add_argument("--output", default="", metavar="DIR", help="output folder (local SQLite store)")
    _add_logging(p)
    return parser


#: Libraries whose INFO lines a user does not need (``--verbose`` shows them).
NOISY_LOGGERS = (
    "py4j",
    "distributed",
    "dask",
    "numba",
    "matplotlib",
    "alembic",
    "urllib3",
    "openTSNE",
    "mlflow",
    "pyspark",
)


def _setup_logging(level: str, *, quiet: bool = False, verbose: bool = False) -> None:
    chosen = logging.WARNING if quiet else getattr(logging, level)
    logging.basicConfig(
        level=chosen,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    logging.getLogger().setLevel(chosen)
    if quiet:
        os.environ["MLEARNER_QUIET"] = "1"  # no live progress lines (core.progress reads it)
    if not verbose:
        # distributed configures its own loggers from the Dask config when it is imported (later,
        # lazily, in backends/); the variable reaches that config and the worker processes
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # mlflow sets up its own handler
        for noisy in NOISY_LOGGERS:
            logging.getLogger(noisy).setLevel(logging.WARNING)


def _print_summary(result: dict, output: Path) -> None:
    from mlearner_dist.summary import format_summary

    print(format_summary(result, output))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mlearner`` console script.

    Returns
    -------
    int
        0 on success, 2 for a user error (bad config or input), 1 for anything else.
    """
    args = build_parser().parse_args(argv)
    _setup_logging(args.log_level, quiet=args.quiet, verbose=args.verbose)
    try:
        return _dispatch(args)
    except MLearnerError as exc:
        print(f"mlearner: error: {exc}", file=sys.stderr)
        return 2


def _dispatch(args: argparse.Namespace) -> int:
    from mlearner_dist.config import load_config

    if args.command == "simulate":
        from mlearner_dist.datasets import simulate

        frame = simulate(args.scenario, args.n, seed=args.seed, noise_sd=args.noise_sd)
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(out, index=False)
        print(f"wrote {len(frame)} units of scenario {args.scenario} to {out}")
        return 0
    if args.command == "study":
        from mlearner_dist.study import run_study

        cfg = load_config(args.config, args.overrides)
        summary = run_study(
            cfg,
            scenario=args.scenario,
            n=args.n,
            replicates=args.replicates,
            noise_sd=args.noise_sd,
            seed=args.seed,
            workers=args.workers,
            output=Path(args.output),
        )
        print(summary["table"])
        return 0
    if args.command == "verify":
        from mlearner_dist.verify import verify_result

        ok, diffs, out = verify_result(args.result, output=args.output or None, rtol=args.rtol)
        if ok:
            print(f"reproduced: {args.result} (re-run in {out})")
            return 0
        print(f"NOT reproduced: {args.result} (re-run in {out})")
        for d in diffs:
            print(f"  - {d}")
        return 1
    if args.command == "score":
        from mlearner_dist.backends.mlflow_tracking import score_with_model_uri

        n = score_with_model_uri(
            args.model_uri, args.input, args.output, tracking_uri=args.tracking_uri or None
        )
        print(f"scored {n} units into {args.output}")
        return 0
    if args.command == "runs":
        from mlearner_dist.backends.mlflow_tracking import list_runs
        from mlearner_dist.run_context import tracking_uri_for

        cfg = load_config(args.config, args.overrides)
        uri = tracking_uri_for(cfg, Path(args.output) if args.output else None)
        table = list_runs(uri, cfg.tracking.experiment)
        if table.empty:
            print(f"no runs in experiment {cfg.tracking.experiment!r} at {uri}")
        else:
            print(table.to_string(index=False))
        return 0

    from mlearner_dist.pipeline import run_pipeline

    cfg = load_config(args.config, args.overrides)
    output = Path(args.output)
    stages = STAGES if args.command == "run" else (args.command,)
    result = run_pipeline(cfg, output, stages=stages, force=tuple(args.force))
    if args.command in ("run", "report") and result:
        _print_summary(result, output)
    else:
        print(json.dumps({"stage": args.command, "output": str(output)}))
    return 0


def _stage_entry(command: str) -> Callable[[], int]:
    def entry() -> int:
        return main([command, *sys.argv[1:]])

    entry.__name__ = f"{command}_main"
    entry.__doc__ = f"Console entry point ``mlearner-{command}`` (= ``mlearner {command}``)."
    return entry


# Console scripts for Databricks python_wheel_task entry points (one per stage, plus run).
run_main = _stage_entry("run")
validate_main = _stage_entry("validate")
effects_main = _stage_entry("effects")
embed_main = _stage_entry("embed")
cluster_main = _stage_entry("cluster")
profile_main = _stage_entry("profile")
calibrate_main = _stage_entry("calibrate")
report_main = _stage_entry("report")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
