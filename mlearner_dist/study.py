"""Simulation studies: the whole method over R simulated data sets (the ``mlearner study`` command).

Each replicate draws a data set from one of the paper's scenarios, runs the in-memory M-learner
(effects, embedding, K-means, profile trees, tests and the configured calibration) and records the
decision and the chosen profile. Replicates run in parallel on a local Dask cluster of processes.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlearner_dist.config import Config, estimator_params
from mlearner_dist.core.estimator import MLearner
from mlearner_dist.core.roles import Roles
from mlearner_dist.stages import write_json_atomic

logger = logging.getLogger(__name__)

NOISE_COVARIATES = tuple(f"X{i}" for i in range(5, 11))
#: The ``--set`` overrides of every setting of the study runner (benchmarks/study.py). B = 49 per
#: direction: the cross-split decision p-value 2 / (B + 1) = 0.04 can fall below 0.05 (B = 19
#: cannot); bootstrap intervals and the sensitivity curves are not what the study measures, and
#: seed stability is descriptive, not part of the decision: off.
STUDY_OVERRIDES = (
    "calibration.n_replicates=49",
    "sensitivity.enabled=false",
    "stability.n_seeds=0",
    "subgroups.n_bootstrap=20",
)


def study_roles(has_mediator: bool, scenario: str | None = None) -> Roles:
    """Roles of the data :func:`mlearner_dist.datasets.simulate` writes.

    With ``scenario``, its trial design too: the ``stratum`` column as ``strata`` of
    ``stratified-null``, the ``cluster`` column of the cluster scenarios.
    """
    from mlearner_dist.datasets import SCENARIOS

    info = SCENARIOS[scenario] if scenario is not None else None
    return Roles(
        unit_id="unit_id",
        treatment="T",
        outcome="Y",
        mediators=("M",) if has_mediator else (),
        covariates=tuple(f"X{i}" for i in range(1, 11)),
        strata=info.strata if info is not None else (),
        cluster=(info.cluster or None) if info is not None else None,
    )


def run_replicate(
    cfg: Config,
    scenario: str,
    n: int,
    noise_sd: float,
    seed: int,
    *,
    ignore_design: bool = False,
) -> dict[str, Any]:
    """One replicate: simulate, fit, and summarise the decision and the reported profile.

    ``ignore_design=True`` analyses a stratified or cluster scenario as if its units had been
    randomised individually (no strata, no clusters): the comparison the study makes to show
    what the design-aware analysis buys.

    Observational scenarios (``confounded-null``, ``confounded-alt``) are analysed with
    ``design: observational`` whatever ``cfg`` says: their assignment depends on X1.
    """
    from mlearner_dist.datasets import SCENARIOS, scenario_has_mediator, simulate

    frame = simulate(scenario, n, seed=seed, noise_sd=noise_sd)
    roles = study_roles(scenario_has_mediator(scenario), None if ignore_design else scenario)
    # seed stability is a per-analysis diagnostic: the study measures the decisions themselves
    params = {**estimator_params(cfg), "random_state": int(seed), "stability_seeds": 0}
    if SCENARIOS[scenario].design == "observational":
        params["design"] = "observational"
    model = MLearner(**params)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit_frame(frame, roles)
    chosen = model.chosen_
    calib = model.calibration_
    out = {
        "seed": int(seed),
        "declared": bool(model.declared_),
        "p_leaf": float(model.p_leaf_),
        "threshold": float(model.threshold_),
        "mc_pvalue": calib.get("mc_pvalue"),
        "n_replicates": int(calib.get("n_replicates", 0)),
        "statistic": str(chosen.get("response")),
        "design": model.design,
        "design_ignored": bool(ignore_design),
        "k": int(chosen["k"]),
        "n_leaves": int(chosen["n_leaves"]),
        "variables": list(chosen.get("variables") or []),
        "seconds": round(time.perf_counter() - started, 1),
    }
    # whether the treated units cover the controls' mediator values (the whole-sample overlap
    # diagnostic of the effects stage): where not, the indirect effect rests on extrapolation
    ratio = (getattr(model.selection_, "diagnostics", None) or {}).get("density_ratio") or {}
    if "indirect_supported" in ratio:
        out["indirect_supported"] = bool(ratio["indirect_supported"])
        out["mean_density_ratio"] = ratio.get("mean_weight")
    if calib.get("directions"):
        out["directions"] = [
            {
                "direction": d["direction"],
                "mc_pvalue": float(d["mc_pvalue"]),
                "p_observed": float(d["p_observed"]),
                "variables": list(d["chosen"].get("variables") or []),
            }
            for d in calib["directions"]
        ]
    total = getattr(model, "targets_", {}).get("total")
    if roles.has_mediator and total and "p_leaf" in total:
        out["total"] = {
            "declared": bool(total["declared"]),
            "p_leaf": float(total["p_leaf"]),
            "threshold": float(total["threshold"]),
            "n_leaves": int(total["chosen"]["n_leaves"]),
            "variables": list(total["chosen"].get("variables") or []),
        }
    return out


def summarise_replicates(
    replicates: list[dict[str, Any]], drivers: tuple[str, ...] = ("X1", "X2")
) -> dict[str, Any]:
    """Declared rate, variable-selection rates among declared, mean leaves, and every p_leaf.

    ``drivers_rate``: among declared replicates, how often the profile uses every covariate the
    tested effect depends on (``drivers``; None for a scenario without heterogeneity).
    """
    declared = [r for r in replicates if r["declared"]]
    r_count = len(replicates)

    def rate(rows: list[dict[str, Any]], pred: Any) -> float | None:
        return float(np.mean([pred(r) for r in rows])) if rows else None

    return {
        "replicates": r_count,
        "declared_rate": float(len(declared) / r_count) if r_count else 0.0,
        "drivers": list(drivers),
        "drivers_rate": (
            rate(declared, lambda r: set(drivers) <= set(r["variables"])) if drivers else None
        ),
        "median_leaves": float(np.median([r["n_leaves"] for r in replicates])) if r_count else 0.0,
        "x1_and_x2_rate": rate(declared, lambda r: {"X1", "X2"} <= set(r["variables"])),
        "noise_covariate_rate": rate(
            declared, lambda r: bool(set(r["variables"]) & set(NOISE_COVARIATES))
        ),
        "mean_leaves": float(np.mean([r["n_leaves"] for r in replicates])) if r_count else 0.0,
        "p_leaf": [float(r["p_leaf"]) for r in replicates],
    }


def study_rate_rows(doc: dict[str, Any], *, alpha: float = 0.05) -> pd.DataFrame:
    """One row per stored setting and target of a ``benchmarks/study.py`` results document.

    Parameters
    ----------
    doc : dict
        The parsed ``benchmarks/results_study.json`` (``settings``: key -> ``scenario``, ``n``,
        ``noise_sd``, ``overrides``, ``replicates``: seed -> replicate record).
    alpha : float
        Level of the decisions (for the bound of the null rows).

    Returns
    -------
    DataFrame
        ``label`` (scenario, n, sd, target and the study's non-default overrides), ``scenario``,
        ``target`` (``indirect`` or ``total``), ``R``, ``declared`` (count), ``rate``, ``null``
        (the target has no driver in the scenario: the rate is a Type I error), ``bound``
        (``alpha + 3 sqrt(alpha (1 - alpha) / R)``), ``ok`` (null rows: rate <= bound), ``B``
        and ``overrides``. The top-level target is the indirect effect with a mediator, else
        the total effect; the total target of a mediated scenario is its own row.
    """
    from mlearner_dist.datasets import SCENARIOS, scenario_has_mediator

    common = set(STUDY_OVERRIDES)
    rows = []
    for setting in doc.get("settings", {}).values():
        reps = list(setting["replicates"].values())
        if not reps:
            continue
        scenario = setting["scenario"]
        top = "indirect" if scenario_has_mediator(scenario) else "total"
        extra = [o for o in setting["overrides"] if o not in common]
        name = f"{scenario} n={setting['n']} sd={setting['noise_sd']:g}"
        decided = {top: [bool(r["declared"]) for r in reps]}
        if top == "indirect":
            decided["total"] = [bool(r["total"]["declared"]) for r in reps if r.get("total")]
        for target, flags in decided.items():
            if not flags:
                continue
            r_count = len(flags)
            null = not SCENARIOS[scenario].drivers(target)
            bound = alpha + 3 * math.sqrt(alpha * (1 - alpha) / r_count)
            rate = sum(flags) / r_count
            rows.append(
                {
                    "label": " ".join([name, target, *extra]),
                    "scenario": scenario,
                    "target": target,
                    "R": r_count,
                    "declared": int(sum(flags)),
                    "rate": rate,
                    "null": null,
                    "bound": bound,
                    "ok": (rate <= bound) if null else None,
                    "B": ",".join(str(b) for b in sorted({r.get("n_replicates") for r in reps})),
                    "overrides": ",".join(setting["overrides"]),
                }
            )
    return pd.DataFrame(rows)


def format_table(summary: dict[str, Any]) -> str:
    """A readable one-scenario table of the study's rates."""

    def pct(x: float | None) -> str:
        return "  n/a" if x is None else f"{100 * x:5.1f}%"

    head = f"{'scenario':<16}{'n':>7}{'sd':>6}{'R':>5}{'declared':>10}{'X1&X2':>8}"
    head += f"{'X5..X10':>9}{'leaves':>8}"
    row = (
        f"{summary['scenario']:<16}{summary['n']:>7}{summary['noise_sd']:>6g}"
        f"{summary['replicates']:>5}{pct(summary['declared_rate']):>10}"
        f"{pct(summary['x1_and_x2_rate']):>8}{pct(summary['noise_covariate_rate']):>9}"
        f"{summary['mean_leaves']:>8.2f}"
    )
    return head + "\n" + row


def run_study(
    cfg: Config,
    *,
    scenario: str,
    n: int,
    replicates: int,
    noise_sd: float,
    seed: int,
    workers: int,
    output: Path,
) -> dict[str, Any]:
    """Run a simulation study and write its JSON (and an ECDF plot of p_leaf beside it).

    Parameters
    ----------
    cfg : Config
        Method settings (columns and data sections are ignored: the scenario fixes them).
    scenario : str
        One of the paper's scenario names.
    n, replicates : int
        Units per data set and number of data sets.
    noise_sd : float
        Noise standard deviation on M and Y.
    seed : int
        Replicate r uses seed ``seed + r``.
    workers : int
        Parallel worker processes (1: run in this process).
    output : Path
        Where the JSON goes; the plot is written next to it as ``<stem>_ecdf.png``.
    """
    from mlearner_dist.datasets import SCENARIOS

    if scenario not in SCENARIOS:
        from mlearner_dist.exceptions import ConfigError

        raise ConfigError(f"unknown scenario {scenario!r}; choose one of {sorted(SCENARIOS)}")
    started = time.perf_counter()
    seeds = [seed + r for r in range(replicates)]
    if workers <= 1:
        results = [run_replicate(cfg, scenario, n, noise_sd, s) for s in seeds]
    else:
        from mlearner_dist.backends.dask_cluster import get_client

        client, close = get_client(
            None, n_workers=workers, threads_per_worker=1, memory_limit="6GiB"
        )
        try:
            futures = client.map(
                run_replicate,
                [cfg] * replicates,
                [scenario] * replicates,
                [n] * replicates,
                [noise_sd] * replicates,
                seeds,
                pure=False,
            )
            results = client.gather(futures)
        finally:
            close()
    from mlearner_dist.datasets import scenario_has_mediator

    target = "indirect" if scenario_has_mediator(scenario) else "total"
    summary = summarise_replicates(list(results), SCENARIOS[scenario].drivers(target))
    summary.update(
        {
            "scenario": scenario,
            "n": n,
            "noise_sd": noise_sd,
            "seed": seed,
            "fidelity": cfg.fidelity,
            "calibration": cfg.calibration.mode,
            "seconds": round(time.perf_counter() - started, 1),
            "replicate_details": list(results),
        }
    )
    summary["table"] = format_table(summary)
    output.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(output, summary)
    from mlearner_dist import plots

    fig = plots.plot_pleaf_ecdf({f"{scenario} (sd {noise_sd:g})": summary["p_leaf"]})
    plots.save_figure(fig, output.with_name(output.stem + "_ecdf.png"))
    logger.info("study %s: %s", scenario, summary["table"].splitlines()[-1])
    return summary
