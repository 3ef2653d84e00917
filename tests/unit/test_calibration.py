"""Calibration maths: null replicates, order-statistic threshold, Monte Carlo p-value, splits."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from mlearner_dist.core.calibration import (
    average_shifts,
    make_null_replicate,
    monte_carlo_pvalue,
    null_threshold,
    split_sample,
)
from mlearner_dist.core.interaction_test import interaction_pvalue
from mlearner_dist.core.roles import Roles
from mlearner_dist.exceptions import InputValidationError, MLearnerError

ROLES = Roles("id", "T", "Y", ("M",), ("X1", "X2"))


def _heterogeneous(n: int, seed: int) -> tuple[pd.DataFrame, float, float]:
    """Simple-Part-like data: effects on M and Y only where X1 > 0 and X2 > 0."""
    rng = np.random.default_rng(seed)
    X1, X2 = rng.normal(size=n), rng.normal(size=n)
    T = rng.permutation(np.repeat([0, 1], n // 2))
    S = ((X1 > 0) & (X2 > 0)).astype(float)
    M = X1 + 2.0 * S * T + rng.normal(size=n)
    Y = 1 + M + X2 + 1.5 * S * T + rng.normal(size=n)
    df = pd.DataFrame({"id": np.arange(n) + 1000, "X1": X1, "X2": X2, "T": T, "M": M, "Y": Y})
    dm = M[T == 1].mean() - M[T == 0].mean()
    dy = Y[T == 1].mean() - Y[T == 0].mean()
    return df, float(dm), float(dy)


def test_null_replicate_structure():
    df, dm, dy = _heterogeneous(4000, 1)
    rep = make_null_replicate(
        df, ROLES, rng=np.random.default_rng(3), shift_mediator=[dm], shift_outcome=dy
    )
    pd.testing.assert_frame_equal(rep[["id", "X1", "X2"]], df[["id", "X1", "X2"]])
    assert rep["T"].sum() == df["T"].sum() and rep["T"].dtype == df["T"].dtype
    assert not np.array_equal(rep["T"], df["T"])
    for x in ("X1", "X2"):
        assert abs(np.corrcoef(rep["T"], rep[x])[0, 1]) < 4 / np.sqrt(len(df))
    delta = rep["T"].to_numpy() - df["T"].to_numpy()
    np.testing.assert_allclose(rep["Y"] - delta * dy, df["Y"], atol=1e-12)
    np.testing.assert_allclose(rep["M"] - delta * dm, df["M"], atol=1e-12)
    # the average effects are kept: difference in means between the new arms is about dM, dY
    t = rep["T"].to_numpy() == 1
    assert rep["M"][t].mean() - rep["M"][~t].mean() == pytest.approx(dm, abs=0.15)
    assert rep["Y"][t].mean() - rep["Y"][~t].mean() == pytest.approx(dy, abs=0.25)
    assert rep is not df and df["T"].sum() == 2000


def test_null_replicates_have_no_interaction_for_the_true_partition():
    df, dm, dy = _heterogeneous(600, 2)
    leaf = ((df["X1"] > 0) & (df["X2"] > 0)).astype(int).to_numpy()
    assert interaction_pvalue(df["M"].to_numpy(), df["T"].to_numpy(), leaf) < 1e-6
    rng = np.random.default_rng(9)
    ps = []
    for _ in range(200):
        rep = make_null_replicate(df, ROLES, rng=rng, shift_mediator=dm, shift_outcome=dy)
        ps.append(interaction_pvalue(rep["M"].to_numpy(), rep["T"].to_numpy(), leaf))
    rate = np.mean(np.array(ps) < 0.05)
    assert rate <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / 200)


def test_binary_mediator_stays_binary_with_constant_effect():
    rng = np.random.default_rng(4)
    n = 20000
    X1 = rng.normal(size=n)
    T = rng.integers(0, 2, n)
    M = (rng.random(n) < 1 / (1 + np.exp(-(X1 + T)))).astype(int)
    df = pd.DataFrame({"id": np.arange(n), "X1": X1, "X2": 0.0, "T": T, "M": M, "Y": M + T})
    dm = M[T == 1].mean() - M[T == 0].mean()
    rep = make_null_replicate(
        df, ROLES, rng=np.random.default_rng(1), shift_mediator=dm, shift_outcome=1.0
    )
    assert set(np.unique(rep["M"])) <= {0, 1} and rep["M"].dtype == df["M"].dtype
    t = rep["T"].to_numpy() == 1
    for part in (X1 > 0, X1 <= 0):  # the same effect for low and high X1
        eff = rep["M"][t & part].mean() - rep["M"][~t & part].mean()
        assert eff == pytest.approx(dm, abs=0.03)


def test_replicate_without_mediator_and_bad_inputs():
    df, _, dy = _heterogeneous(200, 3)
    roles_y = Roles("id", "T", "Y", (), ("X1", "X2"))
    rep = make_null_replicate(
        df, roles_y, rng=np.random.default_rng(0), shift_mediator=None, shift_outcome=dy
    )
    pd.testing.assert_series_equal(rep["M"], df["M"])
    with pytest.raises(InputValidationError, match="shift_mediator is None"):
        make_null_replicate(
            df, ROLES, rng=np.random.default_rng(0), shift_mediator=None, shift_outcome=dy
        )
    with pytest.raises(InputValidationError, match="no mediator"):
        make_null_replicate(
            df, roles_y, rng=np.random.default_rng(0), shift_mediator=0.5, shift_outcome=dy
        )
    with pytest.raises(InputValidationError, match="one finite shift per mediator"):
        make_null_replicate(
            df, ROLES, rng=np.random.default_rng(0), shift_mediator=[1.0, 2.0], shift_outcome=dy
        )
    with pytest.raises(InputValidationError, match="shift_outcome"):
        make_null_replicate(
            df, ROLES, rng=np.random.default_rng(0), shift_mediator=1.0, shift_outcome=np.nan
        )
    with pytest.raises(InputValidationError, match=r"'Y'.*missing"):
        make_null_replicate(
            df.drop(columns="Y"),
            ROLES,
            rng=np.random.default_rng(0),
            shift_mediator=1.0,
            shift_outcome=dy,
        )
    bad_t = df.assign(T=df["T"] * 2)
    with pytest.raises(InputValidationError, match=r"treatment.*0/1"):
        make_null_replicate(
            bad_t, ROLES, rng=np.random.default_rng(0), shift_mediator=1.0, shift_outcome=dy
        )
    with pytest.raises(MLearnerError, match="Generator"):
        make_null_replicate(df, ROLES, rng=0, shift_mediator=1.0, shift_outcome=dy)


def test_null_threshold_hand_cases(caplog):
    null = np.arange(1, 20) / 100.0  # 0.01 .. 0.19, B = 19
    assert null_threshold(null[::-1], 0.05) == 0.01  # k = floor(0.05 * 20) = 1: the smallest
    null39 = np.arange(1, 40) / 100.0
    assert null_threshold(null39, 0.05) == 0.02  # k = 2
    assert null_threshold(np.arange(1, 100) / 1000.0, 0.05) == 0.005  # B = 99: k = 5
    assert null_threshold(null, 0.10) == 0.02  # k = floor(0.1 * 20) = 2
    with caplog.at_level(logging.WARNING):
        assert null_threshold(np.arange(1, 11) / 10.0, 0.05) == 0.0  # B = 10 < 19
    assert "need >= 19" in caplog.text
    with pytest.raises(MLearnerError, match="alpha"):
        null_threshold(null, 1.5)
    with pytest.raises(MLearnerError, match="p-values"):
        null_threshold([0.1, np.nan], 0.05)
    with pytest.raises(MLearnerError, match="empty"):
        null_threshold([], 0.05)


def test_threshold_rule_has_level_alpha_under_exchangeability():
    rng = np.random.default_rng(0)
    trials, b, alpha = 4000, 19, 0.05
    draws = rng.random((trials, b + 1))
    declared = [draws[i, 0] < null_threshold(draws[i, 1:], alpha) for i in range(trials)]
    rate = np.mean(declared)
    assert rate <= alpha + 3 * np.sqrt(alpha * (1 - alpha) / trials)
    assert rate > alpha - 3 * np.sqrt(alpha * (1 - alpha) / trials)  # and not wasteful
    mc = np.array([monte_carlo_pvalue(draws[i, 0], draws[i, 1:]) for i in range(trials)])
    assert np.mean(mc <= 0.1) <= 0.1 + 3 * np.sqrt(0.09 / trials)


def test_monte_carlo_pvalue_hand_cases():
    assert monte_carlo_pvalue(0.01, [0.005, 0.02, 0.5]) == 0.5  # (1 + 1) / 4
    assert monte_carlo_pvalue(0.001, [0.005, 0.02, 0.5]) == 0.25
    assert monte_carlo_pvalue(0.02, [0.005, 0.02, 0.5]) == 0.75  # ties count as extreme
    assert monte_carlo_pvalue(1.0, [0.3] * 9) == 1.0
    with pytest.raises(MLearnerError, match="observed"):
        monte_carlo_pvalue(-0.1, [0.5])


def test_split_sample_is_a_deterministic_hash_of_ids():
    ids = np.arange(20000) * 7 + 3
    mask = split_sample(ids, seed=5)
    assert mask.dtype == bool and abs(mask.mean() - 0.5) < 0.02
    perm = np.random.default_rng(0).permutation(ids.size)
    np.testing.assert_array_equal(split_sample(ids[perm], seed=5), mask[perm])
    np.testing.assert_array_equal(split_sample(pd.Series(ids), seed=5), mask)
    other = split_sample(ids, seed=6)
    assert 0.4 < np.mean(other == mask) < 0.6  # another seed is another split
    s_ids = np.array([f"u{i}" for i in range(1000)])
    m = split_sample(s_ids, seed=1)
    np.testing.assert_array_equal(split_sample(s_ids[::-1], seed=1), m[::-1])
    assert abs(m.mean() - 0.5) < 0.06
    assert 0.4 < np.mean(split_sample(s_ids, seed=2) == m) < 0.6
    with pytest.raises(InputValidationError, match="repeated"):
        split_sample([1, 2, 2, 3], seed=0)
    with pytest.raises(InputValidationError, match=">= 2"):
        split_sample([1], seed=0)
    with pytest.raises(MLearnerError, match="seed"):
        split_sample(ids, seed="a")


def _stratified(n: int = 600, seed: int = 4):
    """Three strata of unequal sizes and treated shares; the outcome depends on the stratum."""
    rng = np.random.default_rng(seed)
    site = rng.choice(["a", "b", "c"], size=n, p=[0.5, 0.3, 0.2])
    share = pd.Series(site).map({"a": 0.2, "b": 0.5, "c": 0.8}).to_numpy()
    T = (rng.uniform(size=n) < share).astype(np.int64)
    X1, X2 = rng.normal(size=n), rng.normal(size=n)
    M = X1 + T + rng.normal(size=n)
    Y = 3.0 * (site == "c") + M + 0.5 * T + rng.normal(size=n)
    df = pd.DataFrame({"id": np.arange(n), "X1": X1, "X2": X2, "T": T, "M": M, "Y": Y})
    return df.assign(site=site)


def test_null_replicates_keep_each_strata_number_treated():
    df = _stratified()
    roles = Roles("id", "T", "Y", ("M",), ("X1", "X2"), strata=("site",))
    dm, dy = average_shifts(df, roles)
    treated = df.groupby("site")["T"].sum()
    rng = np.random.default_rng(5)
    moved = 0
    for _ in range(50):
        rep = make_null_replicate(df, roles, rng=rng, shift_mediator=dm, shift_outcome=dy)
        pd.testing.assert_series_equal(rep.groupby("site")["T"].sum(), treated)
        moved += int((rep["T"] != df["T"]).sum())
    assert moved > 0
    # without strata the draw is the plain permutation (results unchanged)
    plain = Roles("id", "T", "Y", ("M",), ("X1", "X2"))
    a = make_null_replicate(
        df, plain, rng=np.random.default_rng(1), shift_mediator=dm, shift_outcome=dy
    )
    assert np.array_equal(a["T"], np.random.default_rng(1).permutation(df["T"].to_numpy()))


def test_average_shifts_within_strata_hand_computed():
    df = pd.DataFrame(
        {
            "id": range(6),
            "T": [1, 0, 0, 1, 1, 0],
            "Y": [3.0, 1.0, 1.0, 10.0, 12.0, 8.0],
            "s": ["a", "a", "a", "b", "b", "b"],
        }
    )
    roles = Roles("id", "T", "Y", (), (), strata=("s",))
    # stratum a: 3 - 1 = 2; stratum b: 11 - 8 = 3; equal sizes: 2.5
    assert average_shifts(df, roles) == (None, pytest.approx(2.5))
    assert average_shifts(df, Roles("id", "T", "Y"))[1] == pytest.approx(25 / 3 - 10 / 3)
