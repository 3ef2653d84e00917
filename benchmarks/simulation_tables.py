"""The paper's simulation study as tables: writes ``docs/simulation_study.md``.

Runs :func:`mlearner_dist.study.run_study` (the function behind ``mlearner study``) for every
mediation scenario of the paper, at the paper's noise (sd 0.01) and a realistic one (sd 1), with
three settings:

* ``ours``: the defaults, with the threshold calibrated on each data set (``--ours-calibration``:
  ``null`` re-runs the selection on null replicates, ``split`` tests once on a held-out half);
* ``reference``: ``conf/reference.yaml`` (``fidelity: reference``, the fixed threshold 0.0043);
* ``baseline``: the reference's baseline, K-means on the covariates (``cluster.space=covariates``).

Every table in the document is produced by this code from the studies' results; the command line
and the parameters are printed at its top. The per-study JSON files (every replicate's p_leaf,
decision and chosen variables) go to ``--json-dir``.

Usage::

    python benchmarks/simulation_tables.py --n 300 --replicates 2           # minutes
    python benchmarks/simulation_tables.py --n 1000 --replicates 100 \\
        --n-iter 2000 --ours-calibration null                              # the paper's size
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mlearner_dist.datasets import SCENARIOS, scenario_has_mediator

ROOT = Path(__file__).resolve().parents[1]

#: The paper's scenarios with a mediator, in the package's order.
MEDIATION_SCENARIOS = tuple(s for s in SCENARIOS if scenario_has_mediator(s))

#: What a good method does in each scenario (the decision is on the mediator model).
TRUTH = {
    "simple-all": "heterogeneous NIE",
    "simple-part": "heterogeneous NIE",
    "complex-all": "heterogeneous NIE",
    "complex-part": "heterogeneous NIE",
    "simple-null1": "NIE = 0 (NDE varies)",
    "simple-null2": "NIE = 0, M irrelevant",
    "simple-global": "NIE = 1 for everyone",
    "mediator-slope": "NIE = 1 + S (only M -> Y varies)",
    "confounded-null": "NIE = 0.5 for everyone (observational)",
    "confounded-alt": "NIE = 0.5 + 1{X2 > 0} (observational)",
}

SETTING_NAMES = ("ours", "reference", "baseline")


@dataclass(frozen=True)
class Setting:
    """One method setting: configuration files and ``--set`` overrides.

    Parameters
    ----------
    name : str
        ``ours``, ``reference`` or ``baseline``.
    files : tuple of str
        Configuration files, relative to the repository root.
    overrides : tuple of str
        ``key=value`` overrides applied after the files.
    description : str
        One line for the document.
    """

    name: str
    files: tuple[str, ...]
    overrides: tuple[str, ...]
    description: str

    def command(self, args: argparse.Namespace) -> str:
        """The equivalent ``mlearner study`` command line (scenario and noise left as names)."""
        flags = [f"--config {f}" for f in self.files] + [f"--set {s}" for s in self.overrides]
        return (
            f"mlearner study --scenario SCENARIO --n {args.n} --replicates {args.replicates} "
            f"--noise-sd SD --seed {args.seed} --workers {args.workers} {' '.join(flags)} "
            "--output FILE.json"
        )


def make_settings(args: argparse.Namespace) -> dict[str, Setting]:
    """The three settings for these arguments.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed arguments (``n_iter``, ``ours_calibration``, ``null_replicates``).

    Returns
    -------
    dict of str to Setting
    """
    common = (f"embed.n_iter={args.n_iter}", "embed.n_jobs=1")
    ours_cal = [f"calibration.mode={args.ours_calibration}"]
    if args.ours_calibration == "null":
        ours_cal.append(f"calibration.n_replicates={args.null_replicates}")
    return {
        "ours": Setting(
            "ours",
            (),
            (*common, *ours_cal),
            "the defaults: cross-fitted nested effects, standardised t-SNE, one-SE trees, "
            f"threshold calibrated on each data set ({args.ours_calibration})",
        ),
        "reference": Setting(
            "reference",
            ("conf/reference.yaml",),
            common,
            "`fidelity: reference`: in-sample plug-in random-forest effects, unscaled effects "
            "with the Rtsne kernel, first Pareto tree per K, fixed threshold 0.0043",
        ),
        "baseline": Setting(
            "baseline",
            ("conf/reference.yaml",),
            (*common, "cluster.space=covariates"),
            "the reference's baseline: K-means on the standardised covariates instead of the "
            "effects, otherwise as the reference",
        ),
    }


def counts(summary: dict[str, Any]) -> dict[str, int]:
    """Replicate counts of one study: total, declared, and among declared X1&X2 / X5..X10.

    Parameters
    ----------
    summary : dict
        What :func:`mlearner_dist.study.run_study` returns.

    Returns
    -------
    dict of str to int
        ``R``, ``declared``, ``x1x2``, ``noise``.
    """
    from mlearner_dist.study import NOISE_COVARIATES

    reps = summary["replicate_details"]
    declared = [r for r in reps if r["declared"]]
    return {
        "R": len(reps),
        "declared": len(declared),
        "x1x2": sum({"X1", "X2"} <= set(r["variables"]) for r in declared),
        "noise": sum(bool(set(r["variables"]) & set(NOISE_COVARIATES)) for r in declared),
    }


def fraction(k: int, n: int) -> str:
    """``k/n (p%)``, or ``n/a`` when ``n`` is 0."""
    return "n/a" if n == 0 else f"{k}/{n} ({100 * k / n:.0f}%)"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table.

    Parameters
    ----------
    header : sequence of str
    rows : sequence of sequences, each as long as ``header``

    Returns
    -------
    str
    """
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def run_all(args: argparse.Namespace, settings: dict[str, Setting]) -> list[dict[str, Any]]:
    """Run every (setting, scenario, noise) study and return one record per study.

    Parameters
    ----------
    args : argparse.Namespace
    settings : dict of str to Setting

    Returns
    -------
    list of dict
        ``setting``, ``scenario``, ``noise_sd``, the :func:`counts`, ``mean_leaves``,
        ``seconds`` and ``calibration``.
    """
    from mlearner_dist.config import load_config
    from mlearner_dist.study import run_study

    records = []
    json_dir = Path(args.json_dir)
    for name in args.settings:
        setting = settings[name]
        cfg = load_config([ROOT / f for f in setting.files], list(setting.overrides))
        for scenario in args.scenarios:
            for sd in args.noise:
                s = run_study(
                    cfg,
                    scenario=scenario,
                    n=args.n,
                    replicates=args.replicates,
                    noise_sd=sd,
                    seed=args.seed,
                    workers=args.workers,
                    output=json_dir / f"{name}_{scenario}_{sd:g}.json",
                )
                c = counts(s)
                records.append(
                    {
                        "setting": name,
                        "scenario": scenario,
                        "noise_sd": sd,
                        **c,
                        "mean_leaves": s["mean_leaves"],
                        "seconds": s["seconds"],
                        "calibration": s["calibration"],
                    }
                )
                declared = fraction(c["declared"], c["R"])
                x1x2 = fraction(c["x1x2"], c["declared"])
                print(
                    f"{name:>9} {scenario:<14} sd {sd:<5g} declared {declared:<12} "
                    f"X1&X2 {x1x2}  ({s['seconds']:.0f} s)",
                    flush=True,
                )
    return records


