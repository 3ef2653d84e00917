"""The bounded-driver selection: leaf moments pooled over chunks give the in-memory choice."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlearner_dist.core.leaf_merging import merge_leaves, merge_leaves_from_moments
from mlearner_dist.core.leaf_statistics import combine_tree_statistics, tree_statistics
from mlearner_dist.core.profiles import fit_profile_trees
from mlearner_dist.core.roles import Roles
from mlearner_dist.core.selection import ProfileSettings, choose_profile, tree_pvalues
from mlearner_dist.datasets import simulate

COVS = [f"X{i}" for i in range(1, 11)]
ROLES = Roles(
    unit_id="unit_id", treatment="T", outcome="Y", mediators=("M",), covariates=tuple(COVS)
)


def _units(n: int = 1200, seed: int = 3) -> tuple[pd.DataFrame, dict[int, np.ndarray]]:
    d = simulate("simple-all", n, seed=seed, noise_sd=1.0)
    rng = np.random.default_rng(seed)
    # noisy "DR scores" around the truth, and cluster labels that follow the true effect
    d["score_indirect"] = d["true_indirect"] + rng.normal(scale=1.0, size=n)
    d["score_total"] = d["true_total"] + rng.normal(scale=1.0, size=n)
    eff = d["true_indirect"].to_numpy() + 0.3 * rng.normal(size=n)
    labels = {k: np.digitize(eff, np.quantile(eff, np.linspace(0, 1, k + 1)[1:-1])) for k in (2, 3)}
    return d, labels


def _statistics_fn(units: pd.DataFrame, n_chunks: int):
    chunks = np.array_split(np.arange(len(units)), n_chunks)

    def statistics(trees):
        parts = [
            tree_statistics(
                units.iloc[idx],
                trees,
                treatment="T",
                outcome="Y",
                mediators=("M",),
                scores={"indirect": "score_indirect", "total": "score_total"},
            )
            for idx in chunks
        ]
        return combine_tree_statistics(parts)

    return statistics


SETTINGS = ProfileSettings(cv_folds=5, max_rows=None, merge_leaves=True, merge_level=0.05)


@pytest.mark.parametrize("target", ["indirect", None])
def test_choice_from_chunk_moments_equals_the_in_memory_choice(target) -> None:
    units, labels = _units()
    common = dict(has_mediator=True, settings=SETTINGS, random_state=0, target=target)
    ref = choose_profile(
        units[COVS],
        labels,
        tree_pvalues(units, ROLES, "f"),
        score=None if target is None else units["score_indirect"].to_numpy(),
        **common,
    )
    got = choose_profile(units[COVS], labels, None, statistics=_statistics_fn(units, 4), **common)
    assert got.chosen["k"] == ref.chosen["k"] and got.response == ref.response
    assert got.p_leaf == pytest.approx(ref.p_leaf, rel=1e-9, abs=1e-12)
    assert got.p_leaf_y == pytest.approx(ref.p_leaf_y, rel=1e-9, abs=1e-12)
    assert got.p_leaf_m == pytest.approx(ref.p_leaf_m, rel=1e-9, abs=1e-12)
    for a, b in zip(got.configurations, ref.configurations, strict=True):
        assert a["n_leaves"] == b["n_leaves"] and a["variables"] == b["variables"]
        if b["selected_for_test"]:
            assert a["p_y"] == pytest.approx(b["p_y"], rel=1e-9, abs=1e-12)
    assert got.chosen_tree.rules == ref.chosen_tree.rules
    assert got.chosen_tree.leaf_sizes == ref.chosen_tree.leaf_sizes


def test_trees_grown_on_a_sample_count_every_unit() -> None:
    units, labels = _units()
    sample = np.arange(0, len(units), 3)
    got = choose_profile(
        units.iloc[sample][COVS].reset_index(drop=True),
        {k: v[sample] for k, v in labels.items()},
        None,
        has_mediator=True,
        settings=SETTINGS,
        random_state=0,
        target="indirect",
        statistics=_statistics_fn(units, 3),
    )
    tree = got.chosen_tree
    assert sum(tree.leaf_sizes.values()) == len(units) == tree.n_total
    assert tree.n_fit == len(sample) and tree.sampled
    leaf = tree.leaf_of(units[COVS])
    assert tree.leaf_sizes == {k: int((leaf == k).sum()) for k in tree.rules}


def test_merging_from_moments_equals_merging_from_scores() -> None:
    units, labels = _units()
    raw = fit_profile_trees(units[COVS], labels[3], cv_folds=5, random_state=0)[-1]
    score = units["score_indirect"].to_numpy()
    stats = tree_statistics(units, {3: raw}, treatment="T", scores={"indirect": "score_indirect"})
    a = merge_leaves(raw, units[COVS], score, level=0.05)
    b = merge_leaves_from_moments(raw, stats[3].score_moments("indirect"), level=0.05)
    assert a.leaf_map == b.leaf_map and a.tree.rules == b.tree.rules
    assert a.tree.leaf_sizes == b.tree.leaf_sizes
    for x, y in zip(a.tests, b.tests, strict=True):
        assert x["merged"] == y["merged"] and x["pvalue"] == pytest.approx(y["pvalue"], rel=1e-9)


def test_statistics_replace_the_unit_arrays() -> None:
    units, labels = _units(300)
    with pytest.raises(Exception, match="statistics replaces score"):
        choose_profile(
            units[COVS],
            labels,
            None,
            has_mediator=True,
            settings=SETTINGS,
            random_state=0,
            target="indirect",
            score=units["score_indirect"].to_numpy(),
            statistics=_statistics_fn(units, 2),
        )
