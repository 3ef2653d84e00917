"""Issue 16 benchmark: one selection, stage by stage, and the landmark embedding at scale.

Measures, each in a fresh subprocess so the thread settings hold:

1. one in-memory selection (:meth:`mlearner_dist.core.estimator.MLearner.select`: effects,
   embedding, K-means, profile trees and tests; no calibration) on simple-all
   (:func:`mlearner_dist.datasets.simulate`, noise sd 0.01, seed 1) at n = 1,000, 3,000 and
   10,000, on one core (``OMP_NUM_THREADS=1``, ``embed.n_jobs=1``) and on all cores, with the
   default configuration and with ``effects.learner=linear`` beside it (the learner is issue
   "est"'s; the line shows what the embedding, clustering and trees cost once the learners are
   cheap), and with the previous defaults (``embed.n_iter=2000``, ``profile.cv_folds=10``,
   ``embed.n_jobs=2``) for the before/after comparison;
2. the landmark embedding (fit + projection of every unit,
   :func:`~mlearner_dist.core.embedding.embed`) of 20,000 and 1,000,000 units of a two-group
   effect mixture (40% near 2, the rest near 0, as benchmarks/bench_embed.py) on one core, new
   and previous settings, with the adjusted Rand index between the K-means labels (K = 2..5) of
   the two at 20,000;
3. the reference algorithm on the same scenario and size: the R harness of the reference
   (``../shared/reference/mlearner_reference.R``: in-sample random forests of 2,000 trees, the
   n x n distance matrix, exact t-SNE, the rpart grid with 10-fold CV and the F-tests) when
   ``Rscript`` and its packages are installed (``apt-get install r-base-core
   r-cran-randomforest r-cran-rtsne r-cran-rpart``); it draws simple-all at noise sd 0.01 with R's
   own random numbers, so the data are the same design, not the same rows. Beside it, always, this
   package's ``fidelity: reference`` path (in-sample random forests, Rtsne's kernel, 2000
   iterations, 10-fold CV, first Pareto tree) on our rows. The summary gives the ratios
   reference / ours (wall and CPU seconds, one thread each);
4. with ``--calibration-replicates B``: the null calibration of one data set (B replicates that
   re-run the whole selection) on 1 and 2 local Dask workers, and from the one-core selection
   times the largest n at which B = 99 null replicates fit in 10 minutes on this machine
   (``null_max_n_measured``: ``ceil(99 / 2)`` rounds of two parallel replicates, each a
   selection; the time is interpolated log-log between the measured sizes).

Times are wall seconds and CPU seconds of the measured process; the machine is shared, so the
load (``uptime``) is recorded before and after every measurement. Results accumulate in the JSON
(``--json``): a measurement already there is skipped unless ``--force``, so an interrupted run
resumes.

Usage::

    python benchmarks/bench_selection.py                 # everything (long)
    python benchmarks/bench_selection.py --quick         # n = 1,000 and 3,000, 20,000 embed
    python benchmarks/bench_selection.py --n 1000 --skip-reference
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_JSON = ROOT / "benchmarks" / "results_selection.json"
#: Previous defaults (before issue 16) of the keys this issue changed.
PREVIOUS = ["embed.n_iter=2000", "profile.cv_folds=10", "embed.n_jobs=2",
            "embed.n_landmarks=5000", "embed.grid_size=20000"]
TARGETS = {"selection_1000_one_core_s": 2.0, "selection_3000_one_core_s": 15.0,
           "landmark_embed_s": 30.0}


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


# --- children (run in a subprocess) ------------------------------------------------------------


def _timed(stages: dict[str, dict[str, float]], name: str, fn: Any) -> Any:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        w, c = time.perf_counter(), time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            s = stages.setdefault(name, {"wall_s": 0.0, "cpu_s": 0.0})
            s["wall_s"] += time.perf_counter() - w
            s["cpu_s"] += time.process_time() - c
    return wrapper


def child_selection(n: int, sets: list[str]) -> dict[str, Any]:
    """One selection at ``n`` with ``--set`` overrides, timed by wrapping estimator's calls."""
    from mlearner_dist.config import load_config
    from mlearner_dist.core import estimator as est
    from mlearner_dist.core.validation import validate_frame
    from mlearner_dist.datasets import simulate
    from mlearner_dist.study import study_roles

    cfg = load_config([], overrides=["calibration.mode=fixed", *sets])
    from mlearner_dist.config import estimator_params

    model = est.MLearner(**estimator_params(cfg))
    model.check_params()
    roles = study_roles(True)
    frame = simulate("simple-all", n, seed=1, noise_sd=0.01)
    frame, _ = validate_frame(frame, roles, min_treated=2, min_control=2, n_folds=model.n_folds)
    frame = frame.sort_values(roles.unit_id, kind="stable").reset_index(drop=True)
    stages: dict[str, dict[str, float]] = {}
    for attr, name in (("cross_fit_effects", "effects"), ("embed", "embed"),
                       ("kmeans_for_k", "kmeans"), ("choose_profile", "profile_and_tests")):
        setattr(est, attr, _timed(stages, name, getattr(est, attr)))
    w, c = time.perf_counter(), time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sel = model.select(frame, roles)
    total = {"wall_s": time.perf_counter() - w, "cpu_s": time.process_time() - c}
    rest = {k: total[k] - sum(s[k] for s in stages.values()) for k in total}
    stages["other"] = rest
    return {
        "n": n, "sets": sets, "fidelity": cfg.fidelity, "learner": cfg.effects.learner,
        "embed": {"n_iter": cfg.embed.n_iter, "n_jobs": cfg.embed.n_jobs,
                  "path": sel.embedding_info.get("path")},
        "cv_folds": cfg.profile.cv_folds,
        "total": {k: round(v, 3) for k, v in total.items()},
        "stages": {k: {kk: round(vv, 3) for kk, vv in v.items()} for k, v in stages.items()},
        "p_leaf": float(sel.p_leaf), "chosen_k": int(sel.chosen["k"]),
        "variables": list(sel.chosen.get("variables") or []),
    }


