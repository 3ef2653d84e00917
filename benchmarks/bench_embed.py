"""Scale benchmark of steps 2-3: landmark t-SNE and K-means of n units on a local Dask cluster.

Writes an effects parquet of ``--n`` units (columns unit_id, indirect, direct, total; a two-group
mixture: 40% of units with indirect effect near 2, the rest near 0) in chunks, then runs
:func:`~mlearner_dist.backends.dask_embedding.dask_embed` and
:func:`~mlearner_dist.backends.dask_clustering.dask_cluster_embedding` (K = 2..5) with the default
configuration (conf/base.yaml) on a local cluster from
:func:`~mlearner_dist.backends.dask_cluster.get_client`. For every step it prints the wall time and
the peak memory: the driver's peak RSS plus the sum of the workers' peak RSS, each read from
``VmHWM`` in ``/proc/self/status`` and reset (``/proc/self/clear_refs``) before the step.

Targets (issue 4): embed + cluster of 1,000,000 units under 3 minutes, peak memory under 4 GiB,
and 4,000,000 units in at most 4.5 times the time of 1,000,000.

Usage::

    python benchmarks/bench_embed.py --n 1000000 --json bench_embed_1m.json
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlearner_dist.backends.dask_cluster import get_client
from mlearner_dist.backends.dask_clustering import dask_cluster_embedding
from mlearner_dist.backends.dask_embedding import dask_embed

GIB = 1024**3
logger = logging.getLogger("bench_embed")


def peak_rss_bytes() -> int:
    """This process's peak resident set size since the last reset (``VmHWM``), in bytes."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def reset_peak_rss() -> bool:
    """Reset this process's ``VmHWM`` to its current RSS (Linux ``clear_refs`` code 5)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


class StepMeter:
    """Wall time and peak memory (driver + workers) of named steps."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.steps: dict[str, dict[str, float]] = {}

    def run(self, name: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        reset_peak_rss()
        if self.client is not None:
            self.client.run(reset_peak_rss)
        started = time.perf_counter()
        result = fn(*args, **kwargs)
        seconds = time.perf_counter() - started
        driver = peak_rss_bytes()
        workers = (sum(self.client.run(peak_rss_bytes).values())
                   if self.client is not None else 0)
        self.steps[name] = {
            "seconds": round(seconds, 2),
            "driver_peak_gib": round(driver / GIB, 3),
            "workers_peak_gib": round(workers / GIB, 3),
            "peak_gib": round((driver + workers) / GIB, 3),
        }
        logger.info("%s: %.1f s, peak %.2f GiB", name, seconds, (driver + workers) / GIB)
        return result


def write_effects(folder: Path, n: int, chunk: int, seed: int) -> int:
    """Write the two-group effects mixture in parquet files of ``chunk`` rows; returns files."""
    folder.mkdir(parents=True)
    files = 0
    for files, start in enumerate(range(0, n, chunk), start=1):
        m = min(chunk, n - start)
        rng = np.random.default_rng([seed, start])
        group = rng.random(m) < 0.4
        indirect = 2.0 * group + rng.normal(0.0, 0.25, m)
        direct = 0.5 + rng.normal(0.0, 0.25, m)
        pd.DataFrame({
            "unit_id": np.arange(start, start + m, dtype=np.int64),
            "indirect": indirect, "direct": direct, "total": indirect + direct,
        }).to_parquet(folder / f"part-{files - 1:05d}.parquet", index=False)
    return files


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="units (default 1,000,000)")
    parser.add_argument("--json", type=Path, help="write the figures to this JSON file")
    parser.add_argument("--chunk", type=int, default=200_000, help="rows per parquet file")
    parser.add_argument("--workers", type=int, default=2, help="local Dask worker processes")
    parser.add_argument("--memory-limit", default="4GiB", help="memory limit per worker")
    parser.add_argument("--engine", default="dask_ml", choices=["dask_ml", "sklearn"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, help="scratch folder (default: a temporary one)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    scratch = Path(tempfile.mkdtemp(prefix="bench_embed_", dir=args.workdir))
    client, close = get_client(None, n_workers=args.workers, threads_per_worker=1,
                               memory_limit=args.memory_limit)
    meter = StepMeter(client)
    try:
        n_files = meter.run("write_effects", write_effects, scratch / "effects", args.n,
                            args.chunk, args.seed)
        embed_info = meter.run(
            "embed", dask_embed, scratch / "effects", scratch / "embedding", client,
            effects=["indirect"], scaling="standardize", random_state=args.seed,
        )
        cluster_info = meter.run(
            "cluster", dask_cluster_embedding, scratch / "embedding", scratch / "clusters",
            client, k_values=[2, 3, 4, 5], engine=args.engine, random_state=args.seed,
        )
    finally:
        close()
        shutil.rmtree(scratch, ignore_errors=True)
    steps = meter.steps
    work = ("embed", "cluster")
    result = {
        "n_units": args.n,
        "n_files": n_files,
        "workers": args.workers,
        "engine": args.engine,
        "steps": steps,
        "embed_cluster_seconds": round(sum(steps[s]["seconds"] for s in work), 2),
        "embed_cluster_peak_gib": max(steps[s]["peak_gib"] for s in work),
        "embedding": {k: embed_info.get(k) for k in (
            "path", "n_landmarks", "codebook_size", "perplexity_effective", "gradient_method",
            "n_partitions", "seconds_fit", "seconds_place")},
        "clustering": {"seed_sample": cluster_info["seed_sample"],
                       "wcss": cluster_info["wcss"], "seconds": cluster_info["seconds"]},
    }
    width = max(len(s) for s in steps)
    sys.stdout.write(f"{'step':<{width}}  {'seconds':>8}  {'driver GiB':>10}  "
                     f"{'workers GiB':>11}  {'peak GiB':>8}\n")
    for name, row in steps.items():
        sys.stdout.write(f"{name:<{width}}  {row['seconds']:>8.1f}  {row['driver_peak_gib']:>10.2f}"
                         f"  {row['workers_peak_gib']:>11.2f}  {row['peak_gib']:>8.2f}\n")
    sys.stdout.write(f"embed + cluster of {args.n:,} units: "
                     f"{result['embed_cluster_seconds']:.1f} s, "
                     f"peak {result['embed_cluster_peak_gib']:.2f} GiB\n")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