def _wide(
    records: list[dict[str, Any]],
    args: argparse.Namespace,
    cell: Any,
) -> str:
    by_key = {(r["setting"], r["scenario"], r["noise_sd"]): r for r in records}
    header = ["scenario", "truth"] + [f"{s}, sd {sd:g}" for sd in args.noise for s in args.settings]
    rows = []
    for scenario in args.scenarios:
        row: list[Any] = [f"`{scenario}`", TRUTH.get(scenario, "")]
        for sd in args.noise:
            for s in args.settings:
                r = by_key.get((s, scenario, sd))
                row.append("-" if r is None else cell(r))
        rows.append(row)
    return markdown_table(header, rows)


def _shown_path(path: str) -> str:
    p = Path(path).resolve()
    return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p)


def render(
    records: list[dict[str, Any]],
    args: argparse.Namespace,
    settings: dict[str, Setting],
    *,
    command: str,
    seconds: float,
) -> str:
    """The Markdown document.

    Parameters
    ----------
    records : list of dict
        From :func:`run_all`.
    args : argparse.Namespace
    settings : dict of str to Setting
    command : str
        The command line that produced the document.
    seconds : float
        Total wall time.

    Returns
    -------
    str
    """
    import mlearner_dist

    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    params = [
        ("units per data set (n)", args.n),
        ("data sets per study (R)", args.replicates),
        ("scenarios", ", ".join(f"`{s}`" for s in args.scenarios)),
        ("noise sd", ", ".join(f"{sd:g}" for sd in args.noise)),
        ("settings", ", ".join(args.settings)),
        ("t-SNE iterations (`embed.n_iter`)", args.n_iter),
        ("calibration of ours", args.ours_calibration),
        ("null replicates (ours, mode null)", args.null_replicates),
        ("seed (replicate r uses seed + r)", args.seed),
        ("parallel workers", args.workers),
        ("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "")),
        ("package", f"mlearner_dist {mlearner_dist.__version__}"),
    ]
    out = [
        "# Simulation study: declared rates and variable selection",
        "",
        "<!-- Generated by benchmarks/simulation_tables.py; do not edit by hand. -->",
        "",
        f"Generated by `{command}` on {when}, in {seconds / 60:.1f} minutes on a machine with "
        f"{os.cpu_count()} cores (shared with other work).",
        "",
        f"> **R is small.** Every cell below summarises R = {args.replicates} simulated data sets "
        f"of n = {args.n} units. A rate is a count out of R (or out of the declared data sets), "
        "so these tables show that the study runs end to end and what it reports; they are not "
        "estimates of power or of Type I error. The paper's scenarios use n = 1000 units and "
        "noise sd 0.01 with its own settings (2000 t-SNE iterations); the number of data sets the "
        "paper used is not in our sources (its body is not available offline; the authors' R "
        "scripts are), and `mlearner study` defaults to R = 100. For that size run "
        "`python benchmarks/simulation_tables.py --n 1000 --replicates 100 --n-iter 2000 "
        "--ours-calibration null` (hours on a laptop; use a cluster's Dask workers).",
        "",
        "## Parameters",
        "",
        markdown_table(["parameter", "value"], params),
        "",
        "## Settings",
        "",
    ]
    for name in args.settings:
        st = settings[name]
        out += [f"- **{name}**: {st.description}.", f"  `{st.command(args)}`"]
    out += [
        "",
        "Heterogeneity is driven by X1 and X2 only; X5..X10 are pure noise. With a mediator the "
        "decision is on the mediator model, so in `simple-null1`, `simple-null2` (NIE = 0) and "
        "`simple-global` (the same NIE for everyone) a good method declares at most at the "
        "nominal 5%, and in the first four it declares often and its profile uses X1 and X2.",
    ]
    if "ours" in args.settings and args.ours_calibration == "split":
        out += [
            "",
            "Ours with `split` calibration discovers the profile on one half of each data set "
            "and declares when the held-out half's interaction p-value is below alpha = 0.05: an "
            "honest test that spends half the units, which costs power at small n. Its p_leaf "
            "(in the JSON files) is from the whole data set and is not the decision statistic.",
        ]
    out += [
        "",
        "## Declared rate",
        "",
        "Data sets in which heterogeneity was declared, out of R.",
        "",
        _wide(records, args, lambda r: fraction(r["declared"], r["R"])),
        "",
        "## Variable selection: the profile uses X1 and X2",
        "",
        "Among the declared data sets, those whose chosen profile splits on both X1 and X2.",
        "",
        _wide(records, args, lambda r: fraction(r["x1x2"], r["declared"])),
        "",
        "## Variable selection: the profile uses a noise covariate",
        "",
        "Among the declared data sets, those whose chosen profile splits on any of X5..X10.",
        "",
        _wide(records, args, lambda r: fraction(r["noise"], r["declared"])),
        "",
        "## Mean number of leaves of the chosen profile (all data sets)",
        "",
        _wide(records, args, lambda r: f"{r['mean_leaves']:.1f}"),
        "",
        "## Time per study (seconds)",
        "",
        _wide(records, args, lambda r: f"{r['seconds']:.0f}"),
        "",
        "Per-study results (each replicate's p_leaf, threshold, decision and variables) and "
        f"ECDF plots of p_leaf were written to `{_shown_path(args.json_dir)}` (not committed).",
        "",
    ]
    return "\n".join(out)


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=300, help="units per data set")
    p.add_argument("--replicates", type=int, default=2, help="data sets per study (R)")
    p.add_argument("--scenarios", nargs="+", default=list(MEDIATION_SCENARIOS))
    p.add_argument("--noise", nargs="+", type=float, default=[0.01, 1.0], help="noise sds")
    p.add_argument("--settings", nargs="+", choices=SETTING_NAMES, default=list(SETTING_NAMES))
    p.add_argument("--n-iter", type=int, default=500, help="t-SNE iterations (all settings)")
    p.add_argument("--ours-calibration", choices=["null", "split"], default="split")
    p.add_argument("--null-replicates", type=int, default=19)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workers", type=int, default=2, help="parallel processes (local Dask)")
    p.add_argument("--json-dir", default=str(ROOT / "runs" / "simulation_study"))
    p.add_argument("--output", default=str(ROOT / "docs" / "simulation_study.md"))
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the studies and write the document.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    # One OpenMP thread per process (set before scikit-learn loads; the Dask workers inherit it):
    # on a 2-core machine under load, more made HistGradientBoosting on small folds 15x slower.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MPLBACKEND", "Agg")
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    settings = make_settings(args)
    command = shlex.join(["python", "benchmarks/simulation_tables.py", *argv])
    started = time.perf_counter()
    records = run_all(args, settings)
    seconds = time.perf_counter() - started
    doc = render(records, args, settings, command=command, seconds=seconds)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(doc)
    print(f"wrote {output} ({len(records)} studies in {seconds / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
