"""The Type I error / power study of issue "inference", resumable, one replicate at a time.

Every setting is (scenario, n, noise sd, method settings); every replicate r of a setting draws
``simulate(scenario, n, seed=seed0 + r, noise_sd)``, runs :func:`mlearner_dist.study.run_replicate`
(the function behind ``mlearner study``) and is written to ``--output`` (default
``benchmarks/results_study.json``) as soon as it finishes, so the grid can stop and resume
across sessions: on start, replicates already in the file are skipped. Replicates run in
``--workers`` processes (both cores by default).

Each row states the B (null replicates per analysis) and every override it used. The study may use
B = 19 (the Monte Carlo test is exact at any B; power at the default B = 99 is at least as high).

Usage::

    python benchmarks/study.py --grid small            # a few settings, R = 20
    python benchmarks/study.py --grid type1 --replicates 200
    python benchmarks/study.py --table                 # print the table of what is stored
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from mlearner_dist.study import STUDY_OVERRIDES  # noqa: E402  (the package beside this script)

DEFAULT_OUTPUT = ROOT / "benchmarks" / "results_study.json"

#: runner option among a setting's overrides (not a configuration key): analyse a stratified or
#: cluster scenario as if randomised unit by unit
IGNORE_DESIGN = "study.ignore_design=true"
#: name -> list of (scenario, n, noise_sd, overrides). Overrides are ``--set`` strings.
# (mlearner_dist.study.STUDY_OVERRIDES says why these)
FAST = STUDY_OVERRIDES
#: the same at the default B = 99 null replicates per half
FAST_B99 = tuple(
    "calibration.n_replicates=99" if o.startswith("calibration.n_replicates=") else o for o in FAST
)
#: the default auto candidates with partially_linear before linear_boosting (opt-in learner)
PARTIALLY_LINEAR = (
    "effects.auto_candidates=[constant,linear,spline,partially_linear,linear_boosting,"
    "hist_gradient_boosting_early_stopping]"
)
#: the full-sample score replicates the first study measured (anti-conservative; kept as record)
FULL_SAMPLE = (
    "calibration.honest=false",
    "calibration.n_replicates=19",
    "subgroups.n_bootstrap=20",
)
#: the null settings of the Type I rows at noise sd 1 (the confounded one observational)
NULLS_SD1 = ("simple-null1", "simple-null2", "simple-global", "confounded-null")
#: the power settings at noise sd 0.01, n = 1,000
POWER_SD001 = (
    "simple-all",
    "simple-part",
    "complex-all",
    "complex-part",
    "mediator-slope",
    "confounded-alt",
)
GRIDS: dict[str, list[tuple[str, int, float, tuple[str, ...]]]] = {
    # the settings run first in a session: the failures of the full-sample calibration and the
    # two power settings the issue names
    "priority": [
        ("simple-null1", 1000, 0.01, FAST),
        ("confounded-null", 1000, 1.0, FAST),
        ("simple-all", 1000, 0.01, FAST),
        ("mediator-slope", 1000, 1.0, FAST),
    ],
    # observational designs with the overlap rule (test.overlap_trim, default 0.1)
    "observational": [
        ("confounded-null", 1000, 1.0, FAST),
        ("confounded-alt", 1000, 1.0, FAST),
    ],
    "confounded-null": [("confounded-null", 1000, 1.0, FAST)],
    # issue "trials": the trial designs analysed by design, and ignoring it (the comparison)
    "designs": [
        ("stratified-null", 1000, 1.0, FAST),
        ("cluster-null", 1000, 1.0, FAST),
    ],
    "designs-ignored": [
        ("stratified-null", 1000, 1.0, (*FAST, IGNORE_DESIGN)),
        ("cluster-null", 1000, 1.0, (*FAST, IGNORE_DESIGN)),
    ],
    "designs-power": [("cluster-alt", 1000, 1.0, FAST)],
    "stratified-by-design": [("stratified-null", 1000, 1.0, FAST)],
    # the stratified design by design and ignored, interleaved (the comparison)
    "stratified": [
        ("stratified-null", 1000, 1.0, FAST),
        ("stratified-null", 1000, 1.0, (*FAST, IGNORE_DESIGN)),
    ],
    # the rows closest to the R (Type I at R = 200, power at R = 100), run first
    "type1-first": [
        ("simple-null1", 1000, 0.01, FAST),
        ("confounded-null", 1000, 1.0, FAST),
    ],
    # the randomised nulls at noise sd 1 beside them (the paper's null designs with noise)
    "type1-sd1": [
        ("simple-null2", 1000, 1.0, FAST),
        ("simple-global", 1000, 1.0, FAST),
    ],
    "power-simple-all": [("simple-all", 1000, 0.01, FAST)],
    # the power settings at noise sd 0.01 still short of R = 100, and the paper's first null at
    # noise sd 1, interleaved by seed so that each grows at the same pace
    "power-rest": [
        (s, 1000, 0.01, FAST)
        for s in ("simple-part", "complex-all", "complex-part", "mediator-slope", "confounded-alt")
    ]
    + [("simple-null1", 1000, 1.0, FAST)],
    "power-first": [
        ("simple-all", 1000, 0.01, FAST),
        ("simple-part", 1000, 0.01, FAST),
    ],
    "small": [
        ("confounded-null", 1000, 0.01, FAST),
        ("mediator-slope", 1000, 0.01, FAST),
        ("simple-null1", 1000, 0.01, FAST),
    ],
    "type1": [
        ("simple-null1", 1000, 1.0, FAST),
        ("simple-null2", 1000, 1.0, FAST),
        ("simple-global", 1000, 1.0, FAST),
        ("simple-null1", 1000, 0.01, FAST),
        ("simple-null2", 1000, 0.01, FAST),
        ("simple-global", 1000, 0.01, FAST),
        ("confounded-null", 1000, 1.0, FAST),
    ],
    # the settings that the rule of 2026-12-02 (no constant effect model, config key
    # effects.constant_effect_models) changes most: the nulls, whose contrasts were constant, and
    # the M -> Y alternative it was made for
    "effect-models": [
        ("mediator-slope", 5000, 1.0, FAST),
        ("simple-all", 5000, 1.0, FAST),
        *((s, 1000, 1.0, FAST) for s in NULLS_SD1),
    ],
    # the effect-models grid beside the two sd 0.01 power settings short of 0.9 at B = 49, at the
    # default B = 99: B costs no measurable time (score replicates; one complex-all analysis
    # took 32.9 s at B = 49 and 32.6 s at B = 99) and at B = 49 the smallest cross-split p-value
    # is 2 x 1/50 = 0.04, so one replicate of 49 beating the observed statistic already misses
    "effect-models-b99": [
        ("mediator-slope", 5000, 1.0, FAST_B99),
        ("simple-all", 5000, 1.0, FAST),
        *((s, 1000, 1.0, FAST) for s in NULLS_SD1),
        *((s, 1000, 0.01, FAST_B99) for s in ("complex-all", "complex-part")),
    ],
    # the randomised Type I rows at the default (the observational confounded-null default row
    # already has R = 200): the paper's nulls at noise sd 1, grown towards R = 200
    "type1-default": [(s, 1000, 1.0, FAST) for s in NULLS_SD1 if s != "confounded-null"],
    # its first setting alone (the paired comparisons take a grid's first setting)
    "simple-null1-default": [("simple-null1", 1000, 1.0, FAST)],
    # the comparison columns of issue "inference": the cheap split calibration and the paper's
    # M-test with its fixed threshold (fidelity: reference), on the Type I and power settings
    "comparison": [
        (s, 1000, sd, (*FAST, extra))
        for extra in ("calibration.mode=split", "fidelity=reference")
        for s, sd in [*((s, 1.0) for s in NULLS_SD1), *((s, 0.01) for s in POWER_SD001)]
    ],
    # the power rows at noise sd 0.01 at the default, towards R = 100: the rows measured before the
    # constant-effect-model rule (2026-12-02) carry effects.constant_effect_models=allowed, so the
    # default has its own rows; at B = 99 (no cost, see effect-models-b99) except confounded-alt,
    # whose default row at B = 49 already has 64 replicates
    "power-default": [
        *(
            (s, 1000, 0.01, FAST_B99)
            for s in ("simple-all", "simple-part", "mediator-slope", "complex-all", "complex-part")
        ),
        ("confounded-alt", 1000, 0.01, FAST),
    ],
    # the learner partially_linear offered to auto (issue "estimates"), on the composite null
    # closest to its bound at the default (simple-null1, sd 1: 17/200), on the same seeds: the
    # default's bias in S (the direct term absorbed into the slope of M) is the suspected cause
    "partially-linear-null1": [("simple-null1", 1000, 1.0, (*FAST, PARTIALLY_LINEAR))],
    "power": [(s, 1000, 0.01, FAST) for s in POWER_SD001]
    + [("simple-all", 5000, 1.0, FAST), ("mediator-slope", 5000, 1.0, FAST)],
}


def setting_key(scenario: str, n: int, noise_sd: float, overrides: tuple[str, ...]) -> str:
    """A stable identifier of one setting."""
    return f"{scenario}|n={n}|sd={noise_sd:g}|" + ",".join(sorted(overrides))


def _load(path: Path) -> dict[str, Any]:
    if path.exists():
        return json.loads(path.read_text())
    return {"settings": {}}


def _save(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=True))
    os.replace(tmp, path)


def _one(scenario: str, n: int, noise_sd: float, overrides: tuple[str, ...], seed: int) -> dict:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from mlearner_dist.config import load_config
    from mlearner_dist.study import run_replicate

    config_overrides = [o for o in overrides if o != IGNORE_DESIGN]
    cfg = load_config([], config_overrides)
    return run_replicate(cfg, scenario, n, noise_sd, seed, ignore_design=IGNORE_DESIGN in overrides)


def summarise(setting: dict[str, Any]) -> dict[str, Any]:
    """Declared rate with its binomial sd, the alpha + 3 sd bound, driver and noise rates."""
    from mlearner_dist.datasets import SCENARIOS, scenario_has_mediator
    from mlearner_dist.study import summarise_replicates

    reps = sorted(setting["replicates"].values(), key=lambda r: r["seed"])
    scenario = setting["scenario"]
    target = "indirect" if scenario_has_mediator(scenario) else "total"
    drivers = SCENARIOS[scenario].drivers(target)
    out = summarise_replicates(reps, drivers)
    r = out["replicates"]
    alpha = 0.05
    out["null"] = not drivers
    out["bound"] = alpha + 3 * math.sqrt(alpha * (1 - alpha) / r) if r else None
    noise = {f"X{i}" for i in range(5, 11)} - set(drivers)
    declared = [x for x in reps if x["declared"]]
    out["noise_covariate_rate"] = (
        sum(bool(set(x["variables"]) & noise) for x in declared) / len(declared)
        if declared
        else None
    )
    out["B"] = sorted({x.get("n_replicates") for x in reps})
    tot = [x["total"]["declared"] for x in reps if x.get("total")]
    out["total_declared_rate"] = sum(tot) / len(tot) if tot else None
    # with a mediator the total target is a null too when it has no driver (checked likewise)
    out["total_null"] = bool(tot) and not SCENARIOS[scenario].drivers("total")
    out["mean_seconds"] = round(sum(x.get("seconds", 0) for x in reps) / r, 1) if r else None
    # share of the replicates (that recorded it) whose treated units do not cover the controls'
    # mediator values: there the indirect effect rests on the outcome model's extrapolation
    sup = [x["indirect_supported"] for x in reps if "indirect_supported" in x]
    out["unsupported_rate"] = sum(not v for v in sup) / len(sup) if sup else None
    return out


def paired_comparison(doc: dict[str, Any], key_a: str, key_b: str) -> dict[str, Any]:
    """Two settings' decisions on the seeds both ran (the same data sets): McNemar's exact test.

    Returns the common R, each setting's declared count on them, the discordant counts
    (declared by one only) and the exact two-sided p-value of the discordant split
    (binomial, 1/2): whether the two analyses decide differently on the same data.
    """
    from scipy.stats import binomtest

    a = doc["settings"].get(key_a, {}).get("replicates", {})
    b = doc["settings"].get(key_b, {}).get("replicates", {})
    seeds = sorted(set(a) & set(b), key=int)
    only_a = sum(a[s]["declared"] and not b[s]["declared"] for s in seeds)
    only_b = sum(b[s]["declared"] and not a[s]["declared"] for s in seeds)
    discordant = only_a + only_b
    return {
        "a": key_a,
        "b": key_b,
        "R": len(seeds),
        "declared_a": sum(bool(a[s]["declared"]) for s in seeds),
        "declared_b": sum(bool(b[s]["declared"]) for s in seeds),
        "only_a": only_a,
        "only_b": only_b,
        "mcnemar_exact_p": binomtest(only_a, discordant, 0.5).pvalue if discordant else 1.0,
    }


def format_table(doc: dict[str, Any]) -> str:
    """One line per setting: what it is, R, B, the declared rate and the checks."""
    head = (
        f"{'setting':<34}{'R':>4}{'B':>4}{'declared':>9}{'target':>16}{'drivers':>8}"
        f"{'noise':>6}{'leaves':>7}{'total':>12}{'unsup':>6}{'sec':>6}  overrides"
    )
    lines = [head]
    for _key, setting in sorted(doc["settings"].items()):
        s = summarise(setting)
        if s["null"]:
            ok = "ok" if s["declared_rate"] <= s["bound"] else "FAIL"
            target = f"<={s['bound']:.3f} {ok}"
        else:
            target = ">=0.9" if setting["noise_sd"] < 0.5 else ">=0.8"
        dr = "n/a" if s["drivers_rate"] is None else f"{s['drivers_rate']:.2f}"
        nr = "n/a" if s["noise_covariate_rate"] is None else f"{s['noise_covariate_rate']:.2f}"
        name = f"{setting['scenario']} n={setting['n']} sd={setting['noise_sd']:g}"
        tr = "n/a" if s["total_declared_rate"] is None else f"{s['total_declared_rate']:.2f}"
        if s["total_null"]:
            tr += "" if s["total_declared_rate"] <= s["bound"] else " FAIL"
        us = "n/a" if s["unsupported_rate"] is None else f"{s['unsupported_rate']:.2f}"
        lines.append(
            f"{name:<34}{s['replicates']:>4}{','.join(map(str, s['B'])):>4}"
            f"{s['declared_rate']:>9.3f}{target:>16}{dr:>8}{nr:>6}{s['median_leaves']:>7.1f}"
            f"{tr:>12}{us:>6}{s['mean_seconds'] or 0:>6.0f}  {','.join(setting['overrides'])}"
        )
    return "\n".join(lines)


DOC = ROOT / "docs" / "simulation_study.md"
BEGIN, END = "<!-- begin benchmarks/study.py -->", "<!-- end benchmarks/study.py -->"


def _compute_hours(doc: dict[str, Any]) -> float:
    """Sum of the stored replicates' wall seconds, in hours."""
    return sum(
        float(r.get("seconds", 0.0))
        for setting in doc["settings"].values()
        for r in setting["replicates"].values()
    ) / 3600.0


