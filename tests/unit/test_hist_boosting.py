"""The boosting whose bin edges ignore the weights: same edges as unweighted, weights still used."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingRegressor

from mlearner_dist.core.hist_boosting import QuantileBinnedHGBClassifier, QuantileBinnedHGBRegressor
from mlearner_dist.core.learners import make_learner


def _data(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    group = rng.random(n) < 0.5
    # the two groups share X but not the outcome level: only the weights tell them apart
    y = X[:, 0] + np.where(group, 5.0, -5.0) + 0.1 * rng.normal(size=n)
    return X, y, group


def test_bin_edges_are_those_of_the_unweighted_fit() -> None:
    X, y, group = _data()
    w = np.where(group, 3.0, 0.5)
    ours = QuantileBinnedHGBRegressor(max_iter=5, random_state=0).fit(X, y, sample_weight=w)
    plain = HistGradientBoostingRegressor(max_iter=5, random_state=0).fit(X, y)
    for a, b in zip(
        ours._bin_mapper.bin_thresholds_, plain._bin_mapper.bin_thresholds_, strict=True
    ):
        np.testing.assert_array_equal(a, b)


def test_the_weights_still_decide_the_fit() -> None:
    X, y, group = _data()
    # (almost) all weight on the first group: the fit predicts its level, +5 above X1
    w = np.where(group, 1.0, 1e-6)
    model = QuantileBinnedHGBRegressor(max_iter=100, random_state=0).fit(X, y, sample_weight=w)
    resid = model.predict(X) - X[:, 0]
    assert resid.mean() == pytest.approx(5.0, abs=0.3)
    unweighted = QuantileBinnedHGBRegressor(max_iter=100, random_state=0).fit(X, y)
    assert abs((unweighted.predict(X) - X[:, 0]).mean()) < 1.0


def test_classifier_and_the_named_learners_use_it() -> None:
    X, _, group = _data()
    w = np.where(group, 2.0, 1.0)
    clf = QuantileBinnedHGBClassifier(max_iter=10, random_state=0)
    proba = clf.fit(X, group.astype(int), sample_weight=w).predict_proba(X)[:, 1]
    assert proba.shape == (len(X),)
    for kind in ("hist_gradient_boosting", "hist_gradient_boosting_early_stopping"):
        reg = make_learner(kind, "regression", numeric=["a", "b"], categorical=[], params={})
        assert isinstance(reg.named_steps["model"], QuantileBinnedHGBRegressor)
