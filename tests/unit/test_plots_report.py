"""Figures, the HTML report, progress reporting, the scoring model and the tracking helpers.

The result documents are real pipeline outputs (the ``real_result`` fixtures of tests/conftest.py,
tests/fixtures/result_*.json); the expected numbers are read from them and formatted as the
report formats them.
"""

from __future__ import annotations

import copy
import html
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
from mlearner_dist.core.progress import Progress, progress_callback
from mlearner_dist.exceptions import InputValidationError, MLearnerError
from mlearner_dist.report import render_report, write_report
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


# -- figures ---------------------------------------------------------------------------------------


def _assert_real_png(path: Path) -> None:
    assert path.stat().st_size > 5_000, f"{path.name} is suspiciously small"
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    assert float(np.var(img[..., :3])) > 0.0, f"{path.name} is blank"


def test_every_figure_is_a_nonblank_png(tmp_path, real_result):
    rng = np.random.default_rng(7)
    n = 600
    emb = pd.DataFrame({"tsne_1": rng.normal(size=n), "tsne_2": rng.normal(size=n)})
    result = real_result
    figures = {
        "clusters": plots.plot_embedding(emb, rng.integers(0, 3, n), title="clusters"),
        "effect": plots.plot_embedding(emb, rng.normal(size=n), title="effect"),
        "p_leaf_by_k": plots.plot_p_leaf_by_k(result["configurations"], result["threshold"]),
        "tree": plots.plot_profile_tree(QuadrantTree()),
        "forest": plots.plot_subgroup_forest(result["subgroups"]),
        "null": plots.plot_null_calibration(
            result["calibration"]["null_p_leaf"], result["p_leaf"], result["threshold"]
        ),
        "sensitivity": plots.plot_sensitivity(result["sensitivity"]),
        "ecdf": plots.plot_pleaf_ecdf(
            {"Simple-All": rng.uniform(0, 1e-3, 30), "Simple-Null1": rng.uniform(size=30)},
            threshold=0.0043,
        ),
        "study": plots.plot_study_rates(
            pd.DataFrame(
                {
                    "label": ["simple-null1 indirect", "simple-all indirect", "a", "b"],
                    "declared": [4, 99, 0, 87],
                    "R": [100, 100, 87, 87],
                    "null": [True, False, True, False],
                }
            )
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


def test_p_leaf_by_k_circles_the_smallest_p_value(real_result):
    confs = real_result["configurations"]
    smallest = min(c[key] for c in confs for key in ("p_y", "p_m") if c[key] is not None)
    fig = plots.plot_p_leaf_by_k(confs, 0.0043)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert f"smallest p = {smallest:.3g}" in labels
    assert "threshold p** = 0.0043" in labels


def test_profile_tree_shows_rules_and_sizes():
    fig = plots.plot_profile_tree(QuadrantTree())
    texts = " ".join(t.get_text() for t in fig.axes[0].texts)
    for rule in QuadrantTree.rules.values():
        assert rule in texts
    assert "Subgroup 1  (n = 50, 50.0%)" in texts
    assert "Subgroup 3  (n = 25, 25.0%)" in texts


def test_forest_draws_adjusted_and_unadjusted_for_each_effect(real_result):
    subgroups = real_result["subgroups"]
    fig = plots.plot_subgroup_forest(subgroups)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["indirect effect", "direct effect", "total effect"]
    # one error bar per subgroup with an estimate, adjusted and unadjusted, in each panel
    for ax, effect in zip(fig.axes, ("indirect", "direct", "total"), strict=True):
        bars = sum(
            src.get(effect) is not None and src[effect]["estimate"] is not None
            for sg in subgroups
            for src in (sg, sg["unadjusted"])
        )
        assert len(ax.containers) == bars == 2 * len(subgroups), effect


def test_forest_without_mediator_has_only_total_panel(real_result_total):
    fig = plots.plot_subgroup_forest(real_result_total["subgroups"])
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


def _num(x: float) -> str:
    return f"{x:.4g}"  # as the report prints numbers


def _ci_text(ci: dict) -> str:
    return f"{_num(ci['estimate'])} [{_num(ci['ci_low'])}, {_num(ci['ci_high'])}]"


def test_report_contains_rules_numbers_figures_and_balanced_tags(tmp_path, real_result):
    result = real_result
    fig = plots.plot_subgroup_forest(result["subgroups"])
    plots.save_figure(fig, tmp_path / "figures" / "subgroup_effects.png")
    path = write_report(result, tmp_path)
    assert path == tmp_path / "report.html"
    text = path.read_text(encoding="utf-8")
    checker = _TagChecker()
    checker.feed(text)
    assert checker.errors == [] and checker.stack == []
    plain = " ".join(checker.text)
    for sg in result["subgroups"]:
        assert sg["rule"] in plain  # unescaped by the parser: the rule text is in the report
        assert _ci_text(sg["indirect"]) in plain  # adjusted
        assert _ci_text(sg["unadjusted"]["indirect"]) in plain
    first = result["subgroups"][0]["rule"]
    assert "<=" in first and first.replace("<", "&lt;").replace(">", "&gt;") in text  # escaped
    assert "Heterogeneity declared" in plain
    assert f"p_leaf = {_num(result['p_leaf'])}" in plain
    assert f"p** = {_num(result['threshold'])}" in plain
    account = result["row_account"]
    ((reason, n_removed),) = account["removed"].items()
    assert f"removed: {reason}" in plain and f"{n_removed:,}" in plain
    assert f"{account['n_input']:,}" in plain and f"{account['n_used']:,}" in plain
    assert _num(result["clustering"]["wcss"]["3"]) in plain
    assert html.unescape(result["calibration"]["how"]) in plain
    assert len(re.findall(r"data:image/png;base64,", text)) == 1
    total = sum(result["timings"].values())
    assert "<h2>Timings (seconds)</h2>" in text and f"{total:.2f}" in plain


def test_report_escapes_hostile_text_and_says_not_declared(real_result):
    # a rule quotes covariate names, which come from the user's columns
    result = real_result
    result["declared"] = False
    result["subgroups"][0]["rule"] = "<script>alert(1)</script> <= 0"
    text = render_report(result)
    assert "<script>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &lt;= 0" in text
    assert "Heterogeneity not declared" in text


def test_report_without_mediator_shows_dashes_for_missing_effects(real_result_total):
    text = render_report(real_result_total)
    assert "No mediator: only the total effect is studied." in text
    assert '<td>indirect</td><td class="num">&ndash;</td>' in text
    total = real_result_total["average_effects"]["total"]
    assert f'<td>total</td><td class="num">{_ci_text(total)}</td>' in text


def test_write_report_validates_its_inputs(tmp_path):
    with pytest.raises(MLearnerError, match="is not a folder"):
        write_report({}, tmp_path / "missing")
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


def test_result_metrics_and_tags_follow_the_naming_contract(tmp_path, real_result):
    result = real_result
    metrics = result_metrics(result)
    for conf in result["configurations"]:
        k, tree = conf["k"], conf["tree_id"]
        if conf["selected_for_test"]:
            assert metrics[f"p_m.k{k}.tree{tree}"] == pytest.approx(conf["p_m"])
            assert metrics[f"p_y.k{k}.tree{tree}"] == pytest.approx(conf["p_y"])
        else:  # not tested: its null p-values are left out
            assert f"p_y.k{k}.tree{tree}" not in metrics and f"p_m.k{k}.tree{tree}" not in metrics
    assert any(not c["selected_for_test"] for c in result["configurations"])
    assert metrics["declared"] == 1.0
    assert metrics["wcss.k3"] == pytest.approx(result["clustering"]["wcss"]["3"])
    ci_high = result["average_effects"]["indirect"]["ci_high"]
    assert metrics["indirect.ci_high"] == pytest.approx(ci_high)
    assert metrics["mc_pvalue"] == pytest.approx(result["calibration"]["mc_pvalue"])
    assert metrics["n_removed"] == sum(result["row_account"]["removed"].values()) == 10
    assert metrics["n_subgroups"] == len(result["subgroups"])
    tags = result_tags(result, tmp_path)
    assert tags["mlearner.chosen_k"] == str(result["chosen"]["k"])
    assert tags["mlearner.declared"] == "true"
    assert tags["mlearner.threshold"] == str(result["threshold"])
    assert tags["mlearner.calibration_mode"] == result["calibration"]["mode"] == "null"
    assert tags["mlearner.output_dir"] == str(tmp_path.resolve())
    with pytest.raises(MLearnerError, match=r"result must be the result\.json mapping"):
        result_metrics([])  # type: ignore[arg-type]


def test_subgroup_frame_flattens_adjusted_and_unadjusted(real_result):
    subgroups = real_result["subgroups"]
    table = subgroup_frame(subgroups)
    assert table["leaf"].tolist() == [sg["leaf"] for sg in subgroups]
    last = subgroups[-1]
    assert table.iloc[-1]["indirect"] == pytest.approx(last["indirect"]["estimate"])
    low = last["unadjusted"]["indirect"]["ci_low"]
    assert table.iloc[-1]["unadjusted_indirect_ci_low"] == pytest.approx(low)
    # prop_mediated is null where the total effect's interval covers 0: NaN in the table
    missing = [i for i, sg in enumerate(subgroups) if sg["prop_mediated"]["estimate"] is None]
    assert missing and table["prop_mediated"].iloc[missing].isna().all()


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


def test_both_targets_reach_mlflow_the_summary_and_the_report(tmp_path, real_result):
    from mlearner_dist.summary import format_summary

    assert set(real_result["targets"]) == {"indirect", "total"}
    for declared in (True, False):
        result = copy.deepcopy(real_result)
        total = result["targets"]["total"]
        if not declared:  # as a run whose total-effect target is not declared records it
            total.update(declared=False, p_leaf=0.6, mc_pvalue=0.6)
        rule = total["subgroups"][0]["rule"]
        metrics, tags = result_metrics(result), result_tags(result, tmp_path)
        assert metrics["targets.total.declared"] == float(declared)
        assert metrics["targets.total.p_leaf"] == pytest.approx(total["p_leaf"])
        assert tags["mlearner.targets.total.declared"] == ("true" if declared else "false")
        assert tags["mlearner.targets.indirect.declared"] == tags["mlearner.declared"]
        text = format_summary(result, tmp_path)
        html_text = render_report(result)
        assert "<h2>Targets</h2>" in html_text
        if declared:
            assert "total effect target: heterogeneity declared" in text
            assert "<td>total</td><td>declared</td>" in html_text
            assert f"{rule}: total " in text
        else:
            # a target that is not declared is not presented as subgroups
            assert "total effect target: heterogeneity not declared" in text
            assert f"{rule}: total " not in text
            assert "(descriptive only)" in html_text
        assert "each target is tested at alpha" in text


def test_seed_stability_reaches_the_summary_and_the_report(real_result):
    from mlearner_dist.summary import format_summary

    st = real_result["stability"]  # the real cross-split stability of the fixture's run
    assert st is not None and st["n_seeds"] == 5 and "cross-split" in st["how"]
    html_text = render_report(real_result)
    assert "<h2>Seed stability</h2>" in html_text
    assert f"{st['share_declared']:.0%} of 5 other seeds declare" in html_text
    for seed in st["seeds"]:
        assert f"<td>{seed}</td>" in html_text
    for rule in st["rule_recurrence"]:
        assert html.escape(rule) in html_text
    assert "cross-split decision re-run" in html_text
    assert f"seed stability: {st['share_declared']:.0%} of 5" in format_summary(
        real_result, Path(".")
    )
    real_result["stability"] = None
    assert "Seed stability" not in render_report(real_result)


def test_study_rates_refuses_counts_outside_zero_to_r():
    bad = pd.DataFrame({"label": ["a"], "declared": [5], "R": [4], "null": [True]})
    with pytest.raises(MLearnerError, match=r"0 <= declared <= R"):
        plots.plot_study_rates(bad)
    with pytest.raises(MLearnerError, match="columns"):
        plots.plot_study_rates(bad.drop(columns="null"))
