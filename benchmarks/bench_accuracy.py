"""Accuracy of step 1 against careful analysts and peers (issue 15, acceptance figures).

Sections (``--sections``, comma-separated; default all), each printed and written into
``benchmarks/results_accuracy.json`` as soon as it finishes (other sections' entries are kept):

``jobs``
    Jobs II (``mlearner_dist.datasets.load_jobs_ii``, the covariates of ``conf/jobs_ii.yaml``):
    our whole-sample indirect effect (ACME) and its CI, with the default learner (``auto``) and
    the former default (``hist_gradient_boosting``, 100 rounds, no early stopping), against
    statsmodels ``Mediation`` (OLS ``M ~ T + X`` and ``Y ~ T + M + X``, categorical covariates
    as dummies, parametric, 2,000 draws). Targets: ours inside its CI, CI width <= 1.2x; every
    nuisance model's out-of-fold R^2 at least the constant model's minus 0.01.
``rmse``
    Relative RMSE ``sqrt(mean((NIE_hat - NIE)^2)) / sd(NIE)`` of the unit-level indirect effect
    on simple-all and complex-all at n = 20,000, noise sd 0.01 (target <= 0.25).
``drlearner``
    The per-unit total effect on simple-all (noise sd 1) at n = 20,000 and 200,000, ours against
    EconML's ``DRLearner`` (HistGradientBoosting nuisances and final model, cv = 5) run in its own
    virtual environment (``--econml-python``); relative RMSE and fit + predict time of both.
``coverage``
    Coverage of the 95% CIs of the whole-sample and of the leaf (true partition S) indirect,
    direct and total effects over R replicates (seeds 0..R-1) on simple-all and simple-part at
    n = 5,000, noise sd 1, against the population values (whole sample: 0.25 * 2 sqrt(2/pi) per
    mediated path; leaf S = 1: 2 sqrt(2/pi); leaf S = 0: 0). Resumable: each replicate is
    appended to ``benchmarks/results_accuracy_replicates.jsonl`` as it finishes and skipped when
    the script runs again. Target >= 0.9 (tolerance of a 0.95 rate over R replicates:
    0.95 - 3 sqrt(0.95 * 0.05 / R)).

The machine's load (``uptime``) is recorded with every section::

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/bench_accuracy.py --sections jobs,rmse
    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/bench_accuracy.py --sections coverage
        --reps 200
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from mlearner_dist.core.effects import cross_fit_effects
from mlearner_dist.core.learners import categorical_columns
from mlearner_dist.core.nuisance import NuisanceSpec
from mlearner_dist.core.roles import Roles
from mlearner_dist.core.subgroup_effects import adjusted_subgroup_effects
from mlearner_dist.datasets import load_jobs_ii, simulate

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results_accuracy.json"
REPLICATES = HERE / "results_accuracy_replicates.jsonl"
SEED = 2025  # conf/base.yaml random_state
N_FOLDS = 5
ROW_BUDGET = 50_000  # conf/base.yaml effects.row_budget
COVS = tuple(f"X{i}" for i in range(1, 11))
SIM_ROLES = Roles("unit_id", "T", "Y", ("M",), COVS)
JOBS_COVS = ("econ_hard", "sex", "age", "occp", "education")
JOBS_ROLES = Roles("unit_id", "treat", "depress2", ("job_seek",), JOBS_COVS)
Z95 = 1.959963984540054


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "unavailable"


def _spec(learner: str = "auto", **kw: Any) -> NuisanceSpec:
    return NuisanceSpec(learner=learner, row_budget=ROW_BUDGET, random_state=SEED, **kw)


def _mean_ci(s: np.ndarray) -> dict[str, float]:
    m, se = float(np.mean(s)), float(np.std(s, ddof=1) / math.sqrt(len(s)))
    return {"estimate": m, "ci_low": m - Z95 * se, "ci_high": m + Z95 * se, "width": 2 * Z95 * se}


def _save(section: str, payload: dict[str, Any]) -> None:
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    data[section] = payload
    RESULTS.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n")


# --------------------------------------------------------------------------------------------
# Jobs II against statsmodels
# --------------------------------------------------------------------------------------------
def _constant_r2(effects: pd.DataFrame, frame: pd.DataFrame, target: str, arm: int) -> float:
    """Out-of-fold R^2 of the constant model: the training folds' mean of the target (same arm)."""
    fold = effects["fold"].to_numpy()
    t = frame["treat"].to_numpy()
    src = effects if target == "mu_y1m" else frame
    y = src[target].to_numpy(dtype=float)
    vals = []
    for k in np.unique(fold):
        test = (fold == k) & (t == arm)
        train = (fold != k) & (t == arm)
        yt = y[test]
        sst = ((yt - yt.mean()) ** 2).sum()
        vals.append(1 - ((yt - y[train].mean()) ** 2).sum() / sst)
    return float(np.mean(vals))