def _mixture(n: int) -> tuple[Any, Any]:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(11)
    group = rng.random(n) < 0.4
    v = np.where(group, rng.normal(2.0, 0.3, n), rng.normal(0.0, 0.3, n))
    eff = pd.DataFrame({"indirect": v})
    return eff, np.arange(n)


def child_landmark(n: int, settings: str, with_labels: bool) -> dict[str, Any]:
    """Landmark embedding (fit + projection of every unit) of ``n`` mixture units."""
    import numpy as np

    from mlearner_dist.config import load_config
    from mlearner_dist.core.clustering import kmeans_for_k
    from mlearner_dist.core.embedding import effect_matrix, embed, unit_keys

    cfg = load_config([], overrides=PREVIOUS[:2] + PREVIOUS[3:] + ["embed.n_jobs=1"]
                      if settings == "previous" else ["embed.n_jobs=1"])
    e = cfg.embed
    eff, ids = _mixture(n)
    w, c = time.perf_counter(), time.process_time()
    V = effect_matrix(eff, ["indirect"], "standardize")
    keys = unit_keys(ids, cfg.random_state)
    Y, info = embed(V, exact_max_n=e.exact_max_n, n_landmarks=e.n_landmarks,
                    perplexity=e.perplexity, n_iter=e.n_iter, kernel_power=e.kernel_power,
                    grid_size=e.grid_size, random_state=cfg.random_state, n_jobs=e.n_jobs,
                    keys=keys)
    out: dict[str, Any] = {
        "n": n, "settings": settings, "wall_s": round(time.perf_counter() - w, 3),
        "cpu_s": round(time.process_time() - c, 3),
        "n_landmarks": info["n_landmarks"], "codebook_size": info["codebook_size"],
        "n_iter": info["n_iter"],
    }
    if with_labels:
        km = kmeans_for_k(Y, [2, 3, 4, 5], n_init=10, max_iter=50, random_state=cfg.random_state,
                          sample_order=keys)
        path = Path(os.environ["BENCH_LABELS"])
        np.savez(path, **{str(k): km[k][0] for k in km})
        out["labels_file"] = str(path)
    return out


