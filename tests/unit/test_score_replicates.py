"""Score replicates: the calibration that keeps the confounding (and re-runs leaf merging)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from mlearner_dist.core.calibration import monte_carlo_pvalue, null_threshold
from mlearner_dist.core.clustering import kmeans_for_k
from mlearner_dist.core.effects import cross_fit_effects
from mlearner_dist.core.embedding import effect_matrix, embed
from mlearner_dist.core.interaction_test import interaction_pvalue
from mlearner_dist.core.nuisance import NuisanceSpec
from mlearner_dist.core.profiles import ProfileTree, choose_tree, fit_profile_trees
from mlearner_dist.core.roles import Roles
from mlearner_dist.core.score_replicates import (
    monte_carlo_se,
    multiplier_weights,
    score_null_pleaf,
    score_null_replicate,
)
from mlearner_dist.core.score_selection import (
    choose_by_score,
    score_candidates,
    score_pleaf,
    target_score,
)
from mlearner_dist.core.score_test import score_pvalue
from mlearner_dist.datasets import SCENARIOS, simulate
from mlearner_dist.exceptions import InputValidationError, MLearnerError


def _effects(n=500, seed=0, mediator=True):
    rng = np.random.default_rng(seed)
    nan = np.full(n, np.nan)
    return pd.DataFrame(
        {
            "unit_id": np.arange(n),
            "indirect": rng.normal(size=n),
            "total": rng.normal(size=n),
            "score_indirect": rng.normal(size=n) + 3.0 if mediator else nan,
            "score_direct": rng.normal(size=n) if mediator else nan,
            "score_total": rng.standard_exponential(n),
        }
    )


def test_replicate_flips_centred_scores_and_keeps_everything_else():
    eff = _effects()
    rep = score_null_replicate(eff, rng=np.random.default_rng(1))
    pd.testing.assert_frame_equal(
        rep[["unit_id", "indirect", "total"]], eff[["unit_id", "indirect", "total"]]
    )
    for c in ("score_indirect", "score_direct", "score_total"):
        m = eff[c].mean()
        np.testing.assert_allclose(np.abs(rep[c] - m), np.abs(eff[c] - m), atol=1e-12)
    # one multiplier per unit, shared by the scores
    w_ind = (rep.score_indirect - eff.score_indirect.mean()) / (
        eff.score_indirect - eff.score_indirect.mean()
    )
    w_tot = (rep.score_total - eff.score_total.mean()) / (eff.score_total - eff.score_total.mean())
    np.testing.assert_allclose(w_ind, w_tot, atol=1e-9)
    assert set(np.round(w_ind, 9)) == {-1.0, 1.0}


def test_replicates_have_equal_expected_leaf_means():
    """E[s*_i | data] = sbar for every unit: averaging replicates flattens any heterogeneity."""
    eff = _effects(n=200)
    eff["score_total"] = eff["score_total"] + 2.0 * (np.arange(200) < 100)  # real heterogeneity
    reps = [score_null_replicate(eff, rng=np.random.default_rng(b)) for b in range(2000)]
    avg = np.mean([r.score_total.to_numpy() for r in reps], axis=0)
    sbar = eff.score_total.mean()
    se = np.abs(eff.score_total - sbar).to_numpy() / np.sqrt(2000)
    assert np.all(np.abs(avg - sbar) < 5 * se + 1e-12)


def test_without_mediator_nan_scores_stay_nan_and_partial_nan_is_an_error():
    eff = _effects(mediator=False)
    rep = score_null_replicate(eff, rng=np.random.default_rng(0))
    assert rep.score_indirect.isna().all() and rep.score_direct.isna().all()
    bad = _effects()
    bad.loc[3, "score_total"] = np.nan
    with pytest.raises(InputValidationError, match="'score_total' has 1 missing"):
        score_null_replicate(bad, rng=np.random.default_rng(0))
    with pytest.raises(InputValidationError, match="none of the score columns"):
        score_null_replicate(eff[["unit_id", "indirect"]], rng=np.random.default_rng(0))
    with pytest.raises(MLearnerError, match=r"numpy\.random\.Generator"):
        score_null_replicate(eff, rng=0)


@pytest.mark.parametrize("kind", ["rademacher", "normal", "mammen"])
def test_multipliers_have_mean_zero_and_unit_variance(kind):
    w = multiplier_weights(200_000, np.random.default_rng(0), kind)
    assert abs(w.mean()) < 0.01 and abs(w.var() - 1) < 0.02
    if kind == "mammen":
        assert abs(np.mean(w**3) - 1) < 0.05
    with pytest.raises(MLearnerError, match="multiplier='wild'"):
        multiplier_weights(3, np.random.default_rng(0), "wild")


def test_null_sample_is_reproducible_and_independent_of_the_map():
    eff = _effects()
    leaf = np.arange(len(eff)) % 3

    def select(rep, b):
        return score_pvalue(rep.score_total, leaf)

    a = score_null_pleaf(select, eff, n_replicates=7, random_state=5)
    b = score_null_pleaf(
        select,
        eff,
        n_replicates=7,
        random_state=5,
        map_fn=lambda f, xs: [f(x) for x in xs[::-1]][::-1],
    )
    assert a == b and len(a) == 7
    # the average effect enters a replicate as a constant: shifting every score changes nothing
    shifted = eff.assign(score_total=eff.score_total + 17.0)
    c = score_null_pleaf(select, shifted, n_replicates=7, random_state=5)
    np.testing.assert_allclose(a, c, rtol=1e-8)
    with pytest.raises(MLearnerError, match="n_replicates=0"):
        score_null_pleaf(select, eff, n_replicates=0, random_state=5)
    with pytest.raises(MLearnerError, match="not a p-value"):
        score_null_pleaf(lambda r, b: 2.0, eff, n_replicates=1, random_state=5)


def test_monte_carlo_standard_error():
    assert monte_carlo_se(0.05, 99) == pytest.approx(np.sqrt(0.05 * 0.95 / 99))
    assert monte_carlo_se(1.0, 19) == 0.0
    with pytest.raises(MLearnerError, match=r"mc_pvalue=1\.5"):
        monte_carlo_se(1.5, 10)


def _noise_tree() -> ProfileTree:
    """A raw 8-leaf tree of three splits on X5, X6, X7 (no effect depends on them)."""

    def num(var, thr, left, right):
        return {"left": left, "right": right, "var": var, "kind": "numeric", "threshold": thr}

    def leaf(i):
        return {"left": -1, "right": -1, "leaf": i}

    nodes = [num("X5", 0.0, 1, 8)]
    # left subtree at 1..7, right subtree at 8..14 (pre-order)
    for base, first in ((1, 0), (8, 4)):
        nodes += [
            num("X6", 0.0, base + 1, base + 4),
            num("X7", 0.0, base + 2, base + 3),
            leaf(first),
            leaf(first + 1),
            num("X7", 0.0, base + 5, base + 6),
            leaf(first + 2),
            leaf(first + 3),
        ]
    return ProfileTree.from_dict(
        {
            "tree_id": 0,
            "params": {},
            "n_leaves": 8,
            "cv_error": 0.0,
            "cv_error_se": 0.0,
            "variables": ["X5", "X6", "X7"],
            "covariates": ["X5", "X6", "X7"],
            "n_fit": 0,
            "n_total": 0,
            "sampled": False,
            "leaves": [{"leaf": i, "rule": "", "n": 0} for i in range(8)],
            "nodes": nodes,
        }
    )


def test_calibration_accounts_for_leaf_merging():
    """Type I error of the score-calibrated decision over R = 150 null data sets.

    The selection merges a noise tree's leaves on the scores (keeping only 'significant' splits),
    so the nominal level is not valid for its p_leaf; the replicates re-run the merging, so the
    calibrated decision holds alpha.
    """
    tree8 = _noise_tree()
    alpha, reps, n = 0.05, 150, 300
    naive = declared = 0
    rng = np.random.default_rng(11)
    for r in range(reps):
        X = pd.DataFrame(rng.standard_normal((n, 3)), columns=["X5", "X6", "X7"])
        s = rng.standard_t(4, n) * (1 + 0.5 * (X.X5 > 0))  # heteroskedastic, heavy tails
        trees = {2: tree8}
        raw = {2: tree8.leaf_of(X)}
        eff = pd.DataFrame({"score_total": s})

        def select(rep, b, X=X, trees=trees, raw=raw):
            return score_pleaf(
                trees, X, rep.score_total.to_numpy(), merge_level=0.2, raw_leaves=raw
            )

        p_obs = select(eff, -1)
        null = score_null_pleaf(select, eff, n_replicates=19, random_state=r)
        naive += p_obs < alpha
        declared += p_obs < null_threshold(null, alpha)
    bound = alpha + 3 * np.sqrt(alpha * (1 - alpha) / reps)
    assert declared / reps <= bound
    assert naive / reps > bound  # the merging makes the uncalibrated p-value invalid


# --- the whole selection on the inference designs --------------------------------------------
ROLES = Roles("unit_id", "T", "Y", ("M",), tuple(f"X{i}" for i in range(1, 11)))


def _analyse(scenario, n, seed, noise_sd, n_replicates=19):
    """Effects -> embedding -> K-means -> trees -> merged DR-score test -> score calibration."""
    df = simulate(scenario, n, seed=seed, noise_sd=noise_sd)
    spec = NuisanceSpec(
        learner="hist_gradient_boosting",
        learner_params={},
        row_budget=200_000,
        random_state=seed,
        design=SCENARIOS[scenario].design,
        estimator="nested",
        propensity_clip=0.01,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        eff, _ = cross_fit_effects(df, ROLES, spec, n_folds=5, seed=seed)
        eff = eff.set_index("unit_id").loc[df.unit_id].reset_index()
        emb, _ = embed(
            effect_matrix(eff, ["indirect"], "standardize"), n_iter=300, random_state=seed, n_jobs=1
        )
        X = df[list(ROLES.covariates)]
        trees = {}
        for k, (labels, _, _) in kmeans_for_k(emb, [2, 3, 4], random_state=seed).items():
            front = fit_profile_trees(X, labels, cv_folds=5, random_state=seed)
            trees[k] = choose_tree(front, "one_se")
        s = target_score(eff, "indirect")
        best = choose_by_score(score_candidates(trees, X, s))
        raw = {k: tree.leaf_of(X) for k, tree in trees.items()}
        null = score_null_pleaf(
            lambda rep, b: score_pleaf(trees, X, rep.score_indirect.to_numpy(), raw_leaves=raw),
            eff,
            n_replicates=n_replicates,
            random_state=seed,
        )
    thr = null_threshold(null, 0.05)
    return df, eff, best, thr, monte_carlo_pvalue(best["p_score"], null)


def test_confounded_null_is_not_declared_although_the_unadjusted_test_would_be():
    df, eff, best, thr, mc = _analyse("confounded-null", 1000, 2, 0.01)
    t = df["T"].to_numpy()
    side = (df.X1 > 0).to_numpy().astype(int)
    # the confounding is real: the unadjusted Y ~ leaf x T test on {X1 > 0} rejects ...
    assert interaction_pvalue(df.Y.to_numpy(), t, side) < 1e-6
    # ... the DR indirect score on the same partition does not
    assert score_pvalue(eff.score_indirect, side) > 0.01
    assert not best["p_score"] < thr
    assert mc > 0.05


def test_mediator_slope_is_declared_although_the_mediator_test_cannot_see_it():
    df, _, best, thr, mc = _analyse("mediator-slope", 1000, 0, 0.01)
    assert best["p_score"] < thr and mc <= 0.05
    assert {"X1", "X2"} <= set(best["variables"])
    leaf = best["tree"].leaf_of(df[list(ROLES.covariates)])
    # only the M -> Y path varies: the reference's M ~ leaf x T test has nothing to see there
    # (its p-value is uniform on any partition; on this one it is orders of magnitude above ours)
    p_m = interaction_pvalue(df.M.to_numpy(), df["T"].to_numpy(), leaf)
    assert p_m > 100 * best["p_score"]


def test_score_replicates_draw_one_multiplier_per_cluster():
    rng = np.random.default_rng(0)
    cluster = np.repeat(np.arange(20), 5)
    eff = pd.DataFrame(
        {"score_total": rng.normal(size=100), "design_cluster": cluster.astype(np.int64)}
    )
    rep = score_null_replicate(eff, rng=np.random.default_rng(3))
    mean = eff["score_total"].mean()
    w = np.round(((rep["score_total"] - mean) / (eff["score_total"] - mean)).to_numpy(), 9)
    assert (pd.Series(w).groupby(cluster).nunique() == 1).all()
    assert set(w) == {-1.0, 1.0}
    assert np.array_equal(rep["design_cluster"], eff["design_cluster"])
