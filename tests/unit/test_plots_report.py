"""Figures, the HTML report, progress reporting, the scoring model and the tracking helpers."""

from __future__ import annotations

import html.parser
import io
import logging
import re
from pathlib import Path
from typing import ClassVar

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest

from mlearner_dist import plots
from mlearner_dist.config import config_from_dict
from mlearner_dist.core.progress import Progress, progress_callback
from mlearner_dist.exceptions import InputValidationError, MLearnerError
from mlearner_dist.report import render_report, write_report
from mlearner_dist.result_schema import SCHEMA_VERSION, result_problems
from mlearner_dist.scoring import SubgroupModel, score_frame
from mlearner_dist.tracking import (
    MAX_PARAM_VALUE_LENGTH,
    NullTracker,
    Tracker,
    chunked,
    flatten_dict,
    param_value,
    result_metrics,
    result_tags,
    subgroup_frame,
)


class QuadrantTree:
    """Test double of a fitted profile tree: splits on x1 at 0, then on x2 at 0 when x1 > 0."""

    covariates = ("x1", "x2")
    rules: ClassVar[dict[int, str]] = {
        1: "x1 <= 0",
        2: "x1 > 0 and x2 <= 0",
        3: "x1 > 0 and x2 > 0",
    }

    def __init__(self, sizes: dict[int, int] | None = None) -> None:
        self.sizes = sizes or {1: 50, 2: 25, 3: 25}

    def leaf_of(self, X: pd.DataFrame) -> np.ndarray:
        x1, x2 = X["x1"].to_numpy(), X["x2"].to_numpy()
        return np.where(x1 <= 0, 1, np.where(x2 <= 0, 2, 3))


def _ci(est: float, half: float = 0.1) -> dict[str, float]:
    return {"estimate": est, "ci_low": est - half, "ci_high": est + half}


def toy_result() -> dict:
    """A result.json following docs/architecture.md, with hand-chosen numbers."""
    rules = QuadrantTree.rules
    subgroups = [
        {
            "leaf": leaf,
            "rule": rules[leaf],
            "n": n,
            "indirect": _ci(eff),
            "direct": _ci(0.01),
            "total": _ci(eff + 0.01),
            "prop_mediated": _ci(0.9),
            "unadjusted": {
                "indirect": _ci(eff * 1.3, 0.2),
                "direct": _ci(-0.05, 0.2),
                "total": _ci(eff * 1.3 - 0.05, 0.2),
                "prop_mediated": _ci(1.35, 0.3),
            },
        }
        for leaf, n, eff in ((1, 500, 0.0), (2, 250, 0.4), (3, 250, 1.7321))
    ]
    doc = {
        "schema_version": SCHEMA_VERSION,
        "run_id": "abc123def456",
        "mlflow_run_id": None,
        "created": "2026-11-22T21:00:00+00:00",
        "version": "0.1.0",
        "config": config_from_dict(
            {
                "data": {"source": "/data/units.parquet", "format": "parquet"},
                "columns": {"unit_id": "id", "treatment": "T", "outcome": "Y", "mediator": ["M"]},
                "embed": {"perplexity": 30, "effects": ["indirect"]},
            }
        ).to_dict(),
        "row_account": {"n_input": 1010, "n_used": 1000, "removed": {"missing outcome": 10}},
        "has_mediator": True,
        "average_effects": {
            "indirect": _ci(0.53),
            "direct": _ci(0.01),
            "total": _ci(0.54),
            "prop_mediated": _ci(0.98),
        },
        "nuisance_diagnostics": {},
        "embedding": {"path": "exact", "n_landmarks": None, "perplexity": 30},
        "clustering": {"k_values": [2, 3], "wcss": {"2": 812.5, "3": 401.25}},
        "configurations": [
            {
                "k": 2,
                "tree_id": 0,
                "n_leaves": 2,
                "variables": ["x1"],
                "cv_error": 0.2,
                "selected_for_test": True,
                "p_y": 0.02,
                "p_m": 1e-4,
            },
            {
                "k": 3,
                "tree_id": 0,
                "n_leaves": 3,
                "variables": ["x1", "x2"],
                "cv_error": 0.1,
                "selected_for_test": True,
                "p_y": 0.001,
                "p_m": 3.5e-9,
            },
            {
                "k": 3,
                "tree_id": 1,
                "n_leaves": 2,
                "variables": ["x2"],
                "cv_error": 0.15,
                "selected_for_test": False,
                "p_y": None,
                "p_m": None,
            },
        ],
        "chosen": {
            "k": 3,
            "tree_id": 0,
            "n_leaves": 3,
            "variables": ["x1", "x2"],
            "cv_error": 0.1,
            "selected_for_test": True,
            "p_y": 0.001,
            "p_m": 3.5e-9,
            "response": "m",
        },
        "p_leaf": 3.5e-9,
        "p_leaf_y": 0.001,
        "p_leaf_m": 3.5e-9,
        "threshold": 0.0043,
        "calibration": {
            "mode": "null",
            "threshold": 0.0043,
            "alpha": 0.05,
            "n_replicates": 40,
            "null_p_leaf": list(np.geomspace(1e-4, 0.9, 40)),
            "mc_pvalue": 0.0244,
            "how": "the whole selection re-run on 40 null replicates",
        },
        "declared": True,
        "subgroups": subgroups,
        "record": {
            "data_hash": {"n_rows": 1000, "columns": ["id", "T", "M", "Y"], "sha256": "0" * 64},
            "config_fingerprint": "0123456789abcdef",
            "version": "0.1.0",
            "code_commit": None,
            "python": "3.11.7",
            "libraries": {"numpy": "2.4.6"},
        },
        "timings": {"validate": 0.5, "effects": 12.25, "report": 1.0},
    }
    problems = result_problems(doc)
    assert problems == [], f"the fixture must be a result the report could write: {problems}"
    return doc