def child_calibration(n: int, workers: int, replicates: int, kind: str = "permutation"
                      ) -> dict[str, Any]:
    """The null calibration of one data set on ``workers`` local Dask workers.

    ``kind="permutation"``: B permutation replicates, each a whole selection (linear learner, so
    the figure is the embedding, clustering and trees); ``kind="default"``: the default
    configuration's calibration (cross-split score replicates, B per direction, both targets,
    seed stability), on simple-all at noise sd 1.
    """
    from mlearner_dist.backends.dask_cluster import get_client
    from mlearner_dist.backends.dask_map import dask_map
    from mlearner_dist.config import estimator_params, load_config
    from mlearner_dist.core.estimator import MLearner
    from mlearner_dist.datasets import simulate
    from mlearner_dist.study import study_roles

    if kind == "permutation":
        sets = ["calibration.mode=null", "calibration.replicates=permutation",
                "effects.learner=linear", f"calibration.n_replicates={replicates}",
                f"calibration.null_max_n={max(n, 10)}"]
        frame = simulate("simple-all", n, seed=1, noise_sd=0.01)
    else:
        sets = [f"calibration.n_replicates={replicates}", f"calibration.null_max_n={max(n, 10)}"]
        frame = simulate("simple-all", n, seed=1, noise_sd=1.0)
    cfg = load_config([], overrides=sets)
    client, close = get_client(None, n_workers=workers, threads_per_worker=1,
                               memory_limit="4GiB")
    try:
        w = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = MLearner(**estimator_params(cfg)).fit_frame(frame, study_roles(True),
                                                                 map_fn=dask_map(client))
        wall = time.perf_counter() - w
    finally:
        close()
    cal = model.calibration_
    # the cross-split record has no seconds of its own: the fit's wall time minus the selection
    seconds = cal.get("seconds")
    if seconds is None:
        seconds = round(wall - model.selection_seconds_, 2)
    return {"n": n, "workers": workers, "replicates": replicates, "kind": kind, "sets": sets,
            "wall_s": round(wall, 2), "calibration_s": seconds,
            "projected_s": cal.get("projected_seconds"),
            "selection_s": round(model.selection_seconds_, 2),
            "threshold": cal.get("threshold"), "declared": bool(model.declared_)}


def child_perturbation(n: int) -> dict[str, Any]:
    """How reproducible the previous embedding's K-means labels were at n (same seed)."""
    import numpy as np
    from openTSNE import TSNE
    from openTSNE.affinity import PerplexityBasedNN
    from sklearn.metrics import adjusted_rand_score

    from mlearner_dist.core.clustering import kmeans_for_k
    from mlearner_dist.core.distances import effect_distances
    from mlearner_dist.core.effects import cross_fit_effects
    from mlearner_dist.core.embedding import effect_matrix
    from mlearner_dist.core.nuisance import NuisanceSpec
    from mlearner_dist.datasets import simulate
    from mlearner_dist.study import study_roles

    frame = simulate("simple-all", n, seed=1, noise_sd=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        eff, _ = cross_fit_effects(frame, study_roles(True), NuisanceSpec(random_state=1),
                                   n_folds=5, seed=1)
    V = effect_matrix(eff, ["indirect"], "standardize")
    aff = PerplexityBasedNN(effect_distances(V, kernel_power=2), perplexity=30, method="exact",
                            metric="precomputed", k_neighbors=90, n_jobs=1, random_state=0)
    rows = []
    for seed in range(3):
        labels = {}
        for name, scale, jobs in (("base", 1.0, 1), ("init*(1+1e-6)", 1 + 1e-6, 1),
                                  ("two threads", 1.0, 2)):
            init = np.random.default_rng(seed).normal(0.0, 1e-4, (n, 2)) * scale
            emb = TSNE(perplexity=30, early_exaggeration_iter=250, n_iter=1750,
                       metric="precomputed", n_jobs=jobs, negative_gradient_method="bh",
                       random_state=seed).fit(affinities=aff, initialization=init)
            km = kmeans_for_k(np.asarray(emb), [2, 3, 4, 5], n_init=10, random_state=seed)
            labels[name] = {k: km[k][0] for k in km}
        for name in ("init*(1+1e-6)", "two threads"):
            rows.append({"seed": seed, "perturbation": name,
                         "ari_by_k": {str(k): round(adjusted_rand_score(labels["base"][k],
                                                                        labels[name][k]), 3)
                                      for k in (2, 3, 4, 5)}})
    return {"n": n, "what": "previous schedule (2000 iterations) against itself, same seed",
            "rows": rows}


# --- parent ------------------------------------------------------------------------------------


def _run_child(args: list[str], threads: int, extra_env: dict[str, str] | None = None,
               timeout: int = 1800) -> dict[str, Any]:
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads),
                "MKL_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)})
    env.update(extra_env or {})
    before = _uptime()
    done = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True,
                          text=True, env=env, timeout=timeout, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"child {args} failed:\n{done.stderr[-3000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    out["threads"] = threads
    out["uptime_before"] = before
    out["uptime_after"] = _uptime()
    return out


#: The R harness of the reference algorithm (beside the repository, in ../shared).
R_HARNESS = ROOT.parent / "shared" / "reference" / "mlearner_reference.R"


