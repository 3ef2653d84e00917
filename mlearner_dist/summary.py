"""A short plain-text summary of a finished analysis (what `mlearner run` prints)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlearner_dist.core.effect_summaries import post_selection_note, unsupported_subgroups


def _fmt(e: dict[str, float] | None) -> str:
    if not e or any(e.get(k) is None for k in ("estimate", "ci_low", "ci_high")):
        return "n/a"
    return f"{e['estimate']:+.3f} [{e['ci_low']:+.3f}, {e['ci_high']:+.3f}]"


def _replicate_kind(calib: dict[str, Any]) -> str:
    kind = str(calib.get("replicates", "permutation"))
    kind = {"scores": "score", "permutation": "permutation"}.get(kind, kind)
    return (
        f"{kind} replicates per half, both directions"
        if calib.get("honest")
        else f"{kind} replicates"
    )


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
    stab = result.get("stability")
    if stab:
        lines.append(
            f"  seed stability: {stab['share_declared']:.0%} of {stab['n_seeds']} other t-SNE/"
            f"K-means seeds declare; median adjusted Rand index with the reported subgroups "
            f"{stab['median_ari']:.2f}"
        )
    sens = (result.get("sensitivity") or {}).get("whole")
    if sens:
        cover = sens.get("rho_ci_covers_zero")
        lines.append(
            f"  M-Y confounding: the indirect effect is zero at rho={sens['rho_zero']:+.2f}; its "
            + (
                f"interval covers 0 from rho={cover:+.2f}"
                if cover is not None
                else "interval excludes 0 for every rho in the grid"
            )
        )
    calib = result["calibration"]
    verdict = "DECLARED" if result["declared"] else "not declared"
    response = str(chosen.get("response") or "")
    test = (
        f"DR-score test of the {response[6:]} effect"
        if response.startswith("score_")
        else ("interaction test")
    )
    mc = calib.get("mc_pvalue")
    mc_text = (
        f"; Monte Carlo p={mc:.3g} (MC se {calib.get('mc_se') or 0:.2g}, "
        f"B={calib.get('n_replicates')} {_replicate_kind(calib)})"
        if mc is not None
        else ""
    )
    lines += [
        f"  chosen: K={chosen['k']}, tree {chosen['tree_id']} with {chosen['n_leaves']} leaves "
        f"on {', '.join(chosen.get('variables') or []) or 'no covariate'}"
        + (
            f" (tree from one half, merged and tested on the other: {calib.get('n_holdout')} units)"
            if calib.get("honest")
            else (" (on the discovery half)" if calib.get("discovery_tree") is not None else "")
        ),
        f"  heterogeneity {verdict} at alpha={calib.get('alpha')}: p_leaf={result['p_leaf']:.3g} "
        f"vs threshold={result['threshold']:.3g} ({calib['mode']} calibration, {test}"
        + (
            ", held-out p-value"
            if calib["mode"] == "split"
            else (", cross-split: Bonferroni over two directions" if calib.get("honest") else "")
        )
        + f"){mc_text}",
    ]
    if calib.get("fallback"):
        lines.append(f"  note: {calib['fallback']}")
    name = "indirect" if result.get("has_mediator") else "total"
    if result["declared"]:
        lines.append("  subgroups:")
    else:
        lines.append(
            "  partition (descriptive only, heterogeneity not declared: not subgroups with "
            "different effects):"
        )
    for s in result["subgroups"]:
        where = " (held-out estimate)" if s.get("estimated_on") == "holdout" else ""
        lines.append(f"    [{s['n']:>6}] {s['rule']}: {name} {_fmt(s.get(name))}{where}")
    caveat = post_selection_note(result)
    if caveat:
        lines.append(f"  note: {caveat}")
    for line in unsupported_subgroups(result):
        lines.append(
            "  note: the indirect/direct split of this subgroup rests on the outcome model's "
            f"extrapolation (few treated units have control-like mediator values): {line}"
        )
    main = "indirect" if result.get("has_mediator") else "total"
    for tname, rec in (result.get("targets") or {}).items():
        if tname == main or not isinstance(rec, dict):
            continue
        if "p_leaf" not in rec:
            lines.append(f"  {tname} effect target: {rec.get('note', 'not analysed')}")
            continue
        ch = rec.get("chosen") or {}
        on = ", ".join(ch.get("variables") or []) or "no covariate"
        if rec.get("declared"):
            lines.append(
                f"  {tname} effect target: heterogeneity declared at alpha: "
                f"p={rec['p_leaf']:.3g} vs {rec['threshold']:.3g}; subgroups on {on}:"
            )
            for sg in rec.get("subgroups") or []:
                lines.append(f"    [{sg['n']:>6}] {sg['rule']}: {tname} {_fmt(sg.get(tname))}")
        else:
            lines.append(
                f"  {tname} effect target: heterogeneity not declared: p={rec['p_leaf']:.3g} vs "
                f"{rec['threshold']:.3g} (its profile is not presented as subgroups)"
            )
    if any(
        isinstance(r, dict) and r.get("familywise") for r in (result.get("targets") or {}).values()
    ):
        lines.append("  targets tested family-wise (Bonferroni over the targets)")
    elif len(result.get("targets") or {}) > 1:
        lines.append(
            "  each target is tested at alpha (calibration.familywise: true for both at once)"
        )
    lines += [
        f"results: {output / 'result.json'}",
        f"report:  {output / 'report.html'}",
    ]
    if result.get("mlflow_run_id"):
        lines.append(f"MLflow run: {result['mlflow_run_id']}")
    return "\n".join(lines)