# -- figures ---------------------------------------------------------------------------------------


def _assert_real_png(path: Path) -> None:
    assert path.stat().st_size > 5_000, f"{path.name} is suspiciously small"
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    assert float(np.var(img[..., :3])) > 0.0, f"{path.name} is blank"


def test_every_figure_is_a_nonblank_png(tmp_path):
    rng = np.random.default_rng(7)
    n = 600
    emb = pd.DataFrame({"tsne_1": rng.normal(size=n), "tsne_2": rng.normal(size=n)})
    result = toy_result()
    figures = {
        "clusters": plots.plot_embedding(emb, rng.integers(0, 3, n), title="clusters"),
        "effect": plots.plot_embedding(emb, rng.normal(size=n), title="effect"),
        "p_leaf_by_k": plots.plot_p_leaf_by_k(result["configurations"], result["threshold"]),
        "tree": plots.plot_profile_tree(QuadrantTree()),
        "forest": plots.plot_subgroup_forest(result["subgroups"]),
        "null": plots.plot_null_calibration(
            result["calibration"]["null_p_leaf"], result["p_leaf"], result["threshold"]
        ),
        "sensitivity": plots.plot_sensitivity(
            {
                "whole": {
                    "n": 900,
                    "rho": [-0.5, 0.0, 0.5],
                    "estimate": [0.4, 0.2, -0.1],
                    "ci_low": [0.2, 0.05, -0.3],
                    "ci_high": [0.6, 0.35, 0.1],
                    "rho_zero": 0.33,
                },
                "subgroups": [
                    {
                        "leaf": 1,
                        "rule": "x1 <= 0",
                        "n": 400,
                        "rho": [-0.5, 0.0, 0.5],
                        "estimate": [0.3, 0.1, -0.2],
                    },
                    {"leaf": 2, "rule": "x1 > 0", "n": 20, "note": "too small"},
                ],
            }
        ),
        "ecdf": plots.plot_pleaf_ecdf(
            {"Simple-All": rng.uniform(0, 1e-3, 30), "Simple-Null1": rng.uniform(size=30)},
            threshold=0.0043,
        ),
    }
    for name, fig in figures.items():
        path = plots.save_figure(fig, tmp_path / "figures" / f"{name}.png")
        assert path == tmp_path / "figures" / f"{name}.png"
        _assert_real_png(path)
    assert not list((tmp_path / "figures").glob(".*.tmp")), "temporary files are renamed away"