def _r_available() -> bool:
    if not (shutil.which("Rscript") and R_HARNESS.exists()):
        return False
    probe = subprocess.run(
        ["Rscript", "-e", "library(randomForest); library(Rtsne); library(rpart)"],
        capture_output=True, text=True)
    return probe.returncode == 0


def _reference_engine(r_ok: bool) -> str:
    if r_ok:
        return (f"R harness {R_HARNESS.relative_to(ROOT.parent)} (Rscript, one thread) beside "
                "this package's fidelity: reference path (Python)")
    return ("Rscript or its packages are not installed here: the reference is this package's "
            "fidelity: reference path (Python) only, not the R harness")


def run_r_reference(n: int, seed: int = 1, timeout: int = 3600) -> dict[str, Any]:
    """One run of the R harness: its ``STEP`` timings (wall and CPU seconds) and ``RESULT`` lines.

    Parameters
    ----------
    n : int
        Units (even, >= 100).
    seed : int
        R's ``set.seed``.
    timeout : int
        Seconds before the run is abandoned.

    Returns
    -------
    dict
        ``total`` and ``stages`` as the Python measurements (``wall_s``, ``cpu_s``), ``config``
        (R and package versions), ``result`` (the chosen profiles), the load before and after.
    """
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"})
    before = _uptime()
    done = subprocess.run(["Rscript", str(R_HARNESS), str(n), str(seed)], capture_output=True,
                          text=True, env=env, timeout=timeout, cwd=R_HARNESS.parent)
    if done.returncode != 0:
        raise RuntimeError(f"Rscript {R_HARNESS.name} {n} {seed} failed:\n{done.stderr[-3000:]}")
    stages: dict[str, dict[str, float]] = {}
    result: list[str] = []
    config = ""
    for line in done.stdout.splitlines():
        step = re.match(r"STEP\s+(\S+)\s+elapsed=\s*([\d.]+)\s+cpu=\s*([\d.]+)", line)
        if step:
            stages[step[1]] = {"wall_s": float(step[2]), "cpu_s": float(step[3])}
        elif line.startswith("RESULT ") and ":" in line.split()[1]:
            result.append(line[7:])
        elif line.startswith("CONFIG "):
            config = line[7:]
    total = stages.pop("total")
    return {"n": n, "seed": seed, "engine": "R harness", "config": config, "total": total,
            "stages": stages, "result": result, "threads": 1, "uptime_before": before,
            "uptime_after": _uptime(),
            "data": "simple-all, noise sd 0.01, drawn by the harness with R's set.seed(seed)"}


