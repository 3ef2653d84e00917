"""Build (and execute) the three narrative notebooks from the cell sources below.

    python notebooks/build_notebooks.py              # write and execute, stored parameters
    python notebooks/build_notebooks.py --size full  # the full-size (paper) parameters
    python notebooks/build_notebooks.py --no-run     # write without executing

Each notebook's first code cell is tagged ``parameters`` and holds the full-size values; the cell
after it (tagged ``run-note``) says which parameters the stored outputs were computed with. The
test suite replaces the parameters cell with :data:`SMALL` and executes every notebook with
nbclient, so the narratives stay correct as the code changes. The stored outputs come from a real
run of this script with :data:`STORED` (see each notebook's run note for the values and the time).
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def md(text: str, tags: tuple[str, ...] = ()) -> nbformat.NotebookNode:
    """A markdown cell.

    Parameters
    ----------
    text : str
        Markdown source (stripped).
    tags : tuple of str
        Cell tags.

    Returns
    -------
    nbformat.NotebookNode
    """
    cell = nbformat.v4.new_markdown_cell(text.strip())
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def code(text: str, tags: tuple[str, ...] = ()) -> nbformat.NotebookNode:
    """A code cell.

    Parameters
    ----------
    text : str
        Python source (stripped).
    tags : tuple of str
        Cell tags (``parameters`` marks the cell that :func:`execute` replaces).

    Returns
    -------
    nbformat.NotebookNode
    """
    cell = nbformat.v4.new_code_cell(text.strip())
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def run_note_cell() -> nbformat.NotebookNode:
    """The markdown cell that :func:`execute` fills with the parameters of the stored run."""
    return md("*Not executed yet: run `python notebooks/build_notebooks.py`.*", tags=("run-note",))


SETUP = """
import json, os, sys, time, warnings
from pathlib import Path
import pandas as pd
from IPython.display import Image, display
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
warnings.filterwarnings("ignore")
pd.set_option("display.width", 160)
pd.set_option("display.max_colwidth", 80)
ROOT = Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()
OUT = Path(os.environ.get("MLEARNER_NOTEBOOK_OUT", ROOT / "runs" / "notebooks"))
OUT.mkdir(parents=True, exist_ok=True)
"""

# --- 01: Jobs II -------------------------------------------------------------------------------

JOBS_II_FULL = """
# parameters: the full-size values (t-SNE iterations and bootstrap draws as in the reference)
N_ITER = 4000          # t-SNE iterations
N_REPLICATES = 99      # score replicates per half of the cross-split calibration (>= 40 at alpha 0.05)
N_BOOTSTRAP = 1000     # bootstrap draws of the unadjusted (reference) subgroup effects
"""

JOBS_II = [
    md("""
# The Jobs II trial with the M-learner

