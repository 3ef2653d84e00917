"""Figures of an M-learner analysis (matplotlib, no display needed).

Every ``plot_*`` function builds and returns a :class:`matplotlib.figure.Figure` without pyplot
(so no global state, no window, safe in threads and on headless drivers); :func:`save_figure`
writes it as PNG and releases it.
"""

from __future__ import annotations

import logging
import math
import sys
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mlearner_dist.exceptions import MLearnerError

logger = logging.getLogger(__name__)

#: Most points drawn in an embedding scatter; larger embeddings are subsampled deterministically.
MAX_SCATTER_POINTS = 200_000
_EFFECTS = ("indirect", "direct", "total")
_CATEGORICAL_MAX = 20


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def plot_embedding(
    embedding_df: pd.DataFrame,
    color: np.ndarray | Sequence[Any] | str,
    *,
    title: str = "t-SNE embedding of the individual effects",
    max_points: int = MAX_SCATTER_POINTS,
    random_state: int = 0,
) -> Figure:
    """Scatter of the 2-D effect embedding, coloured by cluster label or by an effect.

    Parameters
    ----------
    embedding_df : pandas.DataFrame, shape (n, >= 2)
        Columns ``tsne_1`` and ``tsne_2`` (the ``embedding/`` table, possibly merged with others).
    color : array-like of shape (n,) or str
        Per-unit values, or the name of a column of ``embedding_df``. Integer values with at most
        20 distinct levels are drawn as categories with a legend (cluster labels); anything else
        with a continuous colour map and a colour bar (an effect).
    title : str
        Axes title.
    max_points : int, default 200_000
        Above this many units a uniform random subset of this size is drawn; the subset depends
        only on ``random_state`` and n, so the figure is reproducible.
    random_state : int, default 0
        Seed of the subsample.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if not isinstance(embedding_df, pd.DataFrame):
        raise MLearnerError(
            f"embedding_df must be a pandas DataFrame, got {type(embedding_df).__name__}"
        )
    missing = [c for c in ("tsne_1", "tsne_2") if c not in embedding_df.columns]
    if missing:
        raise MLearnerError(
            f"embedding_df lacks column(s) {missing}: pass the embedding/ table "
            f"(found columns {list(embedding_df.columns)[:10]})"
        )
    if isinstance(color, str):
        if color not in embedding_df.columns:
            raise MLearnerError(f"color column {color!r} is not in embedding_df")
        label = color
        values = embedding_df[color].to_numpy()
    else:
        label = ""
        values = np.asarray(color)
    n = len(embedding_df)
    if values.shape != (n,):
        raise MLearnerError(
            f"color has shape {values.shape}; expected ({n},), one value per embedded unit"
        )
    if max_points < 1:
        raise MLearnerError(f"max_points must be >= 1, got {max_points}")
    xy = embedding_df[["tsne_1", "tsne_2"]].to_numpy(dtype=float)
    if n > max_points:
        idx = np.sort(np.random.default_rng(random_state).choice(n, max_points, replace=False))
        xy, values = xy[idx], values[idx]
        title = f"{title}\n({max_points:,} of {n:,} units drawn)"
    fig = _new_figure(6.4, 5.6)
    ax = fig.add_subplot()
    size = float(np.clip(3000.0 / max(len(xy), 1), 0.5, 25.0))
    discrete = values.dtype == bool or values.dtype == object
    discrete = discrete or np.issubdtype(values.dtype, np.integer)
    if discrete and len(pd.unique(values)) <= _CATEGORICAL_MAX:
        levels = sorted(pd.unique(values), key=str)
        palette = _palette(len(levels))
        for level, col in zip(levels, palette, strict=True):
            mask = values == level
            ax.scatter(
                xy[mask, 0],
                xy[mask, 1],
                s=size,
                color=col,
                label=f"{level} (n={mask.sum():,})",
                rasterized=True,
                linewidths=0,
            )
        ax.legend(title=label or "cluster", markerscale=max(1.0, 6.0 / size), fontsize=8)
    else:
        v = values.astype(float)
        finite = np.isfinite(v)
        lo, hi = np.nanpercentile(v[finite], [1, 99]) if finite.any() else (0.0, 1.0)
        sc = ax.scatter(
            xy[:, 0],
            xy[:, 1],
            c=v,
            s=size,
            cmap="viridis",
            vmin=lo,
            vmax=hi,
            rasterized=True,
            linewidths=0,
        )
        fig.colorbar(sc, ax=ax, label=label or "effect")
    ax.set_xlabel("t-SNE 1")
    ax.set_ylabel("t-SNE 2")
    ax.set_title(title, fontsize=10)
    return fig


def _palette(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def plot_p_leaf_by_k(
    configurations: Sequence[Mapping[str, Any]], threshold: float | None
) -> Figure:
    """Interaction-test p-values of every (K, tree) configuration, by K.

    Parameters
    ----------
    configurations : sequence of mappings
        ``result.json["configurations"]``: each with ``k``, ``tree_id``, ``p_y`` and ``p_m``
        (``p_m`` null without a mediator).
    threshold : float or None
        The calibrated threshold p**; drawn as a horizontal line.

    Returns
    -------
    matplotlib.figure.Figure
        y axis: p-value on a log scale (smaller is more heterogeneous); the smallest p-value
        (p_leaf) is circled.
    """
    if not configurations:
        raise MLearnerError("configurations is empty: nothing to plot (did the profile stage run?)")
    fig = _new_figure(6.4, 4.4)
    ax = fig.add_subplot()
    floor = 1e-300
    best: tuple[float, float] | None = None
    for key, marker, name, offset in (
        ("p_y", "o", "outcome Y", -0.08),
        ("p_m", "s", "mediator M", 0.08),
    ):
        ks, ps = [], []
        for c in configurations:
            p = c.get(key)
            if p is None or not math.isfinite(float(p)):
                continue
            ks.append(float(c["k"]) + offset)
            ps.append(max(float(p), floor))
        if ps:
            ax.scatter(ks, ps, marker=marker, label=f"{name}", alpha=0.8, s=36)
            i = int(np.argmin(ps))
            if best is None or ps[i] < best[1]:
                best = (ks[i], ps[i])
    if best is not None:
        ax.scatter(
            [best[0]],
            [best[1]],
            s=220,
            facecolors="none",
            edgecolors="red",
            linewidths=1.5,
            label=f"smallest p = {best[1]:.3g}",
        )
    if threshold is not None and math.isfinite(float(threshold)):
        ax.axhline(
            float(threshold),
            color="red",
            linestyle="--",
            linewidth=1,
            label=f"threshold p** = {float(threshold):.3g}",
        )
    ax.set_yscale("log")
    ks_all = sorted({int(c["k"]) for c in configurations})
    ax.set_xticks(ks_all)
    ax.set_xlabel("K (number of clusters)")
    ax.set_ylabel("interaction-test p-value (log scale)")
    ax.set_title("Heterogeneity test for every (K, tree) configuration", fontsize=10)
    ax.legend(fontsize=8)
    return fig


def _leaf_sizes(tree: Any) -> dict[int, int]:
    for attr in ("sizes", "leaf_sizes", "n_per_leaf", "sizes_"):
        sizes = getattr(tree, attr, None)
        if isinstance(sizes, Mapping):
            return {int(k): int(v) for k, v in sizes.items()}
    leaves = getattr(tree, "leaves", None)
    if isinstance(leaves, Sequence):
        out = {}
        for leaf in leaves:
            if isinstance(leaf, Mapping) and "leaf" in leaf and "n" in leaf:
                out[int(leaf["leaf"])] = int(leaf["n"])
        return out
    return {}


def plot_profile_tree(tree: Any, sizes: Mapping[int, int] | None = None) -> Figure:
    """The subgroups of a profile tree: one box per leaf with its rule in words and its size.

    Parameters
    ----------
    tree : object
        A profile tree with ``rules: dict[int, str]``. Leaf sizes come from ``sizes`` or, when
        omitted, from the tree's ``sizes``/``leaf_sizes``/``n_per_leaf`` mapping or its
        ``leaves`` list (``[{"leaf", "n", ...}]``), when it has one.
    sizes : mapping of int to int, optional
        Units per leaf.

    Returns
    -------
    matplotlib.figure.Figure
    """
    rules = getattr(tree, "rules", None)
    if not isinstance(rules, Mapping) or not rules:
        raise MLearnerError(
            f"tree must have a non-empty rules mapping (leaf id -> rule); got {type(tree).__name__}"
        )
    sizes = dict(sizes) if sizes is not None else _leaf_sizes(tree)
    leaves = sorted(int(k) for k in rules)
    wrapped = {lf: textwrap.fill(str(rules[lf]) or "(all units)", width=70) for lf in leaves}
    heights = [1.0 + wrapped[lf].count("\n") * 0.55 for lf in leaves]
    total_h = sum(heights) + 0.3 * (len(leaves) + 1)
    fig = _new_figure(8.0, max(2.0, 0.42 * total_h + 0.8))
    ax = fig.add_subplot()
    ax.set_xlim(0, 1)
    ax.set_ylim(0, total_h)
    ax.axis("off")
    palette = _palette(len(leaves))
    y = total_h - 0.3
    n_total = sum(sizes.values()) if sizes else 0
    for lf, h, col in zip(leaves, heights, palette, strict=True):
        n = sizes.get(lf)
        head = f"Subgroup {lf}"
        if n is not None:
            share = f", {100.0 * n / n_total:.1f}%" if n_total else ""
            head += f"  (n = {n:,}{share})"
        ax.text(
            0.02,
            y - h / 2,
            f"{head}\n{wrapped[lf]}",
            va="center",
            ha="left",
            fontsize=9,
            family="monospace",
            bbox={"boxstyle": "round,pad=0.5", "facecolor": (*col[:3], 0.18), "edgecolor": col},
        )
        y -= h + 0.3
    title = "Profile tree: subgroups and their rules"
    if not sizes:
        title += " (sizes unknown)"
    ax.set_title(title, fontsize=10)
    return fig


def _ci_triplet(entry: Any) -> tuple[float, float, float] | None:
    if not isinstance(entry, Mapping):
        return None
    try:
        est, lo, hi = (float(entry[k]) for k in ("estimate", "ci_low", "ci_high"))
    except (KeyError, TypeError, ValueError):
        return None
    return (est, lo, hi) if math.isfinite(est) else None


def plot_subgroup_forest(subgroups: Sequence[Mapping[str, Any]]) -> Figure:
    """Forest plot of indirect, direct and total effects per subgroup, with confidence intervals.

    Parameters
    ----------
    subgroups : sequence of mappings
        ``result.json["subgroups"]``: each with ``leaf``, ``rule``, ``n``, ``indirect``/
        ``direct``/``total`` as ``{"estimate", "ci_low", "ci_high"}`` (null without a mediator)
        and ``unadjusted`` with the same keys.

    Returns
    -------
    matplotlib.figure.Figure
        One panel per available effect; in each, per subgroup, the covariate-adjusted estimate
        (circle) and the unadjusted one (square) with their intervals, and a line at zero.
    """
    if not subgroups:
        raise MLearnerError("subgroups is empty: nothing to plot")
    effects = [e for e in _EFFECTS if any(_ci_triplet(sg.get(e)) for sg in subgroups)]
    if not effects:
        raise MLearnerError(
            "no subgroup has an estimate for indirect, direct or total effect: check result.json"
        )
    rows = len(subgroups)
    fig = _new_figure(3.4 * len(effects) + 2.2, max(2.6, 0.55 * rows + 1.4))
    axes = fig.subplots(1, len(effects), sharey=True, squeeze=False)[0]
    ypos = np.arange(rows)[::-1].astype(float)
    labels = [
        f"S{sg.get('leaf')} n={int(sg.get('n') or 0):,}\n"
        + textwrap.shorten(str(sg.get("rule") or ""), width=34, placeholder="...")
        for sg in subgroups
    ]
    for ax, eff in zip(axes, effects, strict=True):
        for kind, marker, offset, colour in (
            ("adjusted", "o", 0.13, "tab:blue"),
            ("unadjusted", "s", -0.13, "tab:orange"),
        ):
            for y, sg in zip(ypos, subgroups, strict=True):
                src = sg if kind == "adjusted" else (sg.get("unadjusted") or {})
                trip = _ci_triplet(src.get(eff))
                if trip is None:
                    continue
                est, lo, hi = trip
                err = [[max(est - lo, 0.0)], [max(hi - est, 0.0)]]
                ax.errorbar(
                    [est],
                    [y + offset],
                    xerr=err,
                    fmt=marker,
                    color=colour,
                    capsize=3,
                    markersize=5,
                    label=kind if y == ypos[0] else None,
                )
        ax.axvline(0.0, color="grey", linewidth=0.8)
        ax.set_title(f"{eff} effect", fontsize=10)
        ax.set_xlabel("effect with confidence interval")
    axes[0].set_yticks(ypos, labels, fontsize=7)
    handles, names = [], []
    for ax in axes:
        for h, n in zip(*ax.get_legend_handles_labels(), strict=True):
            if n not in names:
                handles.append(h)
                names.append(n)
    if handles:
        axes[-1].legend(handles, names, fontsize=8, loc="best")
    fig.suptitle("Subgroup effects: covariate-adjusted and unadjusted", fontsize=11)
    return fig


def plot_null_calibration(
    null_p: Sequence[float] | np.ndarray, observed: float, threshold: float
) -> Figure:
    """Histogram of the null p_leaf sample on a log10 scale, with the observed p_leaf and p**.

    Parameters
    ----------
    null_p : array-like of shape (R,)
        p_leaf of each null replicate (values in (0, 1]; zeros are drawn at the smallest positive
        double).
    observed : float
        p_leaf of the data.
    threshold : float
        The calibrated threshold p** (a low quantile of ``null_p``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    p = np.asarray(null_p, dtype=float).ravel()
    p = p[np.isfinite(p)]
    if p.size == 0:
        raise MLearnerError("null_p holds no finite p-values: the calibration produced nothing")
    if (p < 0).any() or (p > 1).any():
        raise MLearnerError(
            f"null_p must hold p-values in [0, 1]; found range [{p.min():.3g}, {p.max():.3g}]"
        )
    tiny = np.finfo(float).tiny
    logp = np.log10(np.maximum(p, tiny))
    fig = _new_figure(6.4, 4.2)
    ax = fig.add_subplot()
    bins = int(np.clip(np.sqrt(p.size) * 2, 10, 60))
    ax.hist(logp, bins=bins, color="tab:grey", alpha=0.8, label=f"null p_leaf (R = {p.size})")
    for value, name, colour, style in (
        (threshold, "threshold p**", "red", "--"),
        (observed, "observed p_leaf", "tab:blue", "-"),
    ):
        if value is not None and math.isfinite(float(value)):
            x = math.log10(max(float(value), tiny))
            ax.axvline(
                x,
                color=colour,
                linestyle=style,
                linewidth=1.5,
                label=f"{name} = {float(value):.3g}",
            )
    ax.set_xlabel("log10 p_leaf")
    ax.set_ylabel("null replicates")
    ax.set_title("Calibration: p_leaf under no heterogeneity", fontsize=10)
    ax.legend(fontsize=8)
    return fig


def plot_pleaf_ecdf(
    p_values_by_label: Mapping[str, Sequence[float] | np.ndarray],
    *,
    threshold: float | None = None,
) -> Figure:
    """Empirical CDF of p_leaf per scenario or method (the paper's figure), log10 x axis.

    Parameters
    ----------
    p_values_by_label : mapping of str to array-like
        For each label (scenario, noise level, method), the p_leaf of each replicate.
    threshold : float, optional
        A threshold to mark; the ECDF at it is the declaration rate.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if not p_values_by_label:
        raise MLearnerError("p_values_by_label is empty: pass {label: [p_leaf, ...]}")
    tiny = np.finfo(float).tiny
    fig = _new_figure(6.4, 4.4)
    ax = fig.add_subplot()
    for label, values in p_values_by_label.items():
        p = np.asarray(values, dtype=float).ravel()
        p = np.sort(p[np.isfinite(p)])
        if p.size == 0:
            raise MLearnerError(f"p_values_by_label[{label!r}] holds no finite p-values")
        y = np.arange(1, p.size + 1) / p.size
        ax.step(np.log10(np.maximum(p, tiny)), y, where="post", label=f"{label} (R = {p.size})")
    if threshold is not None:
        ax.axvline(
            math.log10(max(float(threshold), tiny)),
            color="red",
            linestyle="--",
            label=f"threshold = {float(threshold):.3g}",
        )
    ax.set_xlabel("log10 p_leaf")
    ax.set_ylabel("empirical CDF")
    ax.set_ylim(0, 1.02)
    ax.set_title("Empirical CDF of p_leaf", fontsize=10)
    ax.legend(fontsize=8)
    return fig


def plot_study_rates(rows: pd.DataFrame, *, alpha: float = 0.05) -> Figure:
    """Declared rates of a simulation study with 95% Wilson intervals, nulls beside their bound.

    Parameters
    ----------
    rows : DataFrame
        One row per setting and target, with columns ``label`` (str), ``declared`` (count),
        ``R`` (replicates) and ``null`` (bool: a null setting, whose rate is a Type I error).
    alpha : float
        Level of the decisions: null rows show the bound ``alpha + 3 sqrt(alpha (1 - alpha) / R)``
        as a red tick, alternatives the power targets 0.8 and 0.9 as dotted lines.

    Returns
    -------
    matplotlib.figure.Figure
    """
    need = {"label", "declared", "R", "null"}
    if not isinstance(rows, pd.DataFrame) or need - set(rows.columns):
        raise MLearnerError(f"rows: expected a DataFrame with columns {sorted(need)}")
    if rows.empty:
        raise MLearnerError("rows is empty: pass one row per setting and target")
    z = 1.959963984540054
    k = rows["declared"].to_numpy(dtype=float)
    r = rows["R"].to_numpy(dtype=float)
    if (r <= 0).any() or (k < 0).any() or (k > r).any():
        raise MLearnerError("rows: every R must be > 0 and 0 <= declared <= R")
    rate = k / r
    centre = (rate + z * z / (2 * r)) / (1 + z * z / r)
    half = z * np.sqrt(rate * (1 - rate) / r + z * z / (4 * r * r)) / (1 + z * z / r)
    fig = _new_figure(10.0, 0.34 * len(rows) + 1.4)
    ax = fig.add_subplot()
    y = np.arange(len(rows))[::-1]
    null = rows["null"].to_numpy(dtype=bool)
    for mask, colour, name in ((null, "tab:blue", "null: Type I error"),
                               (~null, "tab:green", "alternative: power")):
        if mask.any():
            # the Wilson interval holds the rate; clip the rounding at 0 and 1
            low = np.maximum(rate[mask] - (centre[mask] - half[mask]), 0.0)
            high = np.maximum((centre[mask] + half[mask]) - rate[mask], 0.0)
            ax.errorbar(rate[mask], y[mask], xerr=[low, high], fmt="o", color=colour,
                        capsize=2, label=name)
    bound = alpha + 3 * np.sqrt(alpha * (1 - alpha) / r)
    ax.scatter(bound[null], y[null], marker="|", s=160, color="red",
               label="bound alpha + 3 sd" if null.any() else None)
    for target in (0.8, 0.9):
        ax.axvline(target, color="grey", linestyle=":", linewidth=0.8)
    ax.axvline(alpha, color="red", linestyle="--", linewidth=0.8, label=f"alpha = {alpha:g}")
    ax.set_yticks(y)
    ax.set_yticklabels([f"{lab} (R = {int(n)})" for lab, n in zip(rows["label"], r, strict=True)],
                       fontsize=7)
    ax.set_xlim(-0.02, 1.02)
    ax.set_xlabel("share declared (95% Wilson interval)")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("Declared rates of the study", fontsize=10)
    return fig


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as a PNG (dpi 110) and release it.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    path : str or Path
        Target file; parent folders are created. The file is written under a temporary name and
        renamed, so a reader never sees half a PNG.

    Returns
    -------
    Path
        ``path``.
    """
    if not isinstance(fig, Figure):
        raise MLearnerError(f"fig must be a matplotlib Figure, got {type(fig).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, dpi=110, format="png")
    tmp.replace(path)
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        pyplot.close(fig)
    fig.clear()
    logger.debug("wrote figure %s", path)
    return path

def plot_sensitivity(sensitivity: Mapping[str, Any], *, max_subgroups: int = 8) -> Figure:
    """The indirect effect as a function of the M-Y error correlation rho.

    Parameters
    ----------
    sensitivity : mapping
        ``result.json["sensitivity"]``: ``whole`` and ``subgroups`` curves (``rho``,
        ``estimate``, ``ci_low``, ``ci_high``, ``rho_zero``).
    max_subgroups : int
        At most this many subgroup curves are drawn (the largest).

    Returns
    -------
    matplotlib.figure.Figure
        Left: the whole sample with its interval band, the zero line and rho~ (where the
        estimate crosses zero). Right: each subgroup's curve.
    """
    whole = sensitivity.get("whole")
    if not whole or not whole.get("rho"):
        raise MLearnerError("sensitivity has no whole-sample curve: nothing to plot")
    fig = _new_figure(11.0, 4.2)
    ax0, ax1 = fig.subplots(1, 2, sharey=True)
    rho = np.asarray(whole["rho"], dtype=float)
    ax0.fill_between(rho, whole["ci_low"], whole["ci_high"], alpha=0.25, label="95% interval")
    ax0.plot(rho, whole["estimate"], lw=2, label="ACME(rho)")
    ax0.axhline(0, color="0.3", lw=0.8)
    ax0.axvline(float(whole["rho_zero"]), color="C3", ls="--", lw=1,
                label=f"zero at rho = {whole['rho_zero']:.2f}")
    ax0.set_xlabel("rho = corr(mediator error, outcome error)")
    ax0.set_ylabel("average indirect effect")
    ax0.set_title(f"whole sample (n={int(whole['n']):,})")
    ax0.legend(fontsize=8, loc="best")
    curves = [s for s in sensitivity.get("subgroups", []) if s.get("rho")]
    curves = sorted(curves, key=lambda s: -int(s.get("n", 0)))[:max_subgroups]
    for i, sg in enumerate(curves):
        label = textwrap.shorten(f"S{sg['leaf']} (n={int(sg['n']):,}) {sg.get('rule', '')}",
                                 width=48, placeholder="...")
        ax1.plot(sg["rho"], sg["estimate"], color=f"C{i % 10}", label=label)
    ax1.axhline(0, color="0.3", lw=0.8)
    ax1.set_xlabel("rho")
    ax1.set_title("subgroups" if curves else "subgroups (none large enough)")
    if curves:
        ax1.legend(fontsize=7, loc="best")
    return fig


__all__ = [
    "MAX_SCATTER_POINTS",
    "plot_embedding",
    "plot_null_calibration",
    "plot_p_leaf_by_k",
    "plot_pleaf_ecdf",
    "plot_profile_tree",
    "plot_sensitivity",
    "plot_study_rates",
    "plot_subgroup_forest",
    "save_figure",
]
