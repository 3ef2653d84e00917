"""Scale benchmark: the full distributed pipeline at n units, stage by stage, against the reference.

Generates a simulated scenario with Spark (no pandas frame of n rows on the driver), runs every
stage with the default configuration (calibration fixed unless ``--calibration``), and prints one
table: seconds and peak memory (driver process, and driver plus its child processes: the Spark JVM
and the Dask workers) per stage and in total, and units per second. With ``--reference-n`` it also
runs the reference algorithm (in-sample plug-in effects with random forests, full distance matrix,
exact t-SNE; ../shared/METHOD.md) and the distributed pipeline on the same data of that size, and
prints the ratio of their times and whether both chose profiles with the same variables.

Usage::

    python benchmarks/run_scale.py --n 1000000 --json bench_1m.json
    python benchmarks/run_scale.py --n 0 --reference-n 3000
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from mlearner_dist.config import load_config
from mlearner_dist.pipeline import run_pipeline

ROOT = Path(__file__).resolve().parents[1]


class PeakMemory:
    """Samples the RSS of this process and of all its descendants every ``interval`` seconds."""

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self.proc = psutil.Process(os.getpid())
        self.driver = 0
        self.tree = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        try:
            own = self.proc.memory_info().rss
            total = own
            for child in self.proc.children(recursive=True):
                try:
                    total += child.memory_info().rss
                except psutil.Error:
                    continue
        except psutil.Error:
            return
        self.driver = max(self.driver, own)
        self.tree = max(self.tree, total)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def reset(self) -> None:
        """Start a new measurement window."""
        self.driver = 0
        self.tree = 0
        self._sample()

    def start(self) -> PeakMemory:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


def generate(
    n: int,
    path: Path,
    *,
    scenario: str,
    seed: int,
    noise_sd: float,
    overrides: list[str] | None = None,
) -> float:
    """Write n simulated units as parquet with Spark; return seconds.

    The session is started with the run's ``compute.spark`` settings (``overrides``): the
    pipeline reuses the active session, so its driver memory is fixed here.
    """
    from mlearner_dist.backends.spark_session import get_spark
    from mlearner_dist.backends.spark_simulate import spark_simulate

    started = time.perf_counter()
    cfg = load_config([ROOT / "conf" / "simulated.yaml"], list(overrides or []))
    spark = get_spark(cfg.compute.spark)
    sdf = spark_simulate(spark, scenario, n, seed=seed, noise_sd=noise_sd)
    sdf.write.mode("overwrite").parquet(str(path))
    return time.perf_counter() - started


def run_distributed(
    data: Path,
    out: Path,
    overrides: list[str],
    mem: PeakMemory,
    stages_to_run: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """Run every stage (or ``stages_to_run``); return per-stage seconds and peak memory."""
    cfg = load_config([ROOT / "conf" / "simulated.yaml"], [f"data.source={data}", *overrides])
    stages: dict[str, dict[str, float]] = {}
    clock: dict[str, float] = {}
    overall = PeakMemory()
    overall.start()

    def on_stage(stage: str, event: str) -> None:
        if event == "start":
            mem.reset()
            clock[stage] = time.perf_counter()
        elif event == "end":
            stages[stage] = {
                "seconds": round(time.perf_counter() - clock[stage], 2),
                "peak_driver_bytes": mem.driver,
                "peak_total_bytes": mem.tree,
            }

    started = time.perf_counter()
    if stages_to_run is None:
        result = run_pipeline(cfg, out, on_stage=on_stage)
    else:
        result = run_pipeline(cfg, out, stages=stages_to_run, on_stage=on_stage)
    total = time.perf_counter() - started
    overall.stop()
    return {
        "total_seconds": round(total, 2),
        "stages": stages,
        "peak_driver_bytes": overall.driver,
        "peak_total_bytes": overall.tree,
        "variables": sorted((result or {}).get("chosen", {}).get("variables", [])),
        "declared": (result or {}).get("declared"),
        # what ran as calibration (the split fallback above calibration.null_max_n, on the
        # engines above compute.driver_max_rows) and its halves' stage times
        "calibration_run": {
            k: (result or {}).get("calibration", {}).get(k)
            for k in ("mode", "engine", "requested_mode", "fallback", "stage_seconds")
        },
    }


def run_reference(data: Path) -> dict[str, Any]:
    """The reference algorithm in memory on the same data (exact t-SNE, full distances)."""
    import pandas as pd

    from mlearner_dist.config import estimator_params
    from mlearner_dist.core.estimator import MLearner

    cfg = load_config(
        [ROOT / "conf" / "simulated.yaml", ROOT / "conf" / "reference.yaml"],
        ["embed.exact_max_n=100000"],
    )
    frame = pd.read_parquet(data)
    model = MLearner(**estimator_params(cfg)).set_params(learner_params={"n_estimators": 2000})
    started = time.perf_counter()
    model.fit_frame(frame, cfg.roles)
    seconds = time.perf_counter() - started
    return {
        "seconds": round(seconds, 2),
        "variables": sorted(model.selection_.chosen.get("variables", [])),
        "declared": bool(model.declared_),
    }


def gib(x: float) -> str:
    return f"{x / 2**30:6.2f} GiB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="units (0: skip the scale run)")
    parser.add_argument(
        "--reference-n",
        type=int,
        default=0,
        help="also compare with the reference algorithm at this n (e.g. 3000)",
    )
    parser.add_argument("--scenario", default="simple-all")
    parser.add_argument("--noise-sd", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--calibration", default="fixed", choices=["fixed", "null", "split"])
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    parser.add_argument("--workdir", default="", help="keep data and outputs here")
    parser.add_argument("--json", default="", help="write the figures to this JSON file")
    parser.add_argument(
        "--stages",
        default="",
        help="comma-separated stages to run (default all), e.g. validate,effects",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

    work = Path(args.workdir or tempfile.mkdtemp(prefix="mlearner-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    mem = PeakMemory().start()
    overrides = [f"calibration.mode={args.calibration}", *args.overrides]
    report: dict[str, Any] = {
        "n": args.n,
        "scenario": args.scenario,
        "noise_sd": args.noise_sd,
        "calibration": args.calibration,
        "overrides": overrides,
        "cpus": os.cpu_count(),
        # the machine is shared: the 1/5/15-minute load before the run, and after it below
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
    }
    try:
        if args.n > 0:
            data = work / f"data_{args.n}.parquet"
            report["generate_seconds"] = round(
                generate(
                    args.n,
                    data,
                    scenario=args.scenario,
                    seed=args.seed,
                    noise_sd=args.noise_sd,
                    overrides=overrides,
                ),
                2,
            )
            out = work / f"run_{args.n}"
            shutil.rmtree(out, ignore_errors=True)
            chosen = tuple(x for x in args.stages.split(",") if x) or None
            run = run_distributed(data, out, overrides, mem, chosen)
            report.update(
                total_seconds=run["total_seconds"],
                peak_rss_bytes=run["peak_driver_bytes"],
                peak_total_rss_bytes=run["peak_total_bytes"],
                stages={k: v["seconds"] for k, v in run["stages"].items()},
                stage_memory={k: v for k, v in run["stages"].items()},
                units_per_second=round(args.n / run["total_seconds"], 1),
                variables=run["variables"],
                declared=run["declared"],
                calibration_run=run["calibration_run"],
            )
            print(
                f"\nmlearner-dist scale benchmark: n = {args.n:,}, scenario {args.scenario}, "
                f"calibration {args.calibration}, {os.cpu_count()} cores"
            )
            print(
                f"{'stage':<11}{'seconds':>9}{'units/s':>12}{'driver peak':>14}"
                f"{'all processes':>16}"
            )
            for stage, v in run["stages"].items():
                rate = args.n / v["seconds"] if v["seconds"] > 0 else float("inf")
                print(
                    f"{stage:<11}{v['seconds']:>9.1f}{rate:>12,.0f}"
                    f"{gib(v['peak_driver_bytes']):>14}{gib(v['peak_total_bytes']):>16}"
                )
            print(
                f"{'total':<11}{run['total_seconds']:>9.1f}{gib(run['peak_driver_bytes']):>14}"
                f"{gib(run['peak_total_bytes']):>16}"
            )
            print(
                f"units per second: {args.n / run['total_seconds']:,.0f}; "
                f"(data generation {report['generate_seconds']:.1f} s, not counted)"
            )
            print(f"chosen profile variables: {run['variables']}; declared: {run['declared']}")
        if args.reference_n > 0:
            n = args.reference_n
            data = work / f"data_{n}.parquet"
            generate(
                n,
                data,
                scenario=args.scenario,
                seed=args.seed,
                noise_sd=args.noise_sd,
                overrides=overrides,
            )
            out = work / f"run_ref_{n}"
            shutil.rmtree(out, ignore_errors=True)
            dist = run_distributed(data, out, overrides, mem)
            ref = run_reference(data)
            ratio = ref["seconds"] / dist["total_seconds"]
            report["reference"] = {
                "n": n,
                "reference_seconds": ref["seconds"],
                "distributed_seconds": dist["total_seconds"],
                "speedup": round(ratio, 2),
                "reference_variables": ref["variables"],
                "distributed_variables": dist["variables"],
                "same_variables": ref["variables"] == dist["variables"],
            }
            report["reference_seconds"] = ref["seconds"]
            print(
                f"\nreference algorithm at n = {n:,}: {ref['seconds']:.1f} s; distributed "
                f"pipeline {dist['total_seconds']:.1f} s; speed-up {ratio:.1f}x"
            )
            print(
                f"variables: reference {ref['variables']}, distributed {dist['variables']} "
                f"({'same' if ref['variables'] == dist['variables'] else 'different'})"
            )
    finally:
        mem.stop()
    report["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