The JOBS II field experiment (Vinokur et al.) randomised 899 unemployed job seekers to a job-search
skills workshop (`treat`) or a booklet. We ask whether the workshop's effect on depression six
months later (`depress2`), and the part of it that flows through job-search self-efficacy
(`job_seek`, the mediator), differs between subgroups defined by economic hardship, sex, age,
occupation and education. Then, as the reference does, we run the analysis without a mediator on
the change in depression (`depress2 - depress1`) and set the two side by side. Everything below
uses the public API only (`load_config`, `run_pipeline`, the run's `result.json` and figures).
"""),
    code(JOBS_II_FULL, tags=("parameters",)),
    run_note_cell(),
    code(SETUP),
    md("""
## Data and roles
The configuration `conf/jobs_ii.yaml` names the roles: treatment `treat` (randomised), mediator
`job_seek`, outcome `depress2`, and five covariates that may define subgroups.
"""),
    code("""
from mlearner_dist.config import load_config
from mlearner_dist.datasets import load_jobs_ii

data = load_jobs_ii()
SETTINGS = [
    f"embed.n_iter={N_ITER}", f"calibration.n_replicates={N_REPLICATES}",
    f"subgroups.n_bootstrap={N_BOOTSTRAP}", "compute.spark.master=local[2]",
]
cfg = load_config([ROOT / "conf" / "jobs_ii.yaml"], SETTINGS)
print(cfg.roles)
n_treated = int(data["treat"].sum())
print(f"{len(data)} units: {n_treated} treated, {len(data) - n_treated} controls")
shown = ["treat", "job_seek", "depress1", "depress2", *cfg.roles.covariates]
data[shown].describe(include="all").T
"""),
    md("""
## The whole analysis
`run_pipeline` runs every stage (validate, effects on Spark, embedding and K-means on Dask, profile
trees, calibration, report) and logs the run to MLflow (a SQLite store in the output folder).
"""),
    code("""
from mlearner_dist.pipeline import run_pipeline
from mlearner_dist.summary import format_summary

out = OUT / "jobs_ii"
t0 = time.perf_counter()
result = run_pipeline(cfg, out)
print(f"({time.perf_counter() - t0:.0f} s)")
print(format_summary(result, out))
"""),
    md("""
## Average effects
Indirect (through job-search self-efficacy), direct and total effect of the workshop on `depress2`,
and the proportion mediated, with 95% CIs from the cross-fitted doubly robust scores. Negative
means less depression.
"""),
    code("""
pd.DataFrame({k: v for k, v in result["average_effects"].items() if v}).T
"""),
    md("""
## Embedding and clusters
Each unit's indirect effect is embedded with t-SNE and clustered by K-means for each K in 2..4; the
left picture colours the embedding by the clusters of the chosen K, the right one by the effect.
"""),
    code("""
k = int(result["chosen"]["k"])
clusters = pd.read_parquet(out / "clusters")
effects = pd.read_parquet(out / "effects", columns=["unit_id", "indirect", "direct", "total"])
by_cluster = clusters[["unit_id", f"k_{k}"]].merge(effects, on="unit_id").groupby(f"k_{k}")
display(by_cluster[["indirect", "direct", "total"]].mean().assign(n=by_cluster.size()).round(3))
wcss = {K: round(v, 1) for K, v in result["clustering"]["wcss"].items()}
print("within-cluster sum of squares by K:", wcss)
display(Image(filename=str(out / "figures" / "embedding_clusters.png")))
display(Image(filename=str(out / "figures" / "embedding_effect.png")))
"""),
    md("""
## The profile tree, in words and as a picture
For each K a classification tree describes the clusters by the covariates; the leaves are the
candidate subgroups. The tree chosen for each K is tested (leaf x treatment interaction, with the
mediator and with the outcome as response) and the configuration with the smallest mediator
p-value is kept: that p-value is `p_leaf`.
"""),
    code("""
configs = pd.DataFrame(result["configurations"])
display(configs[["k", "tree_id", "n_leaves", "variables", "cv_error", "selected_for_test",
                 "p_y", "p_m"]])
chosen = next(c for c in result["configurations"]
              if c["k"] == result["chosen"]["k"] and c["tree_id"] == result["chosen"]["tree_id"])
print(f"Chosen: K = {chosen['k']} clusters, a tree with {chosen['n_leaves']} leaves that splits on "
      f"{', '.join(chosen['variables']) or 'nothing'}. Its leaves (the subgroups) are:")
for leaf in chosen["leaves"]:
    print(f"  - {leaf['rule']}  (n = {leaf['n']})")
display(Image(filename=str(out / "figures" / "profile_tree.png")))
display(Image(filename=str(out / "figures" / "p_leaf_by_k.png")))
"""),
    md("""
## The calibrated decision
`p_leaf` is the smallest of several p-values chosen after looking at the data, so it is not a
p-value. Heterogeneity is declared only when it is below a threshold calibrated on null replicates
of these same data (treatment re-randomised, constant effect): the whole selection is re-run on
each, and the threshold is the alpha = 0.05 quantile of their `p_leaf`.
"""),
    code("""
calib = result["calibration"]
print(f"p_leaf = {result['p_leaf']:.3g}, threshold = {result['threshold']:.3g} ({calib['mode']}), "
      f"declared = {result['declared']}")
if calib.get("mc_pvalue") is not None:
    print(f"Monte Carlo p-value of p_leaf among the null replicates: {calib['mc_pvalue']:.3g}")
print(calib["how"])
if (out / "figures" / "null_calibration.png").exists():
    display(Image(filename=str(out / "figures" / "null_calibration.png")))
"""),
    md("""
## Subgroup effects with confidence intervals
Covariate-adjusted effects (averages of the doubly robust scores within each leaf) and, beside
them, the reference's unadjusted per-leaf regressions with a bootstrap.
"""),
    code("""
def ci(e):
    # "estimate [low, high]", or n/a when not reported (the library leaves prop_mediated out when
    # the total effect's interval covers 0: the ratio is then meaningless)
    if not e or e.get("estimate") is None or e.get("ci_low") is None:
        return "n/a"
    return f"{e['estimate']:+.3f} [{e['ci_low']:+.3f}, {e['ci_high']:+.3f}]"

rows = []
for s in result["subgroups"]:
    for kind, eff in (("adjusted", s), ("unadjusted", s["unadjusted"])):
        row = {"rule": s["rule"], "n": s["n"], "kind": kind}
        for name in ("indirect", "direct", "total", "prop_mediated"):
            e = eff.get(name)
            row[name] = ci(e)
        rows.append(row)
display(pd.DataFrame(rows))
display(Image(filename=str(out / "figures" / "subgroup_effects.png")))
"""),
    md("## What was found, in plain language"),
    code("""
def reading(result, what):
    avg = result["average_effects"]
    tot = avg["total"]
    lines = [f"Average effect of the workshop on {what}: {tot['estimate']:+.3f} "
             f"(95% CI {tot['ci_low']:+.3f} to {tot['ci_high']:+.3f})"
             + (f"; {avg['indirect']['estimate']:+.3f} of it through job-search self-efficacy."
                if avg.get("indirect") else ".")]
    name = "indirect" if result["has_mediator"] else "total"
    p, thr = result["p_leaf"], result["threshold"]
    if result["declared"]:
        lines.append(f"Heterogeneity was declared (p_leaf {p:.2g} < calibrated threshold "
                     f"{thr:.2g}). The subgroups and their {name} effects:")
        lines += [f"  - {s['rule']} (n = {s['n']}): {ci(s[name])}" for s in result["subgroups"]]
    else:
        lines.append(f"No heterogeneity was declared: p_leaf {p:.2g} is not below the calibrated "
                     f"threshold {thr:.2g}. The subgroups above are what the search found, not "
                     "groups shown to differ: read the average effect as holding for everyone.")
    return "\\n".join(lines)

print(reading(result, "depression six months later"))
"""),
    md("""
## The reference's total-effect analysis (change in depression, no mediator)
`conf/jobs_ii_total.yaml` drops the mediator and estimates the effect on `depress2 - depress1`
(tested on `depress2`), as the reference's Jobs II analysis does. The same pipeline runs; the
embedding is now of each unit's total effect.
"""),
    code("""
cfg_total = load_config(
    [ROOT / "conf" / "jobs_ii.yaml", ROOT / "conf" / "jobs_ii_total.yaml"], SETTINGS)
out_total = OUT / "jobs_ii_total"
total = run_pipeline(cfg_total, out_total)
print(format_summary(total, out_total))
display(Image(filename=str(out_total / "figures" / "profile_tree.png")))
display(Image(filename=str(out_total / "figures" / "subgroup_effects.png")))
print(reading(total, "the change in depression (depress2 - depress1)"))
"""),
    md("## The two analyses side by side"),
    code("""
side = pd.DataFrame({
    label: {
        "effect on": what,
        "average total effect": ci(r["average_effects"]["total"]),
        "average indirect effect": ci(r["average_effects"].get("indirect")),
        "decision on": "mediator model" if r["has_mediator"] else "outcome model",
        "chosen K / leaves": f"{r['chosen']['k']} / {r['chosen']['n_leaves']}",
        "profile uses": ", ".join(r["chosen"]["variables"]) or "-",
        "p_leaf": f"{r['p_leaf']:.3g}",
        "threshold": f"{r['threshold']:.3g} ({r['calibration']['mode']})",
        "declared": r["declared"],
        "subgroups": len(r["subgroups"]),
    }
    for label, what, r in (("mediation (via job_seek)", "depress2", result),
                           ("total effect (no mediator)", "depress2 - depress1", total))
})
side
"""),
]

# --- 02: the simulation study ------------------------------------------------------------------

STUDY_FULL = """
# parameters: the full-size values (n = 1000 as in the paper; R = 100, the `study` default)
N = 1000
REPLICATES = 100
SCENARIOS = ["simple-all", "simple-part", "complex-all", "complex-part",
             "simple-null1", "simple-null2", "simple-global"]
NOISE = [0.01, 1.0]          # the paper's noise and a realistic one
N_ITER = 2000                # t-SNE iterations (ours and the reference's)
OURS_CALIBRATION = "null"    # null (cross-split score replicates) | split (discover/test halves)
N_REPLICATES = 49            # score replicates per half and data set (calibration mode null; >= 40)
WORKERS = 2                  # data sets fitted in parallel (local Dask processes)
"""

STUDY = [
    md("""
# The paper's simulation study

The `mlearner study` command (the function `run_study` behind it) runs the whole M-learner over R
simulated data sets of a scenario and reports how often heterogeneity is declared and which
covariates the chosen profile uses. Heterogeneity is driven by X1 and X2 only; X5..X10 are noise.
We run each of the paper's mediation scenarios at the paper's noise (sd 0.01) and at a realistic
noise (sd 1) with three settings:

* **ours**: the defaults (cross-fitted nested effects, standardised t-SNE, one-SE trees, a
  threshold calibrated on the data: null replicates, or the split-sample test when the run is
  small, see the run note);
* **reference**: `fidelity: reference` (`conf/reference.yaml`): the authors' R scripts as closely
  as this implementation allows (in-sample plug-in random-forest effects, unscaled effects with
  the Rtsne kernel, the first Pareto tree per K, the fixed threshold 0.0043);
* **baseline**: the reference's baseline, K-means on the raw covariates instead of on the effects
  (`cluster.space=covariates`), otherwise as the reference.
"""),
    code(STUDY_FULL, tags=("parameters",)),
    run_note_cell(),
    code(SETUP),
    md("""
## The committed study: Type I error and power (benchmarks/study.py)
`benchmarks/study.py` runs the calibrated decision over R data sets per setting (n = 1,000,
B = 49 score replicates per half) and stores every replicate in `benchmarks/results_study.json`;
the table in docs/simulation_study.md is generated from the same file. Below: every stored
setting and target, its declared count, and for the null targets (no covariate drives that
effect) the bound alpha + 3 sqrt(alpha (1 - alpha) / R) the rate must stay under. The cells after
this section run a small study of their own with the parameters above.
"""),
    code("""
from mlearner_dist import plots
from mlearner_dist.study import study_rate_rows

committed = json.loads((ROOT / "benchmarks" / "results_study.json").read_text())
rates = study_rate_rows(committed)
print(f"updated {committed.get('updated')}, {len(rates)} setting x target rows")
print(rates[["label", "R", "B", "declared", "rate", "null", "bound", "ok"]]
        .round({"rate": 3, "bound": 3}).to_string(index=False))
path = plots.save_figure(plots.plot_study_rates(rates), OUT / "study" / "committed_rates.png")
display(Image(filename=str(path)))
"""),
    code("""
from mlearner_dist.config import load_config
from mlearner_dist.datasets import SCENARIOS as SCENARIO_INFO
from mlearner_dist.study import run_study

COMMON = [f"embed.n_iter={N_ITER}", "embed.n_jobs=1"]   # replicates already run in parallel
ours_calibration = [f"calibration.mode={OURS_CALIBRATION}"]
if OURS_CALIBRATION == "null":
    ours_calibration.append(f"calibration.n_replicates={N_REPLICATES}")
SETTINGS = {  # label: (config files, overrides)
    "ours": ([], COMMON + ours_calibration),
    "reference": (["conf/reference.yaml"], COMMON),
    "baseline": (["conf/reference.yaml"], COMMON + ["cluster.space=covariates"]),
}
for label, (files, sets) in SETTINGS.items():
    flags = " ".join([*(f"--config {f}" for f in files), *(f"--set {s}" for s in sets)])
    print(f"{label:>9}: mlearner study --scenario SCENARIO --n {N} --replicates {REPLICATES} "
          f"--noise-sd SD --seed 1 --workers {WORKERS} {flags} --output FILE.json")
for name in SCENARIOS:
    print(f"  {name:<14} {SCENARIO_INFO[name].description}")
"""),
    code("""
rows, ecdf = [], {}
started = time.perf_counter()
for label, (files, sets) in SETTINGS.items():
    cfg = load_config([ROOT / f for f in files], sets)
    for scenario in SCENARIOS:
        for sd in NOISE:
            s = run_study(cfg, scenario=scenario, n=N, replicates=REPLICATES, noise_sd=sd, seed=1,
                          workers=WORKERS, output=OUT / "study" / f"{label}_{scenario}_{sd:g}.json")
            rows.append({"setting": label, "scenario": scenario, "noise_sd": sd,
                         "calibration": s["calibration"], "R": s["replicates"],
                         "declared": s["declared_rate"], "X1&X2": s["x1_and_x2_rate"],
                         "X5..X10": s["noise_covariate_rate"], "leaves": s["mean_leaves"],
                         "seconds": s["seconds"]})
            ecdf[(label, sd, scenario)] = s["p_leaf"]
table = pd.DataFrame(rows)
print(f"{len(table)} studies in {time.perf_counter() - started:.0f} s")
"""),
    md("""
## Declared rates
The share of the R data sets in which heterogeneity was declared. In the first four scenarios the
indirect effect is heterogeneous (on X1 and X2), so a high rate is power. In `simple-null1` and
`simple-null2` the indirect effect is zero for everyone (only the direct effect varies), and in
`simple-global` it is the same for everyone: the decision is about the mediator model, so these
should be declared at most at the nominal 5%.
"""),
    code("""
EXPECT = {"simple-all": "heterogeneous", "simple-part": "heterogeneous",
          "complex-all": "heterogeneous", "complex-part": "heterogeneous",
          "simple-null1": "null (NIE = 0)", "simple-null2": "null (NIE = 0)",
          "simple-global": "null (NIE = 1)"}

def pct(v):
    return "n/a" if pd.isna(v) else f"{100 * v:.0f}%"

def wide(column):
    w = table.pivot(index="scenario", columns=["noise_sd", "setting"], values=column)
    w = w.reindex(index=SCENARIOS, columns=pd.MultiIndex.from_product([NOISE, list(SETTINGS)]))
    w = w.map(pct)
    w.insert(0, "truth", [EXPECT.get(s, "") for s in w.index])
    w.columns.names = ["noise sd", "setting"]
    return w

wide("declared")
"""),
    md("""
## Variable selection
Among the data sets where heterogeneity was declared: how often the chosen profile uses both X1
and X2 (right), and how often it uses any of the pure-noise covariates X5..X10 (wrong). `n/a`: no
data set was declared.
"""),
    code("""
display(wide("X1&X2"))
display(wide("X5..X10"))
"""),
    md("""
## Ours and the reference against the reference's baseline
The baseline clusters the units on their covariates, so its groups need not differ in effect at
all; the M-learner clusters on the estimated effects. Per scenario and noise: declared rate and,
among declared, the rate at which the profile uses X1 and X2.
"""),
    code("""
compare = table.assign(
    result=[f"{pct(d)} declared, X1&X2 {pct(x)}" for d, x in zip(table["declared"], table["X1&X2"])]
).pivot(index=["scenario", "noise_sd"], columns="setting", values="result")
compare = compare.reindex(columns=list(SETTINGS))
rows_order = pd.MultiIndex.from_product([SCENARIOS, NOISE], names=["scenario", "noise_sd"])
compare = compare.reindex(rows_order)
display(compare)
display(table[["setting", "scenario", "noise_sd", "calibration", "R", "leaves", "seconds"]])
"""),
    md("""
## Empirical CDF of p_leaf
One curve per scenario: the share of data sets whose `p_leaf` is at most x. Curves far to the left
are strong signals; for the null scenarios the value of the curve at the threshold is the false
declaration rate. The reference and the baseline use the fixed threshold 0.0043 (dashed). Ours
with split calibration decides on a held-out p-value, not on this `p_leaf`, so no line is drawn
for it.
"""),
    code("""
from mlearner_dist import plots

for label in SETTINGS:
    for sd in NOISE:
        curves = {f"{sc}": ecdf[(label, sd, sc)] for sc in SCENARIOS}
        thr = 0.0043 if label != "ours" else None
        fig = plots.plot_pleaf_ecdf(curves, threshold=thr)
        fig.axes[0].set_title(f"{label}: p_leaf, noise sd {sd:g}, n = {N}", fontsize=10)
        path = plots.save_figure(fig, OUT / "study" / f"ecdf_{label}_{sd:g}.png")
        display(Image(filename=str(path)))
"""),
]

# --- 03: scale ---------------------------------------------------------------------------------

SCALE_FULL = """
# parameters: the full-size values
N = 1_000_000
SCENARIO = "simple-all"
NOISE_SD = 1.0
SETTINGS = []    # extra `--set` overrides (none: the configuration as shipped)
"""

SCALE = [
    md("""
# Scale: a million units on the distributed pipeline

We generate the data with Spark (`spark_simulate`: chunks of units drawn inside Spark tasks, no
pandas frame of n rows on the driver), run every stage with the simulated-data configuration and
a fixed threshold (so the time measured is the analysis itself, not the calibration), and show
where the time went and what the MLflow run holds.
"""),
    code(SCALE_FULL, tags=("parameters",)),
    run_note_cell(),
    code(SETUP),
    md("## Generate the units with Spark"),
    code("""
from mlearner_dist.backends.spark_session import get_spark
from mlearner_dist.backends.spark_simulate import spark_simulate
from mlearner_dist.config import load_config

cfg = load_config([ROOT / "conf" / "simulated.yaml"], [
    f"data.source={OUT / f'scale_{N}.parquet'}", "calibration.mode=fixed", *SETTINGS])
spark = get_spark(cfg.compute.spark)
data = Path(cfg.data.source)
t0 = time.perf_counter()
units = spark_simulate(spark, SCENARIO, N, seed=1, noise_sd=NOISE_SD)
units.write.mode("overwrite").parquet(str(data))
generate_seconds = time.perf_counter() - t0
print(f"generated {N:,} units of {SCENARIO} (noise sd {NOISE_SD}) in {generate_seconds:.1f} s "
      f"with Spark {spark.version}, master {spark.sparkContext.master}")
spark.read.parquet(str(data)).limit(5).toPandas()
"""),
    md("""
## Run the distributed pipeline
Every stage runs: validation and the cross-fitted effects on Spark, the landmark t-SNE and
K-means on Dask, profile trees grown on a hashed sample and tested from leaf moments on Spark,
the report (subgroup effects from leaf sums) and the MLflow run. `on_stage` records the wall time
of each stage.
"""),
    code("""
from mlearner_dist.pipeline import run_pipeline
from mlearner_dist.summary import format_summary

out = OUT / f"scale_{N}"
marks = {}
def on_stage(stage, event):
    marks.setdefault(stage, {})[event] = time.perf_counter()

t0 = time.perf_counter()
result = run_pipeline(cfg, out, force=["validate"], on_stage=on_stage)
total_seconds = time.perf_counter() - t0
print(format_summary(result, out))
"""),
    md("## Where the time went"),
    code("""
timings = pd.DataFrame(
    [{"stage": "generate (Spark)", "seconds": generate_seconds}]
    + [{"stage": s, "seconds": m["end"] - m["start"]} for s, m in marks.items() if "end" in m]
)
timings["share"] = (timings["seconds"] / timings["seconds"].sum()).map("{:.0%}".format)
print(f"{N:,} units: pipeline {total_seconds:.0f} s wall time, "
      f"{N / total_seconds:,.0f} units per second; embedding path {result['embedding']['path']!r}")
timings.round(1)
"""),
    md("""
## Time and memory per stage against n
The committed benchmark files (`benchmarks/run_scale.py`, each measured with nothing else
running on the same 2-core machine; `results_1m.json`, `results_4m.json` with
`calibration.mode: fixed`, `results_1m_calibrated.json` and `results_10m.json` with the default
calibration, whose split runs inside the calibrate stage) give each stage's wall time and the
driver's peak memory. On log-log axes a stage whose cost is linear in n has slope 1 (dotted).
"""),
    code("""
import matplotlib.pyplot as plt
import numpy as np

runs = {}  # calibration -> {n: benchmark document}
for name in ("results_1m.json", "results_4m.json", "results_1m_calibrated.json",
             "results_10m.json"):
    path = ROOT / "benchmarks" / name
    if path.exists():
        doc = json.loads(path.read_text())
        kind = "fixed" if doc["calibration"] == "fixed" else "default"
        runs.setdefault(kind, {})[doc["n"]] = doc
stages = list(next(iter(next(iter(runs.values())).values()))["stage_memory"])
colours = dict(zip(stages, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
for kind, style in (("fixed", "-"), ("default", "--")):
    docs = runs.get(kind, {})
    ns = sorted(docs)
    for stage in stages:
        secs = [max(docs[n]["stage_memory"][stage]["seconds"], 0.05) for n in ns]
        mem = [docs[n]["stage_memory"][stage]["peak_driver_bytes"] / 2**30 for n in ns]
        label = stage if kind == "fixed" else None
        axes[0].plot(ns, secs, style, marker="o", color=colours[stage], label=label)
        axes[1].plot(ns, mem, style, marker="o", color=colours[stage], label=label)
    axes[0].plot(ns, [docs[n]["total_seconds"] for n in ns], "k" + style, lw=2, marker="s",
                 label=f"total ({kind} calibration)")
ref = np.array([1e6, 1e7])
axes[0].plot(ref, 100 * ref / ref[0], "k:", label="slope 1")
for ax, ylabel in zip(axes, ("seconds", "driver peak (GiB)")):
    ax.set_xscale("log"); ax.set_yscale("log"); ax.set_xlabel("units"); ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
axes[0].set_title("wall time per stage (solid: fixed, dashed: default calibration)", fontsize=9)
axes[1].set_title("driver (Python) peak memory", fontsize=9)
axes[0].legend(fontsize=7, loc="upper left")
fig.tight_layout()
from mlearner_dist import plots
path = plots.save_figure(fig, OUT / "scale_time_memory_by_n.png")
display(Image(filename=str(path)))
bench = {(kind, n): doc for kind, docs in runs.items() for n, doc in docs.items()}
pd.DataFrame([{"n": n, "calibration": doc["calibration"],
               "total seconds": doc["total_seconds"],
               "driver peak GiB": round(doc["peak_rss_bytes"] / 2**30, 2),
               "all processes GiB": round(doc["peak_total_rss_bytes"] / 2**30, 2),
               "profile": ", ".join(doc["variables"])} for (kind, n), doc in sorted(bench.items())])
"""),
    md("""
## The MLflow run
The run holds the configuration as parameters, the decision and average effects as metrics, the
`mlearner.*` tags, one child run per stage with its `seconds`, the figures and the subgroup model.
`mlearner runs --output DIR` lists the analyses of the store.
"""),
    code("""
import mlflow
from mlearner_dist.backends.mlflow_tracking import list_runs
from mlearner_dist.pipeline import tracking_uri_for

uri = tracking_uri_for(cfg, out)
client = mlflow.MlflowClient(uri)
run = client.get_run(result["mlflow_run_id"])
print("run", run.info.run_id, "experiment", run.info.experiment_id, "status", run.info.status)
tags = {k: v for k, v in run.data.tags.items() if k.startswith("mlearner.")}
display(pd.Series(tags, name="tag").to_frame())
children = client.search_runs([run.info.experiment_id],
                               filter_string=f"tags.mlflow.parentRunId = '{run.info.run_id}'")
stage_runs = {c.data.tags.get("mlearner.stage"): c for c in children
              if c.info.run_name.startswith("stage ")}
display(pd.DataFrame([{"child run": c.info.run_name, "run id": c.info.run_id,
                       "seconds": c.data.metrics.get("seconds")}
                      for c in (stage_runs[s] for s in marks if s in stage_runs)]))
metrics = pd.Series(run.data.metrics, name="value").sort_index()
shown = [m for m in metrics.index if not m.startswith(("p_y.", "p_m.", "wcss."))]
display(metrics[shown].to_frame())
print("artifacts:", sorted(a.path for a in client.list_artifacts(run.info.run_id)))
list_runs(uri, cfg.tracking.experiment)
"""),
]


@dataclass(frozen=True)
class NotebookSpec:
    """One notebook: its cells and its parameter sets.

    Parameters
    ----------
    cells : list of NotebookNode
        The cells; the ``parameters`` cell holds the full-size values.
    full : str
        The full-size parameters (the source of the ``parameters`` cell).
    stored : str
        The parameters of the stored outputs (moderate: they finish here in minutes).
    small : str
        The parameters the test suite uses (seconds to a minute or two per notebook).
    """

    cells: list[nbformat.NotebookNode]
    full: str
    stored: str
    small: str


NOTEBOOKS: dict[str, NotebookSpec] = {
    "01_jobs_ii.ipynb": NotebookSpec(
        cells=JOBS_II,
        full=JOBS_II_FULL,
        stored="""
# parameters (the stored run; the full-size values are in the note below)
N_ITER = 500
N_REPLICATES = 99
N_BOOTSTRAP = 1000
""",
        small="""
# parameters (small: the test suite)
N_ITER = 250
N_REPLICATES = 40
N_BOOTSTRAP = 100
""",
    ),
    "02_simulation_study.ipynb": NotebookSpec(
        cells=STUDY,
        full=STUDY_FULL,
        stored="""
# parameters (the stored run; the full-size values are in the note below)
N = 300
REPLICATES = 2
SCENARIOS = ["simple-all", "simple-part", "complex-all", "complex-part",
             "simple-null1", "simple-null2", "simple-global"]
NOISE = [0.01, 1.0]
N_ITER = 500
OURS_CALIBRATION = "split"
N_REPLICATES = 19
WORKERS = 2
""",
        small="""
# parameters (small: the test suite)
N = 200
REPLICATES = 1
SCENARIOS = ["simple-all", "simple-null2"]
NOISE = [0.01, 1.0]
N_ITER = 250
OURS_CALIBRATION = "split"
N_REPLICATES = 19
WORKERS = 1
""",
    ),
    "03_scale.ipynb": NotebookSpec(
        cells=SCALE,
        full=SCALE_FULL,
        stored="""
# parameters (the stored run; the full-size values are in the note below)
N = 1_000_000
SCENARIO = "simple-all"
NOISE_SD = 1.0
SETTINGS = []
""",
        small="""
# parameters (small: the test suite)
N = 20_000
SCENARIO = "simple-all"
NOISE_SD = 1.0
SETTINGS = ["embed.n_landmarks=1000", "embed.n_iter=250", "embed.grid_size=5000",
            "profile.max_rows=5000", "compute.spark.master=local[2]"]
""",
    ),
}

#: Environment of the notebook kernel (and so of its Spark and Dask workers), unless already set.
#: One OpenMP thread per process: on this 2-core machine, shared with other work, the default
#: (one thread per core) made scikit-learn's HistGradientBoosting 15x slower on small folds.
KERNEL_ENV_DEFAULTS = {"OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}


def build(name: str) -> nbformat.NotebookNode:
    """A fresh, unexecuted notebook (deep copies of the cell templates).

    Parameters
    ----------
    name : str
        A key of :data:`NOTEBOOKS`.

    Returns
    -------
    nbformat.NotebookNode
    """
    nb = nbformat.v4.new_notebook()
    nb.cells = copy.deepcopy(NOTEBOOKS[name].cells)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def _tagged(nb: nbformat.NotebookNode, tag: str) -> list[nbformat.NotebookNode]:
    return [c for c in nb.cells if tag in c.get("metadata", {}).get("tags", [])]


def execute(
    nb: nbformat.NotebookNode,
    parameters: str | None = None,
    *,
    timeout: int = 3600,
    env: dict[str, str] | None = None,
    full: str | None = None,
) -> float:
    """Execute ``nb`` in place and fill its run note; return the wall time in seconds.

    Parameters
    ----------
    nb : nbformat.NotebookNode
        A notebook from :func:`build`.
    parameters : str, optional
        Replaces the source of the cell tagged ``parameters`` (None: run the values it holds).
    timeout : int
        Seconds allowed per cell.
    env : dict, optional
        Extra environment variables for the kernel (e.g. ``MLEARNER_NOTEBOOK_OUT``), on top of the
        current environment and :data:`KERNEL_ENV_DEFAULTS`.
    full : str, optional
        The full-size parameters, quoted in the run note when ``parameters`` differ from them.

    Returns
    -------
    float
        Wall time of the execution.

    Raises
    ------
    nbclient.exceptions.CellExecutionError
        When a cell raises.
    """
    if parameters is not None:
        for cell in _tagged(nb, "parameters"):
            cell.source = parameters.strip()
    used = "\n".join(c.source for c in _tagged(nb, "parameters"))
    kernel_env = {**KERNEL_ENV_DEFAULTS, **os.environ, **(env or {})}
    started = time.perf_counter()
    NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}
    ).execute(env=kernel_env)
    seconds = time.perf_counter() - started
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"**Run note.** The outputs stored below were computed on {when} on a machine with "
        f"{os.cpu_count()} cores (shared with other work) in {seconds / 60:.1f} minutes, with the "
        "parameters now in the cell above:",
        "",
        "```python",
        used.strip(),
        "```",
    ]
    if full is not None and full.strip() != used.strip():
        lines += [
            "",
            "These are smaller than the full-size values, so the numbers below show that the "
            "analysis runs end to end and what its output looks like; they are not the full-size "
            "results. The full size is:",
            "",
            "```python",
            full.strip(),
            "```",
        ]
    for cell in _tagged(nb, "run-note"):
        cell.source = "\n".join(lines)
    return seconds


PRESETS = ("stored", "full", "small")


def main(argv: list[str] | None = None) -> int:
    """Write (and by default execute) the notebooks.

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-run", action="store_true", help="write without executing")
    parser.add_argument("--size", choices=PRESETS, default="stored", help="parameter set to run")
    parser.add_argument(
        "--installed",
        action="store_true",
        help="run the installed package (default: this checkout, through PYTHONPATH)",
    )
    parser.add_argument("names", nargs="*", default=list(NOTEBOOKS))
    args = parser.parse_args(argv)
    env = {}
    if not args.installed:
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
        )
    for name in args.names:
        spec = NOTEBOOKS[name]
        nb = build(name)
        if not args.no_run:
            seconds = execute(nb, getattr(spec, args.size), env=env, full=spec.full)
            print(f"executed {name} in {seconds:.0f} s")
        nbformat.write(nb, HERE / name)
        print(f"wrote {HERE / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