def null_max_n_measured(one_core_s: dict[int, float], replicates: int = 99, workers: int = 2,
                        budget_s: float = 600.0) -> int | None:
    """The largest n whose null calibration (``replicates`` selections, ``workers`` at a time)
    fits in ``budget_s``, interpolating the one-core selection times log-log.

    Parameters
    ----------
    one_core_s : dict of int to float
        Wall seconds of one selection at each measured n (at least two sizes).
    replicates, workers : int
    budget_s : float

    Returns
    -------
    int or None
        Rounded down to two significant digits; None with fewer than two sizes. Beyond the
        largest measured n the last segment's slope is extended.
    """
    import math

    pts = sorted((n, t) for n, t in one_core_s.items() if t > 0)
    if len(pts) < 2:
        return None
    per = budget_s / math.ceil(replicates / workers)
    if pts[0][1] > per:
        return None
    pairs = list(itertools.pairwise(pts))
    # the segment where the time crosses the per-replicate budget, else the last one (extended)
    (na, ta), (nb, tb) = next(((a, b) for a, b in pairs if b[1] >= per), pairs[-1])
    slope = math.log(tb / ta) / math.log(nb / na)
    best = na * (per / ta) ** (1.0 / slope) if slope > 0 else float(nb)
    digits = 10 ** max(0, int(math.log10(best)) - 1)
    return int(best // digits * digits)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="*", default=None,
                    help="selection sizes (default 1000 3000 10000; --quick: 1000 3000)")
    ap.add_argument("--landmark-n", type=int, nargs="*", default=None,
                    help="landmark embedding sizes (default 20000 1000000; --quick: 20000)")
    ap.add_argument("--skip-reference", action="store_true")
    ap.add_argument("--skip-previous", action="store_true",
                    help="do not time the previous defaults")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--force", action="store_true", help="re-measure what the JSON already has")
    ap.add_argument("--calibration-replicates", type=int, default=0,
                    help="also time the null calibration (B replicates, n = 1,000, linear "
                    "learner) on 1 and 2 local Dask workers (default 0: skip)")
    ap.add_argument("--default-calibration-n", type=int, nargs="*", default=[],
                    help="with --calibration-replicates: also time the default calibration "
                    "(cross-split, B = 99 per direction, 2 workers) at these n")
    ap.add_argument("--r-max-n", type=int, default=3000,
                    help="largest n the R harness runs at (its exact t-SNE grows as n^2; "
                    "3,000 takes ~8 minutes)")
    ap.add_argument("--json", type=Path, default=DEFAULT_JSON)
    ap.add_argument("--child", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "selection":
            res = child_selection(int(rest[0]), rest[1:])
        elif kind == "landmark":
            res = child_landmark(int(rest[0]), rest[1], rest[2] == "labels")
        elif kind == "calibration":
            res = child_calibration(int(rest[0]), int(rest[1]), int(rest[2]), *rest[3:4])
        else:
            res = child_perturbation(int(rest[0]))
        print(json.dumps(res))
        return

    sizes = args.n if args.n is not None else ([1000, 3000] if args.quick else [1000, 3000, 10000])
    lm_sizes = (args.landmark_n if args.landmark_n is not None
                else ([20000] if args.quick else [20000, 1_000_000]))
    cores = os.cpu_count() or 1
    results: dict[str, Any] = json.loads(args.json.read_text()) if args.json.exists() else {}
    results.setdefault("measurements", {})
    results["machine"] = {"cpu_count": cores, "python": sys.version.split()[0]}
    r_ok = _r_available()  # one probe of Rscript and its packages per run
    results["reference_engine"] = _reference_engine(r_ok)
    results["targets"] = TARGETS
    results["previous_defaults"] = PREVIOUS
    meas = results["measurements"]

    def save() -> None:
        args.json.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")

    def measure(key: str, child: list[str], threads: int, **kw: Any) -> dict[str, Any] | None:
        if key in meas and not args.force:
            return meas[key]
        print(f"[{time.strftime('%H:%M:%S')}] {key} ...", flush=True)
        try:
            meas[key] = _run_child(child, threads, **kw)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            meas[key] = {"error": str(exc)[-2000:]}
        save()
        m = meas[key]
        print(f"    {json.dumps(m.get('total', m.get('wall_s', m.get('error'))))}", flush=True)
        return m

    for n in sizes:
        plans = [("ours_one_core", ["embed.n_jobs=1"], 1),
                 ("ours_linear_one_core", ["embed.n_jobs=1", "effects.learner=linear"], 1),
                 (f"ours_all_cores_{cores}", [f"embed.n_jobs={cores}"], cores)]
        if not args.skip_previous:
            prev = [*PREVIOUS[:2], *PREVIOUS[3:], "embed.n_jobs=1"]  # one thread, as ours
            plans.append(("previous_one_core", prev, 1))
            plans.append(("previous_linear_one_core", [*prev, "effects.learner=linear"], 1))
        if not args.skip_reference:
            plans.append(("reference_one_core", ["fidelity=reference", "embed.n_jobs=1"], 1))
        for name, sets, threads in plans:
            measure(f"selection_{n}_{name}", ["selection", str(n), *sets], threads)
        if not args.skip_reference and r_ok and n <= args.r_max_n:
            key = f"selection_{n}_reference_R_one_core"
            if key not in meas or args.force:
                print(f"[{time.strftime('%H:%M:%S')}] {key} ...", flush=True)
                try:
                    meas[key] = run_r_reference(n + n % 2)
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    meas[key] = {"error": str(exc)[-2000:]}
                save()
                print(f"    {json.dumps(meas[key].get('total', meas[key].get('error')))}",
                      flush=True)

    label_files = {}
    for n in lm_sizes:
        for settings in ("ours", "previous"):
            if settings == "previous" and args.skip_previous:
                continue
            with_labels = n <= 100_000
            path = Path("/tmp") / f"bench_selection_labels_{n}_{settings}.npz"
            label_files[(n, settings)] = path
            measure(f"landmark_{n}_{settings}",
                    ["landmark", str(n), settings, "labels" if with_labels else "none"], 1,
                    extra_env={"BENCH_LABELS": str(path)})
        a, b = label_files.get((n, "ours")), label_files.get((n, "previous"))
        if a and b and a.exists() and b.exists():
            import numpy as np
            from sklearn.metrics import adjusted_rand_score

            la, lb = np.load(a), np.load(b)
            meas[f"landmark_{n}_ari_ours_vs_previous"] = {
                k: round(float(adjusted_rand_score(la[k], lb[k])), 4) for k in la.files}
            # the mixture's two groups are the truth a good K = 2 clustering recovers
            truth = np.random.default_rng(11).random(n) < 0.4
            meas[f"landmark_{n}_ari_with_mixture_groups"] = {
                name: {k: round(float(adjusted_rand_score(lab[k], truth)), 4) for k in lab.files}
                for name, lab in (("ours", la), ("previous", lb))}
            save()
    if not args.quick:
        measure("perturbation_1000", ["perturbation", "1000"], 1)
    if args.calibration_replicates:
        b = args.calibration_replicates
        for workers in (1, 2):
            measure(f"calibration_1000_B{b}_{workers}_workers",
                    ["calibration", "1000", str(workers), str(b), "permutation"], 1)
        for n in args.default_calibration_n:
            measure(f"calibration_default_{n}_B99_2_workers",
                    ["calibration", str(n), "2", "99", "default"], 1)

    # summary: targets and ratios
    summary: dict[str, Any] = {}
    sizes = sorted({int(k.split("_")[1]) for k in meas if k.startswith("selection_")})
    lm_sizes = sorted({int(k.split("_")[1]) for k in meas
                       if k.startswith("landmark_") and k.endswith("_ours")})
    for n in sizes:
        ours = meas.get(f"selection_{n}_ours_one_core", {}).get("total")
        lin = meas.get(f"selection_{n}_ours_linear_one_core", {}).get("total")
        prev = meas.get(f"selection_{n}_previous_one_core", {}).get("total")
        ref = meas.get(f"selection_{n}_reference_one_core", {}).get("total")
        ref_r = meas.get(f"selection_{n}_reference_R_one_core", {}).get("total")
        row: dict[str, Any] = {}
        for label, t in (("ours", ours), ("ours_linear", lin), ("previous", prev),
                         ("reference", ref), ("reference_R", ref_r)):
            if t:
                row[f"{label}_cpu_s"] = t["cpu_s"]
                row[f"{label}_wall_s"] = t["wall_s"]
        if ref_r and ours:
            row["reference_R_over_ours_wall"] = round(ref_r["wall_s"] / ours["wall_s"], 2)
            row["reference_R_over_ours_cpu"] = round(ref_r["cpu_s"] / ours["cpu_s"], 2)
        target = TARGETS.get(f"selection_{n}_one_core_s")
        if target and ours:
            row["target_one_core_s"] = target
            row["meets_target"] = ours["wall_s"] <= target
        if ref and ours:
            row["reference_over_ours_cpu"] = round(ref["cpu_s"] / ours["cpu_s"], 2)
        if ref and lin:
            row["reference_over_ours_linear_cpu"] = round(ref["cpu_s"] / lin["cpu_s"], 2)
        if prev and ours:
            row["previous_over_ours_cpu"] = round(prev["cpu_s"] / ours["cpu_s"], 2)
        summary[f"selection_{n}"] = row
    for n in lm_sizes:
        m = meas.get(f"landmark_{n}_ours", {})
        if "cpu_s" in m:
            summary[f"landmark_{n}"] = {"ours_cpu_s": m["cpu_s"], "ours_wall_s": m["wall_s"],
                                        "target_s": TARGETS["landmark_embed_s"]}
    one_core = {n: meas[f"selection_{n}_ours_one_core"]["total"]["wall_s"] for n in sizes
                if "total" in meas.get(f"selection_{n}_ours_one_core", {})}
    summary["permutation_max_n_measured"] = null_max_n_measured(one_core)
    summary["permutation_max_n_rule"] = (
        "largest n with ceil(99 / 2) x (one-core selection wall seconds) <= 600 s, log-log "
        "between the measured sizes: B = 99 permutation replicates in 10 minutes on 2 workers")
    default = {m["n"]: m["calibration_s"] for k, m in meas.items()
               if k.startswith("calibration_default_") and m.get("calibration_s")}
    if len(default) >= 2:
        # the default calibration is one job (not B selections): budget 600 s for one "replicate"
        summary["null_max_n_measured"] = null_max_n_measured(default, replicates=1, workers=1)
        summary["null_max_n_rule"] = (
            "largest n whose default calibration (cross-split, B = 99 per direction, both "
            "targets, seed stability; 2 Dask workers) takes <= 600 s, log-log between the "
            "measured sizes")
    results["summary"] = summary
    results["uptime_end"] = _uptime()
    save()
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
