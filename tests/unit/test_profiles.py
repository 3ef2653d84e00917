"""Profile trees: grid, CV pruning, Pareto front, rules, tree choice."""

from __future__ import annotations

import dataclasses
import json
import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.tree import DecisionTreeClassifier

from mlearner_dist.core.profiles import (
    ProfileTree,
    choose_tree,
    fit_profile_trees,
    stratified_sample,
)
from mlearner_dist.core.tree_pruning import collapse_alphas, stop_nodes
from mlearner_dist.exceptions import InputValidationError, MLearnerError

SMALL_GRID = {"complexity": np.logspace(-6, -2, 4)}


@pytest.fixture(scope="module")
def quadrant():
    """labels = 1{X1 > 0 and X2 > 0} on 2,000 units with 8 noise covariates."""
    rng = np.random.default_rng(7)
    X = pd.DataFrame(rng.normal(size=(2000, 10)), columns=[f"X{i}" for i in range(1, 11)])
    labels = ((X["X1"] > 0) & (X["X2"] > 0)).astype(int).to_numpy()
    return X, labels


@pytest.fixture(scope="module")
def quadrant_trees(quadrant):
    X, labels = quadrant
    return fit_profile_trees(X, labels, random_state=0)


def _rule_mask(df: pd.DataFrame, rule: str) -> np.ndarray:
    return df.eval(rule).to_numpy() if rule != "all units" else np.ones(len(df), dtype=bool)


def test_chosen_tree_uses_exactly_the_drivers(quadrant, quadrant_trees):
    X, labels = quadrant
    chosen = choose_tree(quadrant_trees, "one_se")
    assert chosen.variables == ["X1", "X2"]
    assert chosen.n_leaves == 3
    leaf = chosen.leaf_of(X)
    # the leaves reproduce the quadrant: one leaf is (almost) exactly the labelled units
    purity = max(labels[leaf == lf].mean() for lf in range(chosen.n_leaves))
    assert purity > 0.98
    assert set(np.unique(leaf)) == set(range(chosen.n_leaves))
    assert sum(chosen.leaf_sizes.values()) == len(X)
    assert chosen.leaf_sizes == {lf: int((leaf == lf).sum()) for lf in range(chosen.n_leaves)}


def test_numeric_rules_are_exact_descriptions_of_the_leaves(quadrant, quadrant_trees):
    X, _ = quadrant
    for tree in quadrant_trees:
        leaf = tree.leaf_of(X)
        for lf, rule in tree.rules.items():
            np.testing.assert_array_equal(_rule_mask(X, rule), leaf == lf)
    chosen = choose_tree(quadrant_trees)
    rules = sorted(chosen.rules.values())
    # merged conditions: each variable at most once per rule, short thresholds
    for r in rules:
        assert r.count("X1") <= 1 and r.count("X2") <= 1
        assert len(r) < 40


def test_rule_merges_repeated_conditions_into_tightest_bounds():
    rng = np.random.default_rng(3)
    X = pd.DataFrame({"age": rng.integers(18, 80, 3000), "noise": rng.normal(size=3000)})
    labels = ((X["age"] > 30) & (X["age"] <= 50)).astype(int).to_numpy()
    trees = fit_profile_trees(X, labels, min_split_fractions=(0.1,), **SMALL_GRID)
    chosen = choose_tree(trees)
    assert chosen.variables == ["age"]
    assert "30 < age <= 50" in chosen.rules.values()
    leaf = chosen.leaf_of(X)
    for lf, rule in chosen.rules.items():
        np.testing.assert_array_equal(_rule_mask(X, rule), leaf == lf)


def test_pruning_matches_scikit_learn_ccp_alpha():
    rng = np.random.default_rng(11)
    X = rng.normal(size=(800, 4))
    y = ((X[:, 0] + 0.5 * X[:, 1] + rng.normal(scale=0.8, size=800)) > 0).astype(int)
    kw = {"min_samples_split": 20, "min_samples_leaf": 7, "random_state": 0}
    full = DecisionTreeClassifier(**kw).fit(X, y)
    collapse = collapse_alphas(full.tree_)
    path = full.cost_complexity_pruning_path(X, y).ccp_alphas
    assert path.size > 3
    # between consecutive path alphas (at the alphas themselves rounding decides)
    for alpha in np.sqrt(path[1:-1] * path[2:]):
        ref = DecisionTreeClassifier(ccp_alpha=alpha, **kw).fit(X, y)
        ours = stop_nodes(full.tree_, X, collapse, alpha)
        # same partition of the units: a bijection between our stop nodes and sklearn's leaves
        pairs = set(zip(ours.tolist(), ref.apply(X).tolist(), strict=True))
        assert len(pairs) == len(set(ours.tolist())) == ref.get_n_leaves()


