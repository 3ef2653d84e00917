"""Does the fast selection (issue 16) decide as the previous settings did?

Runs the whole selection (effects, embedding, K-means, profile trees, tests) on ``--replicates``
simulated data sets of simple-all and simple-null2 (n = 1,000, noise sd 0.01, seeds
``seed + r``) twice, once with the previous settings and once with the fast ones, and records per
replicate the decision, p_leaf, K, the number of leaves and the chosen variables, the agreement
between the two settings, and the Monte Carlo error of every rate
(``3 sqrt(p (1 - p) / R)`` with ``p`` the pooled rate).

Settings compared (everything else is conf/base.yaml):

* ``old``: ``embed.n_iter=2000`` (Rtsne's ``max_iter``), ``profile.cv_folds=10`` (rpart's ``xval``);
* ``new``: ``embed.n_iter=750`` (250 exaggerated + 500), ``profile.cv_folds=5``.

Both use ``effects.learner=linear`` (what ``effects.learner: auto`` picks on small data, and it
isolates the embedding and tree changes from the learner) and ``calibration.mode=fixed`` with the
reference's threshold 0.0043: re-running 19 null replicates per data set and setting would cost
hours on this machine, and a fixed threshold already shows whether the two settings decide alike.

Usage::

    python benchmarks/quality_selection.py --replicates 20 --json benchmarks/results_quality.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from mlearner_dist.config import load_config
from mlearner_dist.study import run_replicate

SETTINGS: dict[str, list[str]] = {
    "old": ["embed.n_iter=2000", "profile.cv_folds=10"],
    "new": ["embed.n_iter=750", "profile.cv_folds=5"],
}
COMMON = ["effects.learner=linear", "calibration.mode=fixed", "embed.n_jobs=1"]
SCENARIOS = ("simple-all", "simple-null2")


def _rate(values: list[bool]) -> float:
    return sum(values) / len(values) if values else math.nan


def main() -> None:
    """Run the comparison and write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicates", type=int, default=20)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", type=Path, default=Path("benchmarks/results_quality.json"))
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    out: dict[str, Any] = {
        "n": args.n, "replicates": args.replicates, "noise_sd": 0.01, "seed": args.seed,
        "settings": SETTINGS, "common": COMMON, "uptime_start": load, "scenarios": {},
    }
    for scenario in SCENARIOS:
        rows: dict[str, list[dict[str, Any]]] = {}
        seconds: dict[str, float] = {}
        for name, sets in SETTINGS.items():
            cfg = load_config([], overrides=[*COMMON, *sets])
            started = time.process_time()
            rows[name] = [
                run_replicate(cfg, scenario, args.n, 0.01, args.seed + r)
                for r in range(args.replicates)
            ]
            seconds[name] = round(time.process_time() - started, 1)
            print(scenario, name, seconds[name], "cpu s", flush=True)
        R = args.replicates
        summary: dict[str, Any] = {"cpu_seconds": seconds}
        for name in SETTINGS:
            rs = rows[name]
            summary[name] = {
                "declared_rate": _rate([r["declared"] for r in rs]),
                "uses_x1_x2_rate": _rate([{"X1", "X2"} <= set(r["variables"]) for r in rs]),
                "only_x1_x2_rate": _rate([set(r["variables"]) <= {"X1", "X2"}
                                          and bool(r["variables"]) for r in rs]),
                "mean_leaves": sum(r["n_leaves"] for r in rs) / R,
            }
        for key in ("declared_rate", "uses_x1_x2_rate", "only_x1_x2_rate"):
            pooled = (summary["old"][key] + summary["new"][key]) / 2
            summary[f"{key}_mc_tolerance"] = 3 * math.sqrt(max(pooled * (1 - pooled), 0) / R)
            summary[f"{key}_within_mc"] = bool(
                abs(summary["old"][key] - summary["new"][key])
                <= summary[f"{key}_mc_tolerance"] + 1e-12
            )
        summary["same_decision_rate"] = _rate(
            [a["declared"] == b["declared"] for a, b in zip(rows["old"], rows["new"], strict=True)]
        )
        summary["same_variables_rate"] = _rate(
            [set(a["variables"]) == set(b["variables"])
             for a, b in zip(rows["old"], rows["new"], strict=True)]
        )
        summary["replicates"] = rows
        out["scenarios"][scenario] = summary
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    out["uptime_end"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({s: {k: v for k, v in d.items() if k != "replicates"}
                      for s, d in out["scenarios"].items()}, indent=2))


if __name__ == "__main__":
    main()