def test_embedding_categorical_gets_one_legend_entry_per_cluster_with_its_size():
    emb = pd.DataFrame({"tsne_1": [0.0, 1, 2, 3, 4], "tsne_2": [0.0, 1, 0, 1, 0]})
    fig = plots.plot_embedding(emb, np.array([2, 2, 1, 1, 1]), title="t")
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["1 (n=3)", "2 (n=2)"]


def test_embedding_subsample_is_deterministic_and_bounded():
    rng = np.random.default_rng(1)
    emb = pd.DataFrame({"tsne_1": rng.normal(size=5000), "tsne_2": rng.normal(size=5000)})
    color = rng.normal(size=5000)
    offsets = []
    for _ in range(2):
        fig = plots.plot_embedding(emb, color, title="big", max_points=700, random_state=3)
        coll = fig.axes[0].collections[0]
        offsets.append(np.asarray(coll.get_offsets()))
        assert "700 of 5,000 units drawn" in fig.axes[0].get_title()
        assert coll.get_rasterized()
    assert offsets[0].shape == (700, 2)
    np.testing.assert_array_equal(offsets[0], offsets[1])


def test_p_leaf_by_k_circles_the_smallest_p_value():
    fig = plots.plot_p_leaf_by_k(toy_result()["configurations"], 0.0043)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "smallest p = 3.5e-09" in labels
    assert "threshold p** = 0.0043" in labels


def test_profile_tree_shows_rules_and_sizes():
    fig = plots.plot_profile_tree(QuadrantTree())
    texts = " ".join(t.get_text() for t in fig.axes[0].texts)
    for rule in QuadrantTree.rules.values():
        assert rule in texts
    assert "Subgroup 1  (n = 50, 50.0%)" in texts
    assert "Subgroup 3  (n = 25, 25.0%)" in texts


def test_forest_draws_adjusted_and_unadjusted_for_each_effect():
    fig = plots.plot_subgroup_forest(toy_result()["subgroups"])
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["indirect effect", "direct effect", "total effect"]
    # 3 subgroups x (adjusted + unadjusted) error bars per panel
    assert all(len(ax.containers) == 6 for ax in fig.axes)


def test_forest_without_mediator_has_only_total_panel():
    subgroups = [
        {
            "leaf": 1,
            "rule": "a",
            "n": 3,
            "indirect": None,
            "direct": None,
            "total": _ci(1.0),
            "unadjusted": {"indirect": None, "direct": None, "total": _ci(1.2)},
        },
    ]
    fig = plots.plot_subgroup_forest(subgroups)
    assert [ax.get_title() for ax in fig.axes] == ["total effect"]


def test_plot_inputs_are_validated():
    emb = pd.DataFrame({"tsne_1": [0.0, 1.0], "tsne_2": [0.0, 1.0]})
    with pytest.raises(MLearnerError, match="tsne_2"):
        plots.plot_embedding(emb.drop(columns="tsne_2"), [1, 2], title="t")
    with pytest.raises(MLearnerError, match=r"color has shape \(3,\); expected \(2,\)"):
        plots.plot_embedding(emb, [1, 2, 3], title="t")
    with pytest.raises(MLearnerError, match="configurations is empty"):
        plots.plot_p_leaf_by_k([], 0.01)
    with pytest.raises(MLearnerError, match=r"p-values in \[0, 1\]"):
        plots.plot_null_calibration([0.5, 1.5], 0.1, 0.01)
    with pytest.raises(MLearnerError, match="subgroups is empty"):
        plots.plot_subgroup_forest([])
    with pytest.raises(MLearnerError, match="non-empty rules"):
        plots.plot_profile_tree(object())
    with pytest.raises(MLearnerError, match="must be a matplotlib Figure"):
        plots.save_figure("not a figure", "x.png")  # type: ignore[arg-type]


# -- report ----------------------------------------------------------------------------------------