def _ours_jobs(frame: pd.DataFrame, learner: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    eff, diag = cross_fit_effects(frame, JOBS_ROLES, _spec(learner), n_folds=N_FOLDS, seed=SEED)
    elapsed = time.perf_counter() - t0
    frame = frame.sort_values("unit_id").reset_index(drop=True)
    targets = {"mu_y1": ("depress2", 1), "mu_y0": ("depress2", 0), "mu_m1": ("job_seek", 1)}
    targets.update({"mu_m0": ("job_seek", 0), "mu_y1m": ("depress2", 1), "eta": ("mu_y1m", 0)})
    r2 = {}
    for name, (target, arm) in targets.items():
        ours = diag["models"][name]["mean"]
        const = _constant_r2(eff, frame, target, arm)
        r2[name] = {
            "oof_r2": ours,
            "constant_oof_r2": const,
            "ok": ours is not None and ours >= const - 0.01,
        }
    return {
        "learner": learner,
        "indirect": _mean_ci(eff["score_indirect"].to_numpy()),
        "direct": _mean_ci(eff["score_direct"].to_numpy()),
        "total": _mean_ci(eff["score_total"].to_numpy()),
        "nuisance_r2": r2,
        "auc": {k: v["mean"] for k, v in diag["models"].items() if v["metric"] == "auc"},
        "learner_choice": {k: v["chosen"] for k, v in diag["learner_choice"].items()},
        "density_ratio": diag.get("density_ratio"),
        "seconds": round(elapsed, 2),
    }


def _statsmodels_jobs(frame: pd.DataFrame) -> dict[str, Any]:
    import statsmodels.formula.api as smf
    from statsmodels.stats.mediation import Mediation

    cats = set(categorical_columns(frame, JOBS_COVS))
    rhs = " + ".join(f"C({c})" if c in cats else c for c in JOBS_COVS)
    out_model = smf.ols(f"depress2 ~ treat + job_seek + {rhs}", data=frame)
    med_model = smf.ols(f"job_seek ~ treat + {rhs}", data=frame)
    np.random.seed(0)  # noqa: NPY002 -- statsmodels draws from the global generator
    res = Mediation(out_model, med_model, "treat", "job_seek").fit(
        method="parametric", n_rep=2000
    )
    tab = res.summary()

    def row(name: str) -> dict[str, float]:
        r = tab.loc[name]
        lo, hi = float(r["Lower CI bound"]), float(r["Upper CI bound"])
        return {"estimate": float(r["Estimate"]), "ci_low": lo, "ci_high": hi, "width": hi - lo}

    return {
        "indirect": row("ACME (treated)"),
        "direct": row("ADE (control)"),
        "total": row("Total effect"),
        "formula_outcome": f"depress2 ~ treat + job_seek + {rhs}",
        "formula_mediator": f"job_seek ~ treat + {rhs}",
        "method": "parametric",
        "n_rep": 2000,
    }


def run_jobs() -> dict[str, Any]:
    frame = load_jobs_ii()[["unit_id", "treat", "job_seek", "depress2", *JOBS_COVS]]
    sm = _statsmodels_jobs(frame)
    out: dict[str, Any] = {"n": len(frame), "statsmodels": sm, "uptime": _uptime()}
    for label, learner in (("after", "auto"), ("before", "hist_gradient_boosting")):
        ours = _ours_jobs(frame, learner)
        ind, ref = ours["indirect"], sm["indirect"]
        ours["inside_statsmodels_ci"] = ref["ci_low"] <= ind["estimate"] <= ref["ci_high"]
        ours["width_ratio"] = ind["width"] / ref["width"]
        ours["total_width_ratio"] = ours["total"]["width"] / sm["total"]["width"]
        ours["all_r2_ok"] = all(v["ok"] for v in ours["nuisance_r2"].values())
        out[label] = ours
    a = out["after"]
    out["targets_met"] = {
        "acme_inside_statsmodels_ci": a["inside_statsmodels_ci"],
        "width_ratio_le_1.2": a["width_ratio"] <= 1.2,
        "r2_not_below_constant_by_0.01": a["all_r2_ok"],
    }
    for label in ("before", "after"):
        o = out[label]
        print(
            f"Jobs II {label:6s} ({o['learner']}): ACME {o['indirect']['estimate']:+.4f} "
            f"[{o['indirect']['ci_low']:+.4f}, {o['indirect']['ci_high']:+.4f}] width ratio "
            f"{o['width_ratio']:.2f}; total {o['total']['estimate']:+.4f} width ratio "
            f"{o['total_width_ratio']:.2f}; R2 "
            + ", ".join(
                f"{k} {v['oof_r2']:.3f} (const {v['constant_oof_r2']:.3f})"
                for k, v in o["nuisance_r2"].items()
            )
        )
    s = sm["indirect"]
    print(
        f"Jobs II statsmodels: ACME {s['estimate']:+.4f} [{s['ci_low']:+.4f}, {s['ci_high']:+.4f}]"
        f"; total {sm['total']['estimate']:+.4f} [{sm['total']['ci_low']:+.4f}, "
        f"{sm['total']['ci_high']:+.4f}]"
    )
    print(f"Jobs II targets: {out['targets_met']}")
    return out


# --------------------------------------------------------------------------------------------
# RMSE of the indirect effect at n = 20,000
# --------------------------------------------------------------------------------------------
def _rel_rmse(est: np.ndarray, truth: np.ndarray) -> float:
    return float(np.sqrt(np.mean((est - truth) ** 2)) / np.std(truth))


def _aligned(eff: pd.DataFrame, df: pd.DataFrame, col: str) -> np.ndarray:
    return eff.set_index("unit_id").loc[df["unit_id"].to_numpy(), col].to_numpy()


def run_rmse(n: int = 20_000) -> dict[str, Any]:
    out: dict[str, Any] = {"n": n, "noise_sd": 0.01, "seed": 1, "uptime": _uptime()}
    for scenario in ("simple-all", "complex-all"):
        df = simulate(scenario, n, seed=1, noise_sd=0.01)
        t0 = time.perf_counter()
        eff, diag = cross_fit_effects(df, SIM_ROLES, _spec(), n_folds=N_FOLDS, seed=1)
        sec = time.perf_counter() - t0
        rmse = _rel_rmse(_aligned(eff, df, "indirect"), df["true_indirect"].to_numpy())
        out[scenario] = {
            "relative_rmse_indirect": rmse,
            "target_le_0.25": rmse <= 0.25,
            "seconds": round(sec, 1),
            "learner_choice": {k: v["chosen"] for k, v in diag["learner_choice"].items()},
        }
        print(f"RMSE {scenario} n={n}: relative RMSE of NIE {rmse:.3f} ({sec:.0f} s)")
    return out


# --------------------------------------------------------------------------------------------
# Total effect against EconML's DRLearner
# --------------------------------------------------------------------------------------------
_ECONML_SCRIPT = r"""
import sys, time, numpy as np
from econml.dr import DRLearner
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
d = np.load(sys.argv[1])
t0 = time.perf_counter()
est = DRLearner(model_propensity=HistGradientBoostingClassifier(random_state=0),
                model_regression=HistGradientBoostingRegressor(random_state=0),
                model_final=HistGradientBoostingRegressor(random_state=0), cv=5, random_state=0)
est.fit(d["Y"], d["T"], X=d["X"])
tau = est.effect(d["X"])
np.save(sys.argv[2], np.asarray(tau, dtype=float).ravel())
print(time.perf_counter() - t0)
"""


def _drlearner(df: pd.DataFrame, python: str) -> tuple[np.ndarray, float]:
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "d.npz", Path(tmp) / "tau.npy"
        np.savez(
            src,
            X=df[list(COVS)].to_numpy(),
            T=df["T"].to_numpy(),
            Y=df["Y"].to_numpy(),
        )
        res = subprocess.run(
            [python, "-c", _ECONML_SCRIPT, str(src), str(dst)],
            capture_output=True,
            text=True,
            check=True,
            env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
        )
        return np.load(dst), float(res.stdout.strip().splitlines()[-1])


def run_drlearner(
    python: str, sizes: tuple[int, ...] = (20_000, 200_000), row_budget: int = ROW_BUDGET
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "scenario": "simple-all",
        "noise_sd": 1.0,
        "peer": "econml DRLearner (HGB propensity, regression and final model; cv=5)",
        "ours": f"cross_fit_effects, learner auto, {N_FOLDS} folds, row_budget {row_budget}, "
        "per-unit total = indirect + direct",
        "uptime": _uptime(),
    }
    for n in sizes:
        df = simulate("simple-all", n, seed=1, noise_sd=1.0)
        truth = df["true_total"].to_numpy()
        t0 = time.perf_counter()
        spec = NuisanceSpec(row_budget=row_budget, random_state=SEED)
        eff, _ = cross_fit_effects(df, SIM_ROLES, spec, n_folds=N_FOLDS, seed=1)
        ours_sec = time.perf_counter() - t0
        ours = _rel_rmse(_aligned(eff, df, "total"), truth)
        tau, peer_sec = _drlearner(df, python)
        peer = _rel_rmse(tau, truth)
        out[str(n)] = {
            "ours_relative_rmse_total": ours,
            "ours_seconds": round(ours_sec, 1),
            "drlearner_relative_rmse_total": peer,
            "drlearner_seconds": round(peer_sec, 1),
            "target_ours_le_drlearner": ours <= peer,
        }
        print(
            f"total effect n={n}: ours {ours:.3f} in {ours_sec:.1f} s, DRLearner {peer:.3f} in "
            f"{peer_sec:.1f} s"
        )
    out["uptime_end"] = _uptime()
    return out


# --------------------------------------------------------------------------------------------
# Coverage over replicates (resumable)
# --------------------------------------------------------------------------------------------
ROOT2PI = 2 * math.sqrt(2 / math.pi)  # E[X1 + X2 | X1 > 0, X2 > 0]


def _truth(scenario: str) -> dict[str, dict[str, float]]:
    direct = 1.0 if scenario == "simple-part" else 0.0
    leaf1 = {"indirect": ROOT2PI, "direct": direct * ROOT2PI}
    leaf1["total"] = leaf1["indirect"] + leaf1["direct"]
    return {
        "whole": {k: 0.25 * v for k, v in leaf1.items()},
        "leaf1": leaf1,
        "leaf0": {"indirect": 0.0, "direct": 0.0, "total": 0.0},
    }


def _replicate(
    scenario: str, seed: int, n: int, candidates: tuple[str, ...] | None = None
) -> dict[str, Any]:
    df = simulate(scenario, n, seed=seed, noise_sd=1.0)
    t0 = time.perf_counter()
    spec = _spec() if candidates is None else _spec(auto_candidates=candidates)
    eff, diag = cross_fit_effects(df, SIM_ROLES, spec, n_folds=N_FOLDS, seed=seed)
    truth = _truth(scenario)
    df = df.sort_values("unit_id").reset_index(drop=True)
    rec: dict[str, Any] = {"scenario": scenario, "seed": seed, "n": n}
    for name in ("indirect", "direct", "total"):
        ci = _mean_ci(eff[f"score_{name}"].to_numpy())
        rec[f"whole_{name}"] = [ci["estimate"], ci["ci_low"], ci["ci_high"]]
        rec[f"whole_{name}_covered"] = ci["ci_low"] <= truth["whole"][name] <= ci["ci_high"]
    leaf = df["in_subgroup"].astype(int).to_numpy()
    adj = adjusted_subgroup_effects(eff, leaf).set_index("leaf")
    for g in (0, 1):
        for name in ("indirect", "direct", "total"):
            lo, hi = adj.loc[g, f"{name}_ci_low"], adj.loc[g, f"{name}_ci_high"]
            rec[f"leaf{g}_{name}"] = [float(adj.loc[g, name]), float(lo), float(hi)]
            rec[f"leaf{g}_{name}_covered"] = bool(lo <= truth[f"leaf{g}"][name] <= hi)
    rec["n_truncated"] = diag["density_ratio"]["n_truncated"]
    rec["mu_y1m"] = diag["learner_choice"].get("mu_y1m", {}).get("chosen")
    rec["seconds"] = round(time.perf_counter() - t0, 1)
    return rec


def _coverage_summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for scenario in ("simple-all", "simple-part"):
        recs = [r for r in records if r["scenario"] == scenario]
        if not recs:
            continue
        R = len(recs)
        rates = {
            k[: -len("_covered")]: float(np.mean([r[k] for r in recs]))
            for k in recs[0]
            if k.endswith("_covered")
        }
        tol = 0.95 - 3 * math.sqrt(0.95 * 0.05 / R)
        out[scenario] = {
            "R": R,
            "coverage": rates,
            "min_coverage": min(rates.values()),
            "target_ge_0.9": min(rates.values()) >= 0.9,
            "lower_tolerance_of_0.95": tol,
            "mean_seconds_per_replicate": float(np.mean([r["seconds"] for r in recs])),
        }
    return out


def replicates_file(tag: str = "") -> Path:
    """The coverage replicates of the default (``tag`` empty) or of a named candidate list."""
    return REPLICATES if not tag else REPLICATES.with_name(f"{REPLICATES.stem}_{tag}.jsonl")


def run_coverage(
    reps: int,
    n: int = 5000,
    budget_s: float | None = None,
    candidates: tuple[str, ...] | None = None,
    tag: str = "",
) -> dict[str, Any]:
    """Coverage at the true partition; ``candidates`` (with ``tag``) replace the auto list."""
    path = replicates_file(tag)
    done: list[dict[str, Any]] = []
    if path.exists():
        done = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    have = {(r["scenario"], r["seed"]) for r in done}
    start = time.perf_counter()
    for seed in range(reps):
        for scenario in ("simple-all", "simple-part"):
            if (scenario, seed) in have:
                continue
            if budget_s is not None and time.perf_counter() - start > budget_s:
                break
            rec = _replicate(scenario, seed, n, candidates)
            with path.open("a") as fh:
                fh.write(json.dumps(rec) + "\n")
            done.append(rec)
            print(
                f"coverage {scenario} seed {seed}: whole indirect {rec['whole_indirect']} "
                f"({rec['seconds']} s)",
                flush=True,
            )
    summary = _coverage_summary(done)
    summary.update(
        {"n": n, "noise_sd": 1.0, "level": 0.95, "replicates_file": path.name}
    )
    if candidates is not None:
        summary["auto_candidates"] = list(candidates)
    summary["uptime"] = _uptime()
    for scenario in ("simple-all", "simple-part"):
        if scenario in summary:
            s = summary[scenario]
            print(f"coverage {scenario}: R = {s['R']}, " + ", ".join(
                f"{k} {v:.3f}" for k, v in s["coverage"].items()
            ))
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sections", default="jobs,rmse,drlearner,coverage")
    p.add_argument("--reps", type=int, default=200, help="coverage replicates per scenario")
    p.add_argument("--budget-seconds", type=float, default=None, help="stop coverage after this")
    p.add_argument(
        "--econml-python",
        default=str(HERE.parent / ".venv-econml" / "bin" / "python"),
        help="interpreter of a virtual environment with econml installed",
    )
    p.add_argument("--dr-sizes", default="20000,200000")
    p.add_argument(
        "--candidates",
        default="",
        help="coverage with this comma-separated effects.auto_candidates list instead of the "
        "default, in section coverage_<tag> and its own replicates file (needs --tag)",
    )
    p.add_argument("--tag", default="", help="name of the --candidates variant")
    p.add_argument(
        "--dr-row-budget",
        type=int,
        default=ROW_BUDGET,
        help="our row budget in the drlearner section (other than the default: a separate entry)",
    )
    args = p.parse_args(argv)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    with threadpool_limits(limits=1):
        for section in sections:
            if section == "jobs":
                _save("jobs_ii", run_jobs())
            elif section == "rmse":
                _save("rmse_indirect", run_rmse())
            elif section == "drlearner":
                sizes = tuple(int(x) for x in args.dr_sizes.split(","))
                rb = args.dr_row_budget
                key = "total_vs_drlearner" + ("" if rb == ROW_BUDGET else f"_row_budget_{rb}")
                _save(key, run_drlearner(args.econml_python, sizes, rb))
            elif section == "coverage":
                cands = tuple(c for c in args.candidates.split(",") if c) or None
                if (cands is None) != (not args.tag):
                    raise SystemExit("--candidates and --tag go together")
                key = "coverage" + (f"_{args.tag}" if args.tag else "")
                _save(
                    key,
                    run_coverage(
                        args.reps, budget_s=args.budget_seconds, candidates=cands, tag=args.tag
                    ),
                )
            else:
                raise SystemExit(f"unknown section {section!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
