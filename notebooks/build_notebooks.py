"""Build (and execute) the three narrative notebooks from the cell sources below.

    python notebooks/build_notebooks.py            # write and execute with the stored parameters
    python notebooks/build_notebooks.py --no-run   # write without executing

Each notebook's first code cell is tagged ``parameters``; the test suite replaces it with small-n
values and executes every notebook with nbclient, so the narratives stay correct as the code
changes. The stored outputs come from a real run of this script.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent


def md(text: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_markdown_cell(text.strip())


def code(text: str, tags: tuple[str, ...] = ()) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(text.strip())
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


SETUP = """
import json, os, sys, warnings
from pathlib import Path
import pandas as pd
from IPython.display import Image, display
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
warnings.filterwarnings("ignore")
ROOT = Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()
OUT = Path(os.environ.get("MLEARNER_NOTEBOOK_OUT", ROOT / "runs" / "notebooks"))
OUT.mkdir(parents=True, exist_ok=True)
"""

JOBS_II = [
    md("""
# The Jobs II trial with the M-learner

The JOBS II field experiment (Vinokur et al.) randomised 899 unemployed job seekers to a job-search
skills workshop (`treat`) or a booklet. We ask whether the workshop's effect on depression six
months later (`depress2`), and the part of it that flows through job-search self-efficacy
(`job_seek`, the mediator), differs between subgroups defined by economic hardship, sex, age,
occupation and education. Everything below uses the public API only.
"""),
    code(
        """
# parameters: the test suite runs this notebook with small values
N_ITER = 4000          # t-SNE iterations (the reference's setting for Jobs II)
N_REPLICATES = 19      # null replicates for the calibrated threshold
N_BOOTSTRAP = 1000
""",
        tags=("parameters",),
    ),
    code(SETUP),
    md("## Data and roles"),
    code("""
from mlearner_dist.datasets import load_jobs_ii
from mlearner_dist.config import load_config

data = load_jobs_ii()
cfg = load_config([ROOT / "conf" / "jobs_ii.yaml"], [
    f"embed.n_iter={N_ITER}", f"calibration.n_replicates={N_REPLICATES}",
    f"subgroups.n_bootstrap={N_BOOTSTRAP}", "compute.spark.master=local[2]",
])
print(cfg.roles)
data[["treat", "job_seek", "depress2", "econ_hard", "sex", "age", "occp", "education"]].describe(include="all").T
"""),
    md(
        "## The whole analysis\n`run_pipeline` runs every stage on local Spark and Dask and logs to MLflow."
    ),
    code("""
from mlearner_dist.pipeline import run_pipeline
from mlearner_dist.summary import format_summary

out = OUT / "jobs_ii"
result = run_pipeline(cfg, out)
print(format_summary(result, out))
"""),
    md(
        "## Average effects\nIndirect (through job-search self-efficacy), direct and total, with 95% CIs from the doubly robust scores."
    ),
    code("""
pd.DataFrame({k: v for k, v in result["average_effects"].items() if v}).T
"""),
    md("## Embedding and clusters"),
    code("""
display(Image(filename=str(out / "figures" / "embedding_clusters.png")))
display(Image(filename=str(out / "figures" / "embedding_effect.png")))
"""),
    md("## Profile trees and the calibrated decision"),
    code("""
configs = pd.DataFrame(result["configurations"])
display(configs[["k", "tree_id", "n_leaves", "variables", "selected_for_test", "p_y", "p_m"]])
display(Image(filename=str(out / "figures" / "profile_tree.png")))
display(Image(filename=str(out / "figures" / "p_leaf_by_k.png")))
if (out / "figures" / "null_calibration.png").exists():
    display(Image(filename=str(out / "figures" / "null_calibration.png")))
print("p_leaf", result["p_leaf"], "threshold", result["threshold"], "declared", result["declared"])
print(result["calibration"]["how"])
"""),
    md("## Subgroup effects (adjusted, and the reference's unadjusted beside them)"),
    code("""
rows = []
for s in result["subgroups"]:
    for kind, eff in (("adjusted", s), ("unadjusted", s["unadjusted"])):
        row = {"rule": s["rule"], "n": s["n"], "kind": kind}
        for name in ("indirect", "direct", "total", "prop_mediated"):
            e = eff.get(name)
            row[name] = None if not e else f"{e['estimate']:+.3f} [{e['ci_low']:+.3f}, {e['ci_high']:+.3f}]"
        rows.append(row)
display(pd.DataFrame(rows))
display(Image(filename=str(out / "figures" / "subgroup_effects.png")))
"""),
    md("## What was found, in plain language"),
    code("""
avg = result["average_effects"]
lines = [f"On average the workshop changed depression by {avg['total']['estimate']:+.3f} "
         f"(95% CI {avg['total']['ci_low']:+.3f} to {avg['total']['ci_high']:+.3f}); "
         f"{avg['indirect']['estimate']:+.3f} of it through job-search self-efficacy."]
if result["declared"]:
    lines.append(f"Heterogeneity was declared (p_leaf {result['p_leaf']:.2g} < threshold "
                 f"{result['threshold']:.2g}). The subgroups are:")
    lines += [f"  - {s['rule']} (n = {s['n']}): indirect {s['indirect']['estimate']:+.3f}"
              for s in result["subgroups"]]
else:
    lines.append(f"No heterogeneity was declared: p_leaf {result['p_leaf']:.2g} is not below the "
                 f"calibrated threshold {result['threshold']:.2g}, so the subgroups above should "
                 "not be read as different from each other.")