class _TagChecker(html.parser.HTMLParser):
    VOID: ClassVar[set[str]] = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> with open {self.stack[-3:]}")
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def test_report_contains_rules_numbers_figures_and_balanced_tags(tmp_path):
    result = toy_result()
    fig = plots.plot_subgroup_forest(result["subgroups"])
    plots.save_figure(fig, tmp_path / "figures" / "subgroup_effects.png")
    path = write_report(result, tmp_path)
    assert path == tmp_path / "report.html"
    text = path.read_text(encoding="utf-8")
    checker = _TagChecker()
    checker.feed(text)
    assert checker.errors == [] and checker.stack == []
    plain = " ".join(checker.text)
    for rule in QuadrantTree.rules.values():
        assert rule in plain  # unescaped by the parser: the rule text is in the report
    assert "x1 &lt;= 0" in text  # ...and it was escaped in the HTML
    assert "Heterogeneity declared" in plain
    assert "p_leaf = 3.5e-09" in plain and "p** = 0.0043" in plain
    assert "1.732 [1.632, 1.832]" in plain  # adjusted indirect of subgroup 3
    assert "2.252 [2.052, 2.452]" in plain  # unadjusted indirect of subgroup 3 (1.3 x 1.7321)
    assert "1,010" in plain and "missing outcome" in plain
    assert "401.2" in plain  # wcss for K = 3
    assert "re-run on 40 null replicates" in plain
    assert len(re.findall(r"data:image/png;base64,", text)) == 1
    assert "<h2>Timings (seconds)</h2>" in text and "13.75" in plain


def test_report_escapes_hostile_text_and_says_not_declared():
    result = toy_result()
    result["declared"] = False
    result["subgroups"][0]["rule"] = "<script>alert(1)</script>"
    text = render_report(result)
    assert "<script>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "Heterogeneity not declared" in text


def test_report_without_mediator_shows_dashes_for_missing_effects():
    result = toy_result()
    result["has_mediator"] = False
    result["average_effects"] = {
        "indirect": None,
        "direct": None,
        "total": _ci(0.5),
        "prop_mediated": None,
    }
    text = render_report(result)
    assert "No mediator: only the total effect is studied." in text
    assert '<td>indirect</td><td class="num">&ndash;</td>' in text


def test_write_report_validates_its_inputs(tmp_path):
    with pytest.raises(MLearnerError, match="is not a folder"):
        write_report(toy_result(), tmp_path / "missing")
    with pytest.raises(MLearnerError, match=r"result must be the result\.json mapping"):
        write_report(["not", "a", "dict"], tmp_path)  # type: ignore[arg-type]


# -- progress --------------------------------------------------------------------------------------


class _FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_logs_about_every_ten_percent_when_not_a_tty(caplog):
    caplog.set_level(logging.INFO, logger="mlearner_dist.core.progress")
    with Progress(200, "replicates", stream=io.StringIO()) as bar:
        for _ in range(200):
            bar.update()
    messages = [r.getMessage() for r in caplog.records]
    steps = [m for m in messages if re.match(r"replicates: \d+/200", m)]
    assert len(steps) == 10
    assert steps[0].startswith("replicates: 20/200 (10%)")
    assert steps[-1].startswith("replicates: 200/200 (100%)")
    assert messages[-1].startswith("replicates: done after 200/200 steps")


def test_progress_draws_a_live_line_on_a_tty_and_logs_nothing(caplog):
    caplog.set_level(logging.INFO, logger="mlearner_dist.core.progress")
    stream = _FakeTTY()
    with Progress(3, "trees", stream=stream) as bar:
        for _ in range(3):
            bar.update(message="K=2")
    out = stream.getvalue()
    assert "\r" in out and "trees: 3/3 (100%)" in out and out.endswith("\n")
    assert caplog.records == []


def test_progress_callback_logs_each_message(caplog):
    caplog.set_level(logging.INFO, logger="mlearner_dist.core.progress")
    report = progress_callback("profile", stream=io.StringIO())
    report("profile trees for K=2")
    report("profile trees for K=3")
    assert [r.getMessage() for r in caplog.records] == [
        "profile: profile trees for K=2",
        "profile: profile trees for K=3",
    ]


def test_progress_validates_its_inputs():
    with pytest.raises(MLearnerError, match="total must be a non-negative integer"):
        Progress(-1, "x")
    with pytest.raises(MLearnerError, match=r"every must be in \(0, 1\]"):
        Progress(10, "x", every=0)


# -- scoring ---------------------------------------------------------------------------------------