@pytest.fixture(scope="module")
def noisy_trees():
    rng = np.random.default_rng(5)
    n = 1500
    X = pd.DataFrame(rng.normal(size=(n, 5)), columns=list("abcde"))
    score = X["a"] + 0.7 * X["b"] - 0.5 * X["c"] + rng.normal(scale=0.7, size=n)
    labels = np.digitize(score, [-0.8, 0.8])
    return X, labels, fit_profile_trees(X, labels, random_state=1)


def test_pareto_front_has_no_dominated_tree(noisy_trees):
    X, _, trees = noisy_trees
    assert len(trees) >= 2
    assert [t.tree_id for t in trees] == list(range(len(trees)))
    assert [t.n_leaves for t in trees] == sorted(t.n_leaves for t in trees)
    for a in trees:
        for b in trees:
            if a is b:
                continue
            dominates = (
                a.n_leaves <= b.n_leaves
                and a.cv_error <= b.cv_error
                and (a.n_leaves < b.n_leaves or a.cv_error < b.cv_error)
            )
            assert not dominates, (a, b)
    # distinct partitions
    keys = set()
    for t in trees:
        leaf = t.leaf_of(X)
        keys.add(tuple(pd.factorize(leaf)[0]))
    assert len(keys) == len(trees)
    assert all(t.n_leaves >= 2 for t in trees)


def test_cv_error_is_an_honest_misclassification_rate(noisy_trees):
    X, labels, trees = noisy_trees
    for t in trees:
        assert 0.0 <= t.cv_error <= 1.0
        se = np.sqrt(t.cv_error * (1 - t.cv_error) / len(X))
        assert t.cv_error_se == pytest.approx(se, rel=1e-9)
        # resubstitution error of the majority label per leaf is no larger than the CV error + slack
        leaf = t.leaf_of(X)
        resub = np.mean(
            [labels[i] != np.bincount(labels[leaf == leaf[i]]).argmax() for i in range(len(X))]
        )
        assert resub <= t.cv_error + 0.03


def test_categorical_rules_are_level_sets():
    rng = np.random.default_rng(2)
    n = 1200
    occp = rng.choice(["sales", "clerical", "manager", "labour", "prof"], size=n)
    X = pd.DataFrame({"occp": occp, "z": rng.normal(size=n)})
    labels = np.isin(occp, ["sales", "clerical"]).astype(int)
    chosen = choose_tree(fit_profile_trees(X, labels, **SMALL_GRID))
    assert chosen.variables == ["occp"]
    assert sorted(chosen.rules.values()) == [
        "occp in {clerical, sales}",
        "occp in {labour, manager, prof}",
    ]
    leaf = chosen.leaf_of(X)
    for lf, rule in chosen.rules.items():
        members = rule.split("{")[1].rstrip("}").split(", ")
        np.testing.assert_array_equal(np.isin(occp, members), leaf == lf)


def test_categorical_one_hot_for_several_classes_and_category_dtype():
    rng = np.random.default_rng(4)
    n = 1500
    occp = pd.Categorical(rng.choice(["a", "b", "c", "d"], size=n))
    X = pd.DataFrame({"occp": occp, "w": rng.normal(size=n)})
    labels = np.select([occp == "a", occp == "b"], [0, 1], 2)
    chosen = choose_tree(fit_profile_trees(X, labels, **SMALL_GRID))
    assert chosen.variables == ["occp"]
    assert sorted(chosen.rules.values()) == ["occp in {a}", "occp in {b}", "occp in {c, d}"]
    leaf = chosen.leaf_of(X)
    pure = [len(np.unique(labels[leaf == lf])) for lf in range(chosen.n_leaves)]
    assert pure == [1] * chosen.n_leaves


def test_unknown_level_follows_larger_child_and_is_logged(caplog):
    rng = np.random.default_rng(8)
    occp = rng.choice(["x", "y", "z"], size=600, p=[0.2, 0.2, 0.6])
    X = pd.DataFrame({"occp": occp})
    labels = (occp == "x").astype(int)
    tree = choose_tree(fit_profile_trees(X, labels, **SMALL_GRID))
    big_leaf = max(tree.leaf_sizes, key=tree.leaf_sizes.get)
    with caplog.at_level("WARNING"):
        leaf = tree.leaf_of(pd.DataFrame({"occp": ["new-level", "x"]}))
    assert leaf[0] == big_leaf
    assert "unseen" in caplog.text


def test_max_rows_fits_on_a_stratified_sample_and_applies_to_all(quadrant):
    X, labels = quadrant
    trees = fit_profile_trees(X, labels, max_rows=500, **SMALL_GRID)
    for t in trees:
        assert t.sampled and t.n_fit == 500 and t.n_total == len(X)
        assert sum(t.leaf_sizes.values()) == len(X)
        assert t.to_dict()["sampled"] is True
    assert choose_tree(trees).variables == ["X1", "X2"]
    rows = stratified_sample(labels, 500, random_state=3)
    assert rows.size == 500 and np.array_equal(rows, stratified_sample(labels, 500, 3))
    assert abs(labels[rows].mean() - labels.mean()) < 0.002
    assert np.array_equal(stratified_sample(labels, 5000, 0), np.arange(len(labels)))


