"""Leaf x treatment interaction tests from cell aggregates, and the configuration choice."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from scipy import stats
from statsmodels.stats.anova import anova_lm

from mlearner_dist.core.interaction_test import (
    cell_aggregates,
    combine_cell_aggregates,
    interaction_pvalue,
    interaction_pvalue_from_aggregates,
    select_configuration,
)
from mlearner_dist.exceptions import InputValidationError, MLearnerError, SmallSubgroupWarning


def _statsmodels_pvalues(y, t, leaf):
    df = pd.DataFrame({"y": y, "t": t, "leaf": leaf})
    m0 = smf.ols("y ~ C(leaf) + t", df).fit()
    m1 = smf.ols("y ~ C(leaf) + t + C(leaf):t", df).fit()
    p_f = float(anova_lm(m0, m1)["Pr(>F)"].iloc[1])
    p_lr = float(m1.compare_lr_test(m0)[1])
    return p_f, p_lr


@pytest.mark.parametrize(
    ("seed", "n", "n_leaves", "offset", "effect"),
    [(0, 300, 2, 0.0, 0.4), (1, 500, 4, 1e3, 0.3), (2, 150, 5, -50.0, 0.0), (3, 2000, 3, 0.0, 0.1)],
)
def test_f_and_lr_equal_statsmodels(seed, n, n_leaves, offset, effect):
    rng = np.random.default_rng(seed)
    leaf = rng.choice(
        n_leaves, size=n, p=np.linspace(1, 2, n_leaves) / np.linspace(1, 2, n_leaves).sum()
    )
    t = rng.integers(0, 2, n)
    y = offset + leaf * 0.5 + 0.3 * t + effect * t * (leaf == 1) + rng.normal(size=n)
    p_f, p_lr = _statsmodels_pvalues(y, t, leaf)
    assert interaction_pvalue(y, t, leaf, method="f") == pytest.approx(p_f, abs=1e-8)
    assert interaction_pvalue(y, t, leaf, method="lr") == pytest.approx(p_lr, abs=1e-8)


def test_aggregates_from_sums_and_from_partitions_give_the_same_test():
    rng = np.random.default_rng(4)
    n = 900
    leaf = rng.choice(["a", "b", "c"], size=n)
    t = rng.integers(0, 2, n)
    y = 20.0 + rng.normal(size=n) + 0.4 * t * (leaf == "b")
    whole = cell_aggregates(y, t, leaf)
    assert list(whole.columns) == ["leaf", "treatment", "n", "sum", "sumsq", "mean", "m2"]
    assert whole["n"].sum() == n and len(whole) == 6
    cell = whole[(whole["leaf"] == "b") & (whole["treatment"] == 1)].iloc[0]
    sel = (leaf == "b") & (t == 1)
    assert cell["n"] == sel.sum()
    assert cell["mean"] == pytest.approx(y[sel].mean())
    assert cell["m2"] == pytest.approx(((y[sel] - y[sel].mean()) ** 2).sum())
    p = interaction_pvalue(y, t, leaf)
    sums_only = whole[["leaf", "treatment", "n", "sum", "sumsq"]]
    assert interaction_pvalue_from_aggregates(sums_only) == pytest.approx(p, rel=1e-7)
    cuts = [0, 100, 450, 451, n]
    parts = [cell_aggregates(y[a:b], t[a:b], leaf[a:b]) for a, b in itertools.pairwise(cuts)]
    merged = combine_cell_aggregates(parts)
    num = ["n", "sum", "sumsq", "mean", "m2"]
    np.testing.assert_allclose(merged[num].to_numpy(), whole[num].to_numpy(), rtol=1e-10)
    assert interaction_pvalue_from_aggregates(merged) == pytest.approx(p, rel=1e-9)


def test_pvalues_are_uniform_under_the_null():
    rng = np.random.default_rng(12)
    ps = []
    for _ in range(200):
        n = 120
        leaf = rng.integers(0, 3, n)
        t = rng.permutation(np.repeat([0, 1], n // 2))
        y = leaf + 0.5 * t + rng.normal(size=n)
        ps.append(interaction_pvalue(y, t, leaf))
    assert stats.kstest(ps, "uniform").pvalue > 0.01
    rate = np.mean(np.array(ps) < 0.05)
    assert rate <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / 200)


def test_strong_interaction_gives_tiny_pvalue():
    rng = np.random.default_rng(13)
    n = 1000
    leaf = rng.integers(0, 2, n)
    t = rng.integers(0, 2, n)
    y = 2.0 * t * leaf + rng.normal(size=n)
    assert interaction_pvalue(y, t, leaf) < 1e-20
    assert interaction_pvalue(y, t, leaf, method="lr") < 1e-20


def test_single_leaf_and_one_arm_leaves():
    rng = np.random.default_rng(5)
    n = 200
    t = rng.integers(0, 2, n)
    y = rng.normal(size=n) + t
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert interaction_pvalue(y, t, np.zeros(n, dtype=int)) == 1.0
    leaf = rng.integers(0, 3, n)
    t_bad = t.copy()
    t_bad[leaf == 2] = 1  # leaf 2 has treated units only
    with pytest.warns(SmallSubgroupWarning, match=r"leaves \[2\]"):
        p = interaction_pvalue(y, t_bad, leaf)
    keep = leaf != 2
    assert p == pytest.approx(_statsmodels_pvalues(y[keep], t_bad[keep], leaf[keep])[0], abs=1e-8)
    t_one = t.copy()
    t_one[leaf >= 1] = 0  # only leaf 0 has both arms
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert interaction_pvalue(y, t_one, leaf) == 1.0
    messages = [str(w.message) for w in caught if w.category is SmallSubgroupWarning]
    assert any("leaves [1, 2]" in m for m in messages)
    assert any("no interaction can be tested" in m for m in messages)
    assert interaction_pvalue(np.ones(n), t, leaf) == 1.0


def test_perfect_fit_edge_cases():
    leaf = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    t = np.array([0, 0, 1, 1, 0, 0, 1, 1])
    y_int = np.array([0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 3.0, 3.0])
    assert interaction_pvalue(y_int, t, leaf) == 0.0
    y_add = np.array([0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0])
    assert interaction_pvalue(y_add, t, leaf) == 1.0


def test_select_configuration_ties_and_missing():
    cands = [
        {"k": 3, "tree_id": 0, "n_leaves": 4, "p_y": 0.01, "p_m": 0.002},
        {"k": 2, "tree_id": 1, "n_leaves": 3, "p_y": 0.20, "p_m": 0.002},
        {"k": 4, "tree_id": 0, "n_leaves": 3, "p_y": 0.001, "p_m": 0.002},
        {"k": 5, "tree_id": 0, "n_leaves": 2, "p_y": 0.5, "p_m": None},
    ]
    best_m = select_configuration(cands, "m")
    assert (best_m["k"], best_m["n_leaves"]) == (2, 3)  # tie in p: fewer leaves, then smaller K
    assert select_configuration(cands, "y")["k"] == 4
    best_m["k"] = 99
    assert cands[1]["k"] == 2  # a copy is returned
    with pytest.raises(MLearnerError, match="response="):
        select_configuration(cands, "x")
    with pytest.raises(MLearnerError, match="candidates is empty"):
        select_configuration([], "y")
    with pytest.raises(MLearnerError, match="no candidate has a finite p_m"):
        select_configuration([cands[3]], "m")
    with pytest.raises(MLearnerError, match="lacks"):
        select_configuration([{"k": 2, "p_y": 0.1}], "y")
    with pytest.raises(MLearnerError, match="not a p-value"):
        select_configuration([{"k": 2, "tree_id": 0, "n_leaves": 2, "p_y": 1.5}], "y")


def test_bad_inputs_raise():
    y = np.arange(10.0)
    t = np.array([0, 1] * 5)
    leaf = np.array([0, 1] * 5)
    with pytest.raises(InputValidationError, match="same length"):
        interaction_pvalue(y[:-1], t, leaf)
    with pytest.raises(InputValidationError, match="0/1"):
        interaction_pvalue(y, t * 2, leaf)
    bad = y.copy()
    bad[3] = np.nan
    with pytest.raises(InputValidationError, match="missing/infinite"):
        interaction_pvalue(bad, t, leaf)
    with pytest.raises(MLearnerError, match="method="):
        interaction_pvalue(y, t, leaf, method="wald")
    with pytest.raises(InputValidationError, match="lacks column"):
        interaction_pvalue_from_aggregates(pd.DataFrame({"leaf": [0], "treatment": [0], "n": [3]}))
    agg = cell_aggregates(y, t, leaf)
    with pytest.raises(InputValidationError, match="repeated"):
        interaction_pvalue_from_aggregates(pd.concat([agg, agg]))
    with pytest.raises(MLearnerError, match="at least one"):
        combine_cell_aggregates([])
