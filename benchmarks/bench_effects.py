"""Benchmark of step 1 alone: cross-fitted individual effects on Spark at n units.

Generates the data with Spark, runs the ``validate`` and ``effects`` stages with the default
learners in local mode, and prints wall time, units per second and peak memory per stage (the
table of :mod:`run_scale`)::

    python benchmarks/bench_effects.py --n 1000000 --json bench_effects_1m.json

Target on the 2-core, 24 GiB machine: under 5 minutes for 1M units (10 covariates, one mediator).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run_scale import main

if __name__ == "__main__":
    sys.exit(main(["--stages", "validate,effects", *sys.argv[1:]]))