def test_score_frame_assigns_hand_computed_subgroups_and_rules():
    df = pd.DataFrame(
        {"id": [10, 11, 12, 13], "x1": [-1.0, 0.5, 2.0, 0.0], "x2": [5.0, -0.1, 0.3, -3.0]}
    )
    scored = score_frame(QuadrantTree(), df)
    assert scored["subgroup"].tolist() == [1, 2, 3, 1]
    assert scored["rule"].tolist() == [QuadrantTree.rules[i] for i in (1, 2, 3, 1)]
    assert scored["id"].tolist() == [10, 11, 12, 13]
    assert list(df.columns) == ["id", "x1", "x2"], "the input is not modified"


def test_subgroup_model_reports_missing_covariates_and_bad_trees():
    model = SubgroupModel(QuadrantTree())
    with pytest.raises(InputValidationError, match="column 'x2' \\(covariate\\) is missing"):
        model.predict(pd.DataFrame({"x1": [1.0]}))

    class Liar(QuadrantTree):
        def leaf_of(self, X):
            return np.full(len(X), 9)

    with pytest.raises(MLearnerError, match=r"leaf ids \[9\] that are not in its rules"):
        SubgroupModel(Liar()).predict(pd.DataFrame({"x1": [1.0], "x2": [1.0]}))
    with pytest.raises(MLearnerError, match="leaf_of"):
        SubgroupModel(object())

    class Anonymous:
        rules: ClassVar[dict[int, str]] = {1: "all"}

        def leaf_of(self, X):
            return np.ones(len(X), dtype=int)

    with pytest.raises(MLearnerError, match="pass covariates"):
        SubgroupModel(Anonymous())
    assert SubgroupModel(Anonymous(), covariates=["a"]).predict(pd.DataFrame({"a": [1, 2]}))[
        "rule"
    ].tolist() == ["all", "all"]


# -- tracking helpers ------------------------------------------------------------------------------


def test_flatten_dict_nests_with_dots_and_lists_as_json():
    flat = flatten_dict({"a": {"b": 1, "c": {"d": [1, "x"]}}, "e": None, "f": {}, "g": True})
    assert flat == {"a.b": 1, "a.c.d": '[1, "x"]', "e": "", "f": "{}", "g": True}
    assert flatten_dict({"a": {"b": 1}}, sep="/") == {"a/b": 1}
    with pytest.raises(MLearnerError, match="occurs twice"):
        flatten_dict({"a.b": 1, "a": {"b": 2}})
    with pytest.raises(MLearnerError, match="d must be a mapping"):
        flatten_dict([1, 2])  # type: ignore[arg-type]


def test_chunking_and_truncation_respect_mlflow_limits():
    sizes = [len(c) for c in chunked(list(range(250)), 100)]
    assert sizes == [100, 100, 50]
    assert list(chunked([], 100)) == []
    with pytest.raises(MLearnerError, match="size must be a positive integer"):
        list(chunked([1], 0))
    long = param_value("x" * 10_000)
    assert len(long) == MAX_PARAM_VALUE_LENGTH and long.endswith("[truncated 10000 chars]")
    assert param_value("short") == "short" and param_value(0.5) == "0.5"
    assert param_value(True) == "True"


def test_result_metrics_and_tags_follow_the_naming_contract(tmp_path):
    result = toy_result()
    metrics = result_metrics(result)
    assert metrics["p_m.k3.tree0"] == pytest.approx(3.5e-9)
    # tree 1 of K=3 was not selected for testing: its null p-values are left out
    assert "p_y.k3.tree1" not in metrics and "p_m.k3.tree1" not in metrics
    assert metrics["declared"] == 1.0
    assert metrics["wcss.k3"] == pytest.approx(401.25)
    assert metrics["indirect.ci_high"] == pytest.approx(0.63)
    assert metrics["mc_pvalue"] == pytest.approx(0.0244)
    assert metrics["n_removed"] == 10 and metrics["n_subgroups"] == 3
    tags = result_tags(result, tmp_path)
    assert tags["mlearner.chosen_k"] == "3"
    assert tags["mlearner.declared"] == "true"
    assert tags["mlearner.threshold"] == "0.0043"
    assert tags["mlearner.calibration_mode"] == "null"
    assert tags["mlearner.output_dir"] == str(tmp_path.resolve())
    with pytest.raises(MLearnerError, match=r"result must be the result\.json mapping"):
        result_metrics([])  # type: ignore[arg-type]


