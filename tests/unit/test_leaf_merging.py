"""Leaf merging: noise splits of a profile tree are removed, real ones kept."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mlearner_dist.core.leaf_merging import merge_leaves
from mlearner_dist.core.profiles import ProfileTree, fit_profile_trees
from mlearner_dist.exceptions import InputValidationError, MLearnerError


def _num(var, thr, left, right):
    return {"left": left, "right": right, "var": var, "kind": "numeric", "threshold": thr}


def _leaf(i):
    return {"left": -1, "right": -1, "leaf": i}


def _tree(nodes, n_leaves, variables):
    return ProfileTree.from_dict(
        {
            "tree_id": 3,
            "params": {"criterion": "gini"},
            "n_leaves": n_leaves,
            "cv_error": 0.1,
            "cv_error_se": 0.01,
            "variables": variables,
            "covariates": ["X1", "X2", "X5", "X6"],
            "n_fit": 0,
            "n_total": 0,
            "sampled": False,
            "leaves": [{"leaf": i, "rule": f"raw {i}", "n": 0} for i in range(n_leaves)],
            "nodes": nodes,
        }
    )


@pytest.fixture
def known():
    """Effect 1{X1 > 0 and X2 > 0}; a 6-leaf tree with noise splits on X5, X6 and X2 (left)."""
    rng = np.random.default_rng(0)
    n = 4000
    X = pd.DataFrame(rng.standard_normal((n, 4)), columns=["X1", "X2", "X5", "X6"])
    effect = ((X.X1 > 0) & (X.X2 > 0)).astype(float).to_numpy()
    score = effect + rng.standard_normal(n)
    # pre-order node list: root X1 <= 0
    #   left:  X2 <= 0 (noise here: S = 0 on both sides) -> [X5 <= 0 -> leaves 0, 1], leaf 2
    #   right: X2 <= 0 (real) -> leaf 3, [X6 <= 0.3 (noise) -> leaves 4, 5]
    nodes = [
        _num("X1", 0.0, 1, 6),  # 0
        _num("X2", 0.0, 2, 5),  # 1
        _num("X5", 0.0, 3, 4),  # 2
        _leaf(0),  # 3
        _leaf(1),  # 4
        _leaf(2),  # 5
        _num("X2", 0.0, 7, 8),  # 6
        _leaf(3),  # 7
        _num("X6", 0.3, 9, 10),  # 8
        _leaf(4),  # 9
        _leaf(5),  # 10
    ]
    return X, score, effect, _tree(nodes, 6, ["X1", "X2", "X5", "X6"])


def test_known_partition_with_noise_splits_is_recovered(known):
    X, score, effect, tree = known
    res = merge_leaves(tree, X, score, level=0.01)
    merged = res.tree
    assert merged.n_leaves == 3
    assert merged.variables == ["X1", "X2"]
    assert merged.rules == {0: "X1 <= 0", 1: "X1 > 0 and X2 <= 0", 2: "X1 > 0 and X2 > 0"}
    leaf = merged.leaf_of(X)
    # the merged leaves are exactly the cells of the true partition
    np.testing.assert_array_equal(leaf == 2, effect == 1)
    assert res.leaf_map == {0: 0, 1: 0, 2: 0, 3: 1, 4: 2, 5: 2}
    assert sum(merged.leaf_sizes.values()) == len(X)
    assert merged.leaf_sizes[2] == int(effect.sum())
    assert res.n_merged == 3 and merged.params["raw_n_leaves"] == 6
    # the raw tree is untouched and kept
    assert res.raw_tree is tree and tree.n_leaves == 6
    kept = [t for t in res.tests if not t["merged"]]
    assert [t["variable"] for t in kept] == ["X2"] and kept[0]["pvalue"] < 1e-10
    json.dumps(res.to_dict())
    # the merged tree round-trips and scores new data the same way
    rebuilt = ProfileTree.from_dict(merged.to_dict())
    np.testing.assert_array_equal(rebuilt.leaf_of(X), leaf)


def test_level_controls_merging(known):
    X, score, _, tree = known
    # at level ~1 nothing is merged (every p < 0.999999 except exact ties)
    assert merge_leaves(tree, X, score, level=0.999999).tree.n_leaves == 6
    # a pure-noise score merges everything back to the root at a small level
    rng = np.random.default_rng(1)
    res = merge_leaves(tree, X, rng.standard_normal(len(X)), level=1e-6)
    assert res.tree.n_leaves == 1 and res.tree.rules == {0: "all units"}
    assert res.tree.variables == []
    assert (res.tree.leaf_of(X) == 0).all()


def test_merging_a_fitted_tree_keeps_x1_and_x2():
    rng = np.random.default_rng(2)
    n = 3000
    X = pd.DataFrame(rng.standard_normal((n, 6)), columns=["X1", "X2", "X3", "X4", "X5", "X6"])
    effect = ((X.X1 > 0) & (X.X2 > 0)) * (X.X1 + X.X2)
    labels = np.digitize(effect + 0.3 * rng.standard_normal(n), [0.3, 1.5])  # noisy clusters
    front = fit_profile_trees(
        X, labels, criteria=("gini",), min_split_fractions=(0.05,), cv_folds=5, random_state=0
    )
    big = max(front, key=lambda t: t.n_leaves)
    score = effect.to_numpy() + rng.standard_normal(n)
    res = merge_leaves(big, X, score, level=0.01)
    assert {"X1", "X2"} <= set(res.tree.variables)
    assert res.tree.n_leaves <= big.n_leaves
    assert not set(res.tree.variables) & {"X3", "X4", "X5", "X6"}


def test_categorical_split_rules_survive_merging():
    rng = np.random.default_rng(3)
    n = 2000
    X = pd.DataFrame(
        {
            "X1": rng.standard_normal(n),
            "X2": rng.choice(["a", "b", "c"], n),
            "X5": rng.standard_normal(n),
            "X6": rng.standard_normal(n),
        }
    )
    score = (X.X2 == "c").astype(float).to_numpy() * 2 + rng.standard_normal(n)
    nodes = [
        {
            "left": 1,
            "right": 4,
            "var": "X2",
            "kind": "categorical",
            "left_levels": ["a", "b"],
            "unknown_left": True,
        },
        _num("X1", 0.0, 2, 3),
        _leaf(0),
        _leaf(1),
        _leaf(2),
    ]
    d = _tree(nodes, 3, ["X1", "X2"]).to_dict()
    d["levels"] = {"X2": ["a", "b", "c"]}
    tree = ProfileTree.from_dict(d)
    res = merge_leaves(tree, X, score, level=0.01)
    assert res.tree.rules == {0: "X2 in {a, b}", 1: "X2 in {c}"}
    assert res.tree.variables == ["X2"]


def test_bad_inputs(known):
    X, score, _, tree = known
    with pytest.raises(MLearnerError, match=r"level=1\.5"):
        merge_leaves(tree, X, score, level=1.5)
    with pytest.raises(InputValidationError, match="score has 3 values but X has 4000 rows"):
        merge_leaves(tree, X, score[:3])
    bad = score.copy()
    bad[0] = np.nan
    with pytest.raises(InputValidationError, match="1 missing/non-finite"):
        merge_leaves(tree, X, bad)
    with pytest.raises(InputValidationError, match="'X6'"):
        merge_leaves(tree, X.drop(columns="X6"), score)
    with pytest.raises(MLearnerError, match="tree must be a ProfileTree"):
        merge_leaves("tree", X, score)


def test_merging_with_a_design_equal_weights_matches_and_clusters_widen(known):
    from mlearner_dist.core.design_variance import Design

    X, score, _, tree = known
    plain = merge_leaves(tree, X, score, level=0.01)
    same = merge_leaves(tree, X, score, level=0.01, design=Design(weight=np.full(len(X), 2.0)))
    assert same.leaf_map == plain.leaf_map
    for a, b in zip(plain.tests, same.tests, strict=True):
        assert a["pvalue"] == pytest.approx(b["pvalue"], rel=1e-6, abs=1e-300)
        assert a["mean_left"] == pytest.approx(b["mean_left"])
    # clusters are 10 bins of X5 (nested in the sides of the X5 noise split) with a shared
    # shock: the unit merge test takes the shocks for a difference, the cluster-robust one not
    rng = np.random.default_rng(4)
    cluster = pd.qcut(X["X5"], 10, labels=False).to_numpy()
    shocked = score + rng.normal(size=10)[cluster]
    unit = merge_leaves(tree, X, shocked, level=0.01)
    robust = merge_leaves(tree, X, shocked, level=0.01, design=Design(cluster=cluster))
    pu = {t["variable"]: t["pvalue"] for t in unit.tests}
    pr = {t["variable"]: t["pvalue"] for t in robust.tests}
    assert pu["X5"] < 1e-3 and pr["X5"] > 100 * pu["X5"]
