"""The honest cross-split calibration (core/cross_split.py): validity, resolution, combination."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlearner_dist.core.cross_split import (
    bonferroni_pvalue,
    check_resolution,
    direction_test,
    smallest_decision_pvalue,
)
from mlearner_dist.core.profiles import ProfileTree, choose_tree, fit_profile_trees
from mlearner_dist.exceptions import MLearnerError


def _trees_on(X: pd.DataFrame, labels: np.ndarray) -> dict[int, ProfileTree]:
    front = fit_profile_trees(X, labels, cv_folds=3, random_state=0)
    return {2: choose_tree(front, "one_se")}


def _half(rng, n):
    X = pd.DataFrame(rng.standard_normal((n, 3)), columns=["X1", "X2", "X3"])
    s = rng.standard_t(5, n) * (1 + 0.5 * (X.X1 > 0))  # heteroskedastic, heavy tails, mean 0
    return X, s


def test_bonferroni_and_resolution():
    assert bonferroni_pvalue([0.02, 0.4]) == pytest.approx(0.04)
    assert bonferroni_pvalue([0.7, 0.9]) == 1.0
    with pytest.raises(MLearnerError, match=r"in \[0, 1\]"):
        bonferroni_pvalue([1.2])
    with pytest.raises(MLearnerError, match="empty"):
        bonferroni_pvalue([])
    assert smallest_decision_pvalue(99) == pytest.approx(0.02)
    assert check_resolution(99, 0.05) is None and check_resolution(40, 0.05) is None
    assert "B >= 40" in check_resolution(39, 0.05)


def test_trees_from_the_other_half_hold_the_level_and_trees_from_the_same_scores_do_not():
    """R = 60 null data sets: candidates grown on labels that read the scores themselves.

    Growing the tree on ``sign(score)`` of the tested half is the extreme form of what the
    full-sample calibration does (the trees see the outcomes behind the scores): the
    sign-flipped replicates cannot reproduce it and the decision rejects far above alpha. The
    same trees grown on the *other* half's scores are independent of the tested scores, and the
    Monte Carlo p-value holds its level.
    """
    rng = np.random.default_rng(3)
    reps, n, B, alpha = 60, 240, 19, 0.05
    honest = dipped = 0
    for r in range(reps):
        Xa, sa = _half(rng, n)
        Xb, sb = _half(rng, n)
        eff_b = pd.DataFrame({"score_total": sb})
        kw = dict(n_replicates=B, random_state=r, merge_level=0.2, direction="A->B")
        other = direction_test(_trees_on(Xa, (sa > 0).astype(int)), Xb, eff_b, "total", **kw)
        same = direction_test(_trees_on(Xb, (sb > 0).astype(int)), Xb, eff_b, "total", **kw)
        honest += other.mc_pvalue <= alpha
        dipped += same.mc_pvalue <= alpha
        assert len(other.null_p) == B and 1 / (B + 1) <= other.mc_pvalue <= 1
    bound = alpha + 3 * np.sqrt(alpha * (1 - alpha) / reps)
    assert honest / reps <= bound
    assert dipped / reps > bound


def test_direction_test_finds_a_real_difference_and_is_reproducible():
    rng = np.random.default_rng(8)
    Xa, _ = _half(rng, 300)
    Xb, sb = _half(rng, 300)
    sb = sb + 1.5 * (Xb.X2.to_numpy() > 0)
    trees = _trees_on(Xa, (Xa.X2 > 0).astype(int).to_numpy())
    eff = pd.DataFrame({"score_total": sb})
    kw = dict(n_replicates=19, random_state=1, merge_level=0.05, direction="B->A")
    a = direction_test(trees, Xb, eff, "total", **kw)
    assert a.mc_pvalue == pytest.approx(1 / 20) and "X2" in a.chosen["variables"]
    b = direction_test(trees, Xb, eff, "total", **kw)
    assert a.null_p == b.null_p
    rec = a.to_dict()
    assert rec["n_replicates"] == 19 and ProfileTree.from_dict(rec["tree"]).n_leaves >= 2
    with pytest.raises(MLearnerError, match="row-align"):
        direction_test(trees, Xb.iloc[:10], eff, "total", **kw)
    with pytest.raises(MLearnerError, match="dr_score"):
        direction_test({}, Xb, eff, "total", **kw)


def test_halves_split_every_stratum_and_are_unchanged_without_strata():
    from mlearner_dist.core.calibration import split_sample

    ids = np.arange(1000)
    codes = np.repeat([0, 1, 2], [700, 293, 7])
    plain = split_sample(ids, 5)
    assert np.array_equal(plain, split_sample(ids, 5, strata=None))
    mask = split_sample(ids, 5, strata=codes)
    for c in (0, 1, 2):
        inside = mask[codes == c]
        assert abs(int(inside.sum()) - int((~inside).sum())) <= 1
    # row order does not matter
    perm = np.random.default_rng(0).permutation(1000)
    assert np.array_equal(split_sample(ids[perm], 5, strata=codes[perm]), mask[perm])
    with pytest.raises(Exception, match="stratum codes"):
        split_sample(ids, 5, strata=codes[:10])