def test_subgroup_frame_flattens_adjusted_and_unadjusted():
    table = subgroup_frame(toy_result()["subgroups"])
    assert table["leaf"].tolist() == [1, 2, 3]
    assert table.loc[2, "indirect"] == pytest.approx(1.7321)
    assert table.loc[2, "unadjusted_indirect_ci_low"] == pytest.approx(1.7321 * 1.3 - 0.2)


def test_null_tracker_is_a_tracker_that_records_nothing(tmp_path):
    tracker = NullTracker()
    assert isinstance(tracker, Tracker)
    assert tracker.start_run("x", tags={"a": 1}) == ""
    with tracker.child("stage", {"mlearner.stage": "embed"}) as child_id:
        assert child_id == ""
        tracker.log_params({"a": {"b": 1}})
        tracker.log_metrics({"m": 1.0}, step=2)
    tracker.log_table(pd.DataFrame({"a": [1]}), "t.csv")
    assert tracker.log_subgroup_model(QuadrantTree(), pd.DataFrame({"x1": [1.0]})) is None
    tracker.end_run("FAILED")
    assert tracker.run_id is None
    assert list(tmp_path.iterdir()) == []


def _with_targets(declared_total: bool) -> dict:
    result = toy_result()
    total = {
        "target": "total",
        "p_leaf": 0.02 if declared_total else 0.6,
        "threshold": 0.05,
        "declared": declared_total,
        "chosen": {"k": 2, "n_leaves": 2, "variables": ["X9"]},
        "subgroups": [{"n": 10, "rule": "X9 <= 0", "total": _ci(0.4)}],
    }
    result["targets"] = {
        "indirect": {
            "target": "indirect",
            "p_leaf": result["p_leaf"],
            "threshold": result["threshold"],
            "declared": result["declared"],
            "chosen": result["chosen"],
        },
        "total": total,
    }
    return result


def test_both_targets_reach_mlflow_the_summary_and_the_report(tmp_path):
    from mlearner_dist.summary import format_summary

    for declared in (True, False):
        result = _with_targets(declared)
        metrics, tags = result_metrics(result), result_tags(result, tmp_path)
        assert metrics["targets.total.declared"] == float(declared)
        assert metrics["targets.total.p_leaf"] == pytest.approx(
            result["targets"]["total"]["p_leaf"]
        )
        assert tags["mlearner.targets.total.declared"] == ("true" if declared else "false")
        assert tags["mlearner.targets.indirect.declared"] == tags["mlearner.declared"]
        text = format_summary(result, tmp_path)
        html_text = render_report(result)
        assert "<h2>Targets</h2>" in html_text
        if declared:
            assert "total effect target: heterogeneity declared" in text
            assert "<td>total</td><td>declared</td>" in html_text
            assert "X9 <= 0" in text
        else:
            # a target that is not declared is not presented as subgroups
            assert "total effect target: heterogeneity not declared" in text
            assert "X9 <= 0" not in text
            assert "(descriptive only)" in html_text
        assert "each target is tested at alpha" in text


def test_seed_stability_reaches_the_summary_and_the_report():
    from mlearner_dist.core.stability import SeedRun, summarise_stability
    from mlearner_dist.summary import format_summary

    leaf = np.array([0, 0, 1, 1, 1, 2])
    runs = [
        SeedRun(1, 0.02, leaf.copy(), ("X1 <= 0", "X1 > 0"), ("X1",)),
        SeedRun(2, 0.30, np.array([0, 1, 0, 1, 0, 1]), ("X5 <= 0", "X5 > 0"), ("X5",)),
    ]
    result = toy_result()
    result["stability"] = {
        **summarise_stability(leaf, ["X1 <= 0", "X1 > 0"], 0.05, runs),
        "how": "the cross-split decision re-run with 2 other seeds",
    }
    assert result_problems(result) == []
    html_text = render_report(result)
    assert "<h2>Seed stability</h2>" in html_text
    assert "50% of 2 other seeds declare" in html_text
    assert re.search(r"X1 &lt;= 0</td>\s*<td[^>]*>50%</td>", html_text), html_text[-2000:]
    assert "cross-split decision re-run" in html_text
    assert "seed stability: 50% of 2" in format_summary(result, Path("."))
    result["stability"] = None
    assert "Seed stability" not in render_report(result)
