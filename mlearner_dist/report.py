"""The HTML report of one analysis: a single self-contained ``report.html``.

Built from ``result.json`` (the user contract, see ``docs/architecture.md``) and the PNG files under
``<output>/figures/``, which are embedded as base64 so the file can be mailed or attached to an
MLflow run on its own. All text taken from the result (rules, column names, paths) is escaped.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mlearner_dist.core.effect_summaries import post_selection_note, unsupported_subgroups
from mlearner_dist.exceptions import MLearnerError

logger = logging.getLogger(__name__)

REPORT_FILE = "report.html"
_EFFECTS = ("indirect", "direct", "total", "prop_mediated")
_FIGURE_CAPTIONS = {
    "embedding_clusters.png": "t-SNE embedding of the individual effects, coloured by cluster.",
    "embedding_effect.png": "t-SNE embedding coloured by the individual effect.",
    "p_leaf_by_k.png": "Interaction-test p-value of every (K, tree) configuration.",
    "profile_tree.png": "The subgroups of the chosen profile tree and their rules.",
    "subgroup_effects.png": "Subgroup effects with confidence intervals, adjusted and unadjusted.",
    "null_calibration.png": "p_leaf under the null (calibration replicates) against the data.",
    "sensitivity.png": "Indirect effect as a function of the correlation rho between the mediator "
    "and outcome errors (unmeasured M-Y confounding; Imai, Keele and Yamamoto 2010).",
}
_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1100px; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; border-bottom: 1px solid #ddd; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.declared { color: #0a6e0a; font-weight: bold; }
.not-declared { color: #8a5a00; font-weight: bold; }
figure { margin: 1.2em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #555; } .muted { color: #777; font-size: 0.9em; }
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _num(x: Any, digits: int = 4) -> str:
    if x is None:
        return "&ndash;"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    try:
        v = float(x)
    except (TypeError, ValueError):
        return _e(x)
    if not math.isfinite(v):
        return _e(v)
    return _e(f"{v:.{digits}g}")


def _ci(entry: Any) -> str:
    if not isinstance(entry, Mapping) or entry.get("estimate") is None:
        return "&ndash;"
    return (
        f"{_num(entry.get('estimate'))} [{_num(entry.get('ci_low'))}, {_num(entry.get('ci_high'))}]"
    )


def _table(
    header: Sequence[str], rows: Iterable[Sequence[str]], numeric: set[int] | None = None
) -> str:
    """An HTML table; ``rows`` cells must already be escaped HTML."""
    numeric = numeric or set()
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>"
            for i, c in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _kv_table(items: Mapping[str, Any]) -> str:
    rows = []
    for k, v in items.items():
        if v is None:
            shown = "&ndash;"
        elif isinstance(v, (Mapping, list, tuple)):
            shown = _e(json.dumps(v, default=str))
        else:
            shown = _num(v) if isinstance(v, (int, float)) else _e(v)
        rows.append((_e(k), shown))
    return _table(("item", "value"), rows)


def _section_data(result: Mapping[str, Any]) -> str:
    cfg = result.get("config") or {}
    data = cfg.get("data") or {}
    cols = cfg.get("columns") or {}
    account = result.get("row_account") or {}
    parts = ["<h2>Data and row account</h2>"]
    if data.get("source"):
        parts.append(
            f"<p>Source: <code>{_e(data['source'])}</code> "
            f"(format {_e(data.get('format', ''))}).</p>"
        )
    if cols:
        parts.append(_kv_table({k: v for k, v in cols.items() if v not in (None, "", [])}))
    rows = [("units in the input", _num(account.get("n_input")))]
    for reason, n in (account.get("removed") or {}).items():
        rows.append((f"removed: {_e(reason)}", _num(n)))
    rows.append(("units used", _num(account.get("n_used"))))
    parts.append(_table(("", "units"), rows, numeric={1}))
    if not result.get("has_mediator", True):
        parts.append("<p>No mediator: only the total effect is studied.</p>")
    return "\n".join(parts)


def _section_average(result: Mapping[str, Any]) -> str:
    avg = result.get("average_effects") or {}
    rows = [(_e(eff.replace("_", " ")), _ci(avg.get(eff))) for eff in _EFFECTS if eff in avg]
    return "<h2>Average effects</h2>\n" + _table(("effect", "estimate [95% CI]"), rows, {1})


def _section_decision(result: Mapping[str, Any]) -> str:
    calib = result.get("calibration") or {}
    chosen = result.get("chosen") or {}
    declared = bool(result.get("declared"))
    p_leaf, threshold = result.get("p_leaf"), result.get("threshold")
    response = chosen.get("response") or ("M" if result.get("p_leaf_m") is not None else "Y")
    verdict = (
        '<p class="declared">Heterogeneity declared: the subgroups below differ in their '
        "treatment effect beyond what the selection produces by chance.</p>"
        if declared
        else '<p class="not-declared">Heterogeneity not declared: the smallest interaction '
        "p-value is no smaller than what the whole selection produces on data without "
        "heterogeneity. The subgroups below are descriptive only.</p>"
    )
    if str(response).startswith("score_"):
        target = str(response)[len("score_") :]
        words = (
            f"<p>The smallest p-value of the doubly robust score test (robust Wald test of equal "
            f"leaf means of the {_e(target)}-effect scores, on leaf-merged trees) over the "
            f"tested configurations, p_leaf = {_num(p_leaf)}, is compared with the threshold "
            f"p** = {_num(threshold)}: heterogeneity is declared when p_leaf &lt; p**. The "
            "reference's interaction tests for Y and M are reported beside it.</p>"
        )
    else:
        words = (
            f"<p>The smallest interaction-test p-value over all (K, tree) configurations, "
            f"p_leaf = {_num(p_leaf)} (response {_e(response)}), is compared with the threshold "
            f"p** = {_num(threshold)}: heterogeneity is declared when p_leaf &lt; p**.</p>"
        )
    how = calib.get("how")
    details = {
        "calibration mode": calib.get("mode"),
        "alpha": calib.get("alpha"),
        "null replicates": calib.get("n_replicates"),
        "Monte Carlo p-value of p_leaf": calib.get("mc_pvalue"),
        "its Monte Carlo standard error": calib.get("mc_se"),
        "null replicates built by": calib.get("replicates"),
        "fallback": calib.get("fallback"),
        "p_leaf for Y": result.get("p_leaf_y"),
        "p_leaf for M": result.get("p_leaf_m"),
    }
    parts = ["<h2>Decision</h2>", verdict, words]
    if how:
        parts.append(f"<p>How the threshold was obtained: {_e(how)}.</p>")
    parts.append(_kv_table({k: v for k, v in details.items() if v is not None}))
    return "\n".join(parts)


def _section_targets(result: Mapping[str, Any]) -> str:
    """Both targets side by side (indirect and total with a mediator)."""
    targets = result.get("targets") or {}
    if len(targets) < 2:
        return ""
    rows = []
    for name, rec in targets.items():
        if not isinstance(rec, Mapping):
            continue
        if "p_leaf" not in rec:
            rows.append((_e(name), "not analysed", "", "", _e(rec.get("note", ""))))
            continue
        ch = rec.get("chosen") or {}
        on = ", ".join(map(str, ch.get("variables") or [])) or "no covariate"
        declared = bool(rec.get("declared"))
        rows.append(
            (
                _e(name),
                "declared" if declared else "not declared",
                _num(rec.get("p_leaf")),
                _num(rec.get("threshold")),
                _e(f"{ch.get('n_leaves')} leaves on {on}")
                + ("" if declared else " (descriptive only)"),
            )
        )
    fw = any(isinstance(r, Mapping) and r.get("familywise") for r in targets.values())
    note = (
        "Both targets are tested family-wise (Bonferroni over the targets)."
        if fw
        else "Each target is tested at alpha; calibration.familywise: true tests both at once."
    )
    return (
        "<h2>Targets</h2>\n"
        + _table(("target", "decision", "p", "threshold", "profile"), rows, {2, 3})
        + f"\n<p>{_e(note)}</p>"
    )


def _section_stability(result: Mapping[str, Any]) -> str:
    """Seed stability: the decision re-run with other t-SNE/K-means seeds."""
    stab = result.get("stability")
    if not isinstance(stab, Mapping) or not stab.get("n_seeds"):
        return ""
    head = (
        f"{float(stab['share_declared']):.0%} of {int(stab['n_seeds'])} other seeds declare; "
        f"median adjusted Rand index with the reported subgroups "
        f"{float(stab['median_ari']):.2f} (1: the same subgroups, about 0: unrelated)."
    )
    rows = [
        (_e(seed), _num(p), _num(ari, 3))
        for seed, p, ari in zip(
            stab.get("seeds") or [], stab.get("p_leaf") or [], stab.get("ari") or [], strict=False
        )
    ]
    recur = stab.get("rule_recurrence") or {}
    rule_rows = [(_e(rule), f"{float(share):.0%}") for rule, share in recur.items()]
    out = f"<h2>Seed stability</h2>\n<p>{_e(head)}</p>\n"
    out += _table(("seed", "decision p", "ARI"), rows, {1, 2})
    if rule_rows:
        out += "\n" + _table(("reported rule", "seeds with it exactly"), rule_rows, {1})
    if stab.get("how"):
        out += f"\n<p>{_e(stab['how'])}</p>"
    return out


def _section_chosen(result: Mapping[str, Any]) -> str:
    chosen = result.get("chosen") or {}
    shown = {
        "K (clusters)": chosen.get("k"),
        "tree": chosen.get("tree_id"),
        "leaves (subgroups)": chosen.get("n_leaves"),
        "variables used": ", ".join(map(str, chosen.get("variables") or [])) or None,
        "p-value, outcome Y": chosen.get("p_y"),
        "p-value, mediator M": chosen.get("p_m"),
    }
    return "<h2>Chosen configuration</h2>\n" + _kv_table(
        {k: v for k, v in shown.items() if v is not None}
    )


def _section_subgroups(result: Mapping[str, Any]) -> str:
    subgroups = result.get("subgroups") or []
    parts = ["<h2>Subgroups</h2>"]
    if not subgroups:
        parts.append("<p>No subgroups were reported.</p>")
        return "\n".join(parts)
    effects = [e for e in _EFFECTS if any(isinstance(sg.get(e), Mapping) for sg in subgroups)]
    parts.append(
        "<p>Each subgroup is a leaf of the profile tree; its rule says which units belong to it. "
        "Adjusted effects average the units' doubly robust scores within the subgroup; "
        "unadjusted effects are the within-subgroup regressions of the reference code "
        "(biased when covariates confound the mediator and the outcome).</p>"
    )
    if any(sg.get("estimated_on") == "holdout" for sg in subgroups):
        parts.append(
            "<p>The effects are estimated on held-out units, which played no part in choosing "
            "the subgroups.</p>"
        )
    caveat = post_selection_note(result)
    if caveat:
        parts.append(f'<p class="note">Note: {_e(caveat)}.</p>')
    for line in unsupported_subgroups(result):
        parts.append(
            '<p class="note">Note: the indirect/direct split of this subgroup rests on the '
            "outcome model's extrapolation (few treated units have control-like mediator "
            f"values): {_e(line)}.</p>"
        )
    header = ["subgroup", "rule", "n"]
    header += [f"{e.replace('_', ' ')} (adjusted)" for e in effects]
    header += [f"{e.replace('_', ' ')} (unadjusted)" for e in effects]
    rows = []
    for sg in subgroups:
        unadj = sg.get("unadjusted") or {}
        rows.append(
            [_e(sg.get("leaf")), _e(sg.get("rule") or "(all units)"), _num(sg.get("n"))]
            + [_ci(sg.get(e)) for e in effects]
            + [_ci(unadj.get(e)) for e in effects]
        )
    parts.append(_table(header, rows, numeric=set(range(2, len(header)))))
    return "\n".join(parts)


def _section_configurations(result: Mapping[str, Any]) -> str:
    confs = result.get("configurations") or []
    rows = [
        (
            _num(c.get("k")),
            _num(c.get("tree_id")),
            _num(c.get("n_leaves")),
            _e(", ".join(map(str, c.get("variables") or []))),
            _num(c.get("p_y")),
            _num(c.get("p_m")),
            "yes" if c.get("selected_for_test", True) else "no",
        )
        for c in confs
    ]
    return "<h2>All (K, tree) configurations</h2>\n" + _table(
        ("K", "tree", "leaves", "variables", "p (Y)", "p (M)", "tested"), rows, {0, 1, 2, 4, 5}
    )


def _section_embedding(result: Mapping[str, Any]) -> str:
    emb = result.get("embedding") or {}
    clus = result.get("clustering") or {}
    parts = ["<h2>Embedding and clustering</h2>"]
    if emb:
        parts.append(_kv_table(emb))
    wcss = clus.get("wcss") or {}
    if wcss:
        parts.append(
            _table(
                ("K", "within-cluster sum of squares"),
                [(_e(k), _num(v)) for k, v in wcss.items()],
                {0, 1},
            )
        )
    if not emb and not wcss:
        parts.append("<p>No embedding information was recorded.</p>")
    return "\n".join(parts)


def _section_timings(result: Mapping[str, Any]) -> str:
    timings = result.get("timings") or {}
    rows = [(_e(stage), f"{float(s):.2f}") for stage, s in timings.items() if s is not None]
    if rows:
        total = sum(float(s) for s in timings.values() if s is not None)
        rows.append(("<b>total</b>", f"<b>{total:.2f}</b>"))
    return "<h2>Timings (seconds)</h2>\n" + _table(("stage", "seconds"), rows, {1})


def _section_figures(figure_dir: Path) -> str:
    if not figure_dir.is_dir():
        return ""
    pngs = sorted(figure_dir.glob("*.png"))
    if not pngs:
        return ""
    order = list(_FIGURE_CAPTIONS)
    pngs.sort(key=lambda p: (order.index(p.name) if p.name in order else len(order), p.name))
    parts = ["<h2>Figures</h2>"]
    for png in pngs:
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        caption = _FIGURE_CAPTIONS.get(png.name, png.stem.replace("_", " "))
        parts.append(
            f'<figure><img alt="{_e(png.stem)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>"
        )
    return "\n".join(parts)


def render_report(result: Mapping[str, Any], figure_dir: str | Path | None = None) -> str:
    """The report as an HTML string (see :func:`write_report`)."""
    if not isinstance(result, Mapping):
        raise MLearnerError(f"result must be the result.json mapping, got {type(result).__name__}")
    title = "M-learner analysis"
    meta = ", ".join(
        f"{_e(k)} {_e(result[k])}"
        for k in ("run_id", "mlflow_run_id", "created", "version")
        if result.get(k)
    )
    body = [
        f"<h1>{title}</h1>",
        f'<p class="muted">{meta}</p>' if meta else "",
        _section_decision(result),
        _section_targets(result),
        _section_data(result),
        _section_average(result),
        _section_chosen(result),
        _section_stability(result),
        _section_subgroups(result),
        _section_configurations(result),
        _section_embedding(result),
        _section_timings(result),
        _section_figures(Path(figure_dir)) if figure_dir is not None else "",
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{title}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(b for b in body if b)
        + "\n</body>\n</html>\n"
    )


def write_report(result: Mapping[str, Any], output_dir: str | Path) -> Path:
    """Write ``<output_dir>/report.html`` for a finished analysis.

    Parameters
    ----------
    result : mapping
        The contents of ``result.json``.
    output_dir : str or Path
        The run's output folder; figures are read from ``<output_dir>/figures/*.png``.

    Returns
    -------
    Path
        The written ``report.html`` (written to a temporary name, then renamed).

    Raises
    ------
    MLearnerError
        If ``result`` is not a mapping or ``output_dir`` is not a folder.
    """
    out = Path(output_dir)
    if not out.is_dir():
        raise MLearnerError(f"output_dir {str(out)!r} is not a folder: run the pipeline first")
    text = render_report(result, out / "figures")
    path = out / REPORT_FILE
    tmp = out / f".{REPORT_FILE}.tmp"
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    logger.info("wrote %s (%d kB)", path, len(text) // 1024)
    return path


__all__ = ["REPORT_FILE", "render_report", "write_report"]
