"""A short plain-text summary of a finished analysis (what `mlearner run` prints)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _fmt(e: dict[str, float] | None) -> str:
    if not e or any(e.get(k) is None for k in ("estimate", "ci_low", "ci_high")):
        return "n/a"
    return f"{e['estimate']:+.3f} [{e['ci_low']:+.3f}, {e['ci_high']:+.3f}]"


def format_summary(result: dict[str, Any], output: Path) -> str:
    """Summarise ``result.json`` in a few lines: data, average effects, decision, subgroups.

    Parameters
    ----------
    result : dict
        The contents of ``result.json``.
    output : Path
        The run's output folder (printed so the user knows where to look).
    """
    ra = result["row_account"]
    avg = result["average_effects"]
    chosen = result["chosen"]
    lines = [
        f"M-learner analysis: {ra['n_used']} of {ra['n_input']} units used"
        + (f" (removed: {ra['removed']})" if ra.get("removed") else ""),
        f"  average total effect    {_fmt(avg.get('total'))}",
    ]
    if result.get("has_mediator"):
        lines += [
            f"  average indirect effect {_fmt(avg.get('indirect'))}",
            f"  average direct effect   {_fmt(avg.get('direct'))}",
        ]
    sens = (result.get("sensitivity") or {}).get("whole")
    if sens:
        cover = sens.get("rho_ci_covers_zero")
        lines.append(
            f"  M-Y confounding: the indirect effect is zero at rho={sens['rho_zero']:+.2f}; its "
            + (f"interval covers 0 from rho={cover:+.2f}" if cover is not None else
               "interval excludes 0 for every rho in the grid")
        )
    calib = result["calibration"]
    verdict = "DECLARED" if result["declared"] else "not declared"
    lines += [
        f"  chosen: K={chosen['k']}, tree {chosen['tree_id']} with {chosen['n_leaves']} leaves "
        f"on {', '.join(chosen.get('variables') or []) or 'no covariate'}",
        f"  heterogeneity {verdict}: p_leaf={result['p_leaf']:.3g} vs threshold="
        f"{result['threshold']:.3g} ({calib['mode']} calibration)",
        "  subgroups:",
    ]
    name = "indirect" if result.get("has_mediator") else "total"
    for s in result["subgroups"]:
        lines.append(f"    [{s['n']:>6}] {s['rule']}: {name} {_fmt(s.get(name))}")
    lines += [
        f"results: {output / 'result.json'}",
        f"report:  {output / 'report.html'}",
    ]
    if result.get("mlflow_run_id"):
        lines.append(f"MLflow run: {result['mlflow_run_id']}")
    return "\n".join(lines)