def write_doc(doc: dict[str, Any], path: Path = DOC) -> None:
    """Put the stored table between the study markers of ``docs/simulation_study.md``."""
    text = path.read_text() if path.exists() else ""
    block = "\n".join(
        [
            BEGIN,
            "## The inference study (benchmarks/study.py)",
            "",
            f"Generated by `python benchmarks/study.py --table --write-doc` from "
            f"`benchmarks/results_study.json` (updated {doc.get('updated')}, load average "
            f"{doc.get('load')}). Declared = share of the R replicates where the top-level "
            "(indirect, or total) target was declared at alpha = 0.05; the bound of a null "
            "setting is alpha + 3 sqrt(alpha (1 - alpha) / R); drivers = share of declared "
            "replicates whose profile uses every covariate the effect depends on; noise = share "
            "using one of X5..X10; B = null replicates per analysis; total = declared rate of "
            "the total-effect target; unsup = share of the replicates (recorded since 2026-12-02 "
            "13:11 UTC) whose whole-sample overlap diagnostic says the treated do not cover the "
            "controls' mediator values (indirect_supported false: the indirect effect rests on "
            "the outcome model's extrapolation); sec = mean wall seconds per analysis (one "
            "process, two running at once); compute stored: "
            f"{_compute_hours(doc):.1f} process-hours.",
            "",
            "```",
            format_table(doc),
            "```",
            END,
        ]
    )
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--grid", choices=sorted(GRIDS), default="small")
    p.add_argument("--replicates", type=int, default=20)
    p.add_argument("--seed", type=int, default=10_000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--set", action="append", default=[], dest="extra", metavar="KEY=VALUE")
    p.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    p.add_argument("--table", action="store_true", help="print the stored table and exit")
    p.add_argument(
        "--paired",
        nargs=2,
        metavar=("GRID_A", "GRID_B"),
        help="compare the first settings of two grids on their common seeds and exit",
    )
    p.add_argument("--write-doc", action="store_true", help="with --table: update the docs")
    p.add_argument("--max-minutes", type=float, default=0.0, help="stop submitting after this")
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    doc = _load(args.output)
    if args.paired:
        keys = [setting_key(*GRIDS[g][0]) for g in args.paired]
        print(json.dumps(paired_comparison(doc, *keys), indent=1))
        return 0
    if args.table:
        print(format_table(doc))
        if args.write_doc:
            write_doc(doc)
        return 0
    started = time.perf_counter()
    todo = []
    for scenario, n, sd, overrides in GRIDS[args.grid]:
        ov = tuple(overrides) + tuple(args.extra)
        key = setting_key(scenario, n, sd, ov)
        setting = doc["settings"].setdefault(
            key,
            {"scenario": scenario, "n": n, "noise_sd": sd, "overrides": list(ov), "replicates": {}},
        )
        for r in range(args.replicates):
            seed = args.seed + r
            if str(seed) not in setting["replicates"]:
                todo.append((key, scenario, n, sd, ov, seed))
    # interleave settings so a stopped run leaves every setting with some replicates
    todo.sort(key=lambda t: (t[5], t[0]))
    print(f"{len(todo)} replicates to run ({args.workers} workers)", flush=True)
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        pending = {}
        queue = iter(todo)

        def submit_next() -> bool:
            if args.max_minutes and time.perf_counter() - started > 60 * args.max_minutes:
                return False
            item = next(queue, None)
            if item is None:
                return False
            pending[pool.submit(_one, *item[1:])] = item
            return True

        for _ in range(args.workers):
            submit_next()
        while pending:
            done = next(as_completed(list(pending)))
            key, *_, seed = pending.pop(done)
            rep = done.result()
            doc["settings"][key]["replicates"][str(seed)] = rep
            doc["updated"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
            doc["load"] = os.getloadavg()
            _save(args.output, doc)
            print(
                f"{key} seed {seed}: declared={rep['declared']} p={rep['p_leaf']:.3g} "
                f"({rep['seconds']} s)",
                flush=True,
            )
            submit_next()
    print(format_table(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