print("\\n".join(lines))
"""),
    md("## The reference's total-effect analysis (change in depression, no mediator)"),
    code("""
cfg_total = load_config([ROOT / "conf" / "jobs_ii.yaml", ROOT / "conf" / "jobs_ii_total.yaml"], [
    f"embed.n_iter={N_ITER}", f"calibration.n_replicates={N_REPLICATES}",
    f"subgroups.n_bootstrap={N_BOOTSTRAP}", "compute.spark.master=local[2]",
])
total = run_pipeline(cfg_total, OUT / "jobs_ii_total")
print(format_summary(total, OUT / "jobs_ii_total"))
"""),
]

STUDY = [
    md("""
# The paper's simulation study

The `study` command runs the whole M-learner over R simulated data sets of a scenario and reports
how often heterogeneity is declared and which covariates the chosen profile uses. Heterogeneity is
driven by X1 and X2 only; X5..X10 are noise. We run each scenario at the paper's noise (sd 0.01)
and at a realistic noise (sd 1), with our settings and with the reference's, and compare with the
reference's baseline (K-means on the raw covariates instead of on the effects).
"""),
    code(
        """
# parameters
N = 1000
REPLICATES = 100
SCENARIOS = ["simple-all", "simple-part", "complex-all", "complex-part",
             "simple-null1", "simple-null2", "simple-global"]
NOISE = [0.01, 1.0]
N_REPLICATES = 19
""",
        tags=("parameters",),
    ),
    code(SETUP),
    code("""
from mlearner_dist.config import load_config
from mlearner_dist.study import run_study

settings = {
    "ours": [],
    "reference": [ROOT / "conf" / "reference.yaml"],
    "baseline": [ROOT / "conf" / "reference.yaml"],
}
extra = {"ours": [f"calibration.n_replicates={N_REPLICATES}"], "reference": [],
         "baseline": ["cluster.space=covariates"]}
rows, ecdf = [], {}
for label, files in settings.items():
    cfg = load_config(files, extra[label])
    for scenario in SCENARIOS:
        for sd in NOISE:
            s = run_study(cfg, scenario=scenario, n=N, replicates=REPLICATES, noise_sd=sd,
                          seed=1, workers=2, output=OUT / "study" / f"{label}_{scenario}_{sd}.json")
            rows.append({"setting": label, "scenario": scenario, "noise_sd": sd,
                         "declared": s["declared_rate"], "X1&X2": s["x1_and_x2_rate"],
                         "X5..X10": s["noise_covariate_rate"], "leaves": s["mean_leaves"],
                         "seconds": s["seconds"]})
            ecdf[f"{label} {scenario} sd={sd}"] = s["p_leaf"]
table = pd.DataFrame(rows)
table
"""),
    md("## Empirical CDF of p_leaf"),
    code("""
from mlearner_dist import plots
fig = plots.plot_pleaf_ecdf({k: v for k, v in ecdf.items() if k.startswith("ours")})
fig
"""),
]

SCALE = [
    md("""
# Scale: a million units on the distributed pipeline

We generate the data with Spark (no pandas frame of n rows on the driver), run every stage with
the default configuration (fixed threshold, so the time is the analysis itself), and show where the
time went and the MLflow run.
"""),
    code(
        """
# parameters
N = 1_000_000
""",
        tags=("parameters",),
    ),
    code(SETUP),
    code("""
import time
from mlearner_dist.backends.spark_session import get_spark
from mlearner_dist.backends.spark_simulate import spark_simulate

spark = get_spark()
data = OUT / f"scale_{N}.parquet"
t0 = time.perf_counter()
spark_simulate(spark, "simple-all", N, seed=1, noise_sd=1.0).write.mode("overwrite").parquet(str(data))
print(f"generated {N:,} units in {time.perf_counter() - t0:.1f} s")
"""),
    code("""
from mlearner_dist.config import load_config
from mlearner_dist.pipeline import run_pipeline

cfg = load_config([ROOT / "conf" / "simulated.yaml"], [f"data.source={data}", "calibration.mode=fixed"])
out = OUT / f"scale_{N}"
t0 = time.perf_counter()
result = run_pipeline(cfg, out, force=["validate"])
print(f"whole pipeline: {time.perf_counter() - t0:.1f} s")
pd.Series(result["timings"], name="seconds").to_frame()
"""),
    code("""
import mlflow
client = mlflow.MlflowClient(f"sqlite:///{(out / 'mlflow.db').resolve()}")
run = client.get_run(result["mlflow_run_id"])
print(run.info.run_id, run.data.tags.get("mlearner.chosen_k"), run.data.tags.get("mlearner.declared"))
pd.Series(run.data.metrics).sort_index().head(20)
"""),
]

NOTEBOOKS = {
    "01_jobs_ii.ipynb": JOBS_II,
    "02_simulation_study.ipynb": STUDY,
    "03_scale.ipynb": SCALE,
}


def build(name: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = NOTEBOOKS[name]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    return nb


def execute(nb: nbformat.NotebookNode, parameters: str | None = None, timeout: int = 3600) -> None:
    """Execute in place; ``parameters`` replaces the cell tagged ``parameters``."""
    if parameters is not None:
        for cell in nb.cells:
            if "parameters" in cell.get("metadata", {}).get("tags", []):
                cell.source = parameters
    NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}
    ).execute()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--no-run", action="store_true")
    parser.add_argument("names", nargs="*", default=list(NOTEBOOKS))
    args = parser.parse_args(argv)
    for name in args.names:
        nb = build(name)
        if not args.no_run:
            execute(nb)
        nbformat.write(nb, HERE / name)
        print(f"wrote {HERE / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