def test_tree_pickles_and_round_trips_through_json(quadrant, quadrant_trees):
    X, _ = quadrant
    tree = choose_tree(quadrant_trees)
    again = pickle.loads(pickle.dumps(tree))
    np.testing.assert_array_equal(again.leaf_of(X), tree.leaf_of(X))
    d = json.loads(json.dumps(tree.to_dict()))
    assert d["params"]["criterion"] in ("gini", "entropy")
    assert {"min_split_fraction", "cp", "ccp_alpha"} <= set(d["params"])
    assert [leaf["n"] for leaf in d["leaves"]] == [tree.leaf_sizes[i] for i in range(3)]
    rebuilt = ProfileTree.from_dict(d)
    np.testing.assert_array_equal(rebuilt.leaf_of(X), tree.leaf_of(X))
    assert rebuilt.rules == tree.rules
    assert tree.covariates == tuple(X.columns)


def test_choose_tree_rules_by_hand(quadrant_trees):
    base = quadrant_trees[0]
    front = [
        dataclasses.replace(base, tree_id=0, n_leaves=2, cv_error=0.30, cv_error_se=0.02),
        dataclasses.replace(base, tree_id=1, n_leaves=3, cv_error=0.20, cv_error_se=0.02),
        dataclasses.replace(base, tree_id=2, n_leaves=5, cv_error=0.18, cv_error_se=0.03),
        dataclasses.replace(base, tree_id=3, n_leaves=9, cv_error=0.17, cv_error_se=0.01),
    ]
    # min 0.17 + se 0.01 = 0.18: the 5-leaf tree is the smallest within one SE
    assert choose_tree(front, "one_se").tree_id == 2
    assert choose_tree(front, "first_pareto").tree_id == 0
    assert [t.tree_id for t in choose_tree(front, "all")] == [0, 1, 2, 3]
    wide = [dataclasses.replace(t, cv_error_se=0.15) for t in front]
    assert choose_tree(wide).tree_id == 0


def test_single_class_gives_root_tree():
    X = pd.DataFrame({"a": np.arange(100.0)})
    trees = fit_profile_trees(X, np.zeros(100, dtype=int), cv_folds=5, **SMALL_GRID)
    assert len(trees) == 1 and trees[0].n_leaves == 1
    assert trees[0].rules == {0: "all units"} and trees[0].variables == []
    assert np.all(trees[0].leaf_of(X) == 0)


def test_bad_inputs_raise():
    X = pd.DataFrame({"a": [1.0, 2.0, np.nan] * 10, "b": ["u", "v", "w"] * 10})
    y = np.array([0, 1, 0] * 10)
    with pytest.raises(InputValidationError, match=r"'a'.*missing values"):
        fit_profile_trees(X, y, cv_folds=3)
    good = X.fillna(0.0)
    with pytest.raises(InputValidationError, match="labels has shape"):
        fit_profile_trees(good, y[:-1], cv_folds=3)
    with pytest.raises(InputValidationError, match="criteria"):
        fit_profile_trees(good, y, criteria=("mse",), cv_folds=3)
    with pytest.raises(InputValidationError, match="min_split_fractions"):
        fit_profile_trees(good, y, min_split_fractions=(1.5,), cv_folds=3)
    with pytest.raises(InputValidationError, match="complexity"):
        fit_profile_trees(good, y, complexity=[-1.0], cv_folds=3)
    with pytest.raises(InputValidationError, match="cv_folds"):
        fit_profile_trees(good, y, cv_folds=1)
    with pytest.raises(InputValidationError, match="max_rows"):
        fit_profile_trees(good, y, cv_folds=3, max_rows=3)
    with pytest.raises(MLearnerError, match="DataFrame"):
        fit_profile_trees(good.to_numpy(), y)
    with pytest.raises(MLearnerError, match="rule="):
        choose_tree([], "smallest_p")
    with pytest.raises(MLearnerError, match="non-empty"):
        choose_tree([], "one_se")


def test_leaf_of_validates_columns(quadrant, quadrant_trees):
    X, _ = quadrant
    tree = choose_tree(quadrant_trees)
    with pytest.raises(InputValidationError, match=r"'X2'.*missing"):
        tree.leaf_of(X.drop(columns=["X2"]))
    bad = X.copy()
    bad.loc[0, "X1"] = np.nan
    with pytest.raises(InputValidationError, match=r"'X1'.*missing values"):
        tree.leaf_of(bad)
    with pytest.raises(MLearnerError, match="DataFrame"):
        tree.leaf_of(X.to_numpy())
    # only the used covariates are needed
    assert tree.leaf_of(X[["X2", "X1"]]).shape == (len(X),)
