"""One rule for the proportion mediated: a Fieller interval, suppressed when TE's CI covers 0."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from mlearner_dist.core.estimator import average_effects
from mlearner_dist.core.subgroup_effects import (
    PROP_MEDIATED_SUPPRESSED,
    adjusted_subgroup_effects,
    proportion_mediated,
)

Z = float(norm.ppf(0.975))


def test_fieller_interval_matches_a_hand_computation():
    si = np.array([1.0, 3.0, 2.0, 4.0])
    st = np.array([1.0, 4.0, 3.0, 6.0])
    n = 4
    a, b = si.mean(), st.mean()  # 2.5, 3.5
    va = si.var(ddof=1) / n  # (5/3) / 4
    vb = st.var(ddof=1) / n  # (13/3) / 4
    c = np.cov(si, st, ddof=1)[0, 1] / n  # (8/3) / 4
    # roots of (b^2 - z^2 vb) r^2 - 2 (ab - z^2 c) r + (a^2 - z^2 va) = 0
    qa, qb, qc = b * b - Z * Z * vb, a * b - Z * Z * c, a * a - Z * Z * va
    lo = (qb - math.sqrt(qb * qb - qa * qc)) / qa
    hi = (qb + math.sqrt(qb * qb - qa * qc)) / qa
    got = proportion_mediated(si, st)
    assert got["estimate"] == pytest.approx(2.5 / 3.5)
    assert got["ci_low"] == pytest.approx(lo) and got["ci_high"] == pytest.approx(hi)
    assert got["note"] == ""
    # every rho inside satisfies the Fieller inequality, the end points with equality
    for r in (lo, hi):
        assert (a - r * b) ** 2 == pytest.approx(Z * Z * (va - 2 * r * c + r * r * vb))
    mid = 0.5 * (lo + hi)
    assert (a - mid * b) ** 2 < Z * Z * (va - 2 * mid * c + mid * mid * vb)


def test_suppressed_exactly_when_the_total_interval_covers_zero():
    rng = np.random.default_rng(3)
    for shift in (0.0, 0.05, 0.5):
        st = rng.normal(shift, 1.0, 200)
        si = 0.5 * st + rng.normal(0, 0.5, 200)
        got = proportion_mediated(si, st)
        m, se = st.mean(), st.std(ddof=1) / math.sqrt(200)
        covers = bool(m - Z * se <= 0 <= m + Z * se)
        assert math.isnan(got["estimate"]) is covers
        assert (got["note"] == PROP_MEDIATED_SUPPRESSED) is covers


def test_average_and_subgroup_follow_the_same_rule():
    rng = np.random.default_rng(4)
    n = 300
    st = rng.normal(0.3, 1.0, n)
    si = 0.6 * st + rng.normal(0, 0.4, n)
    eff = pd.DataFrame({"score_indirect": si, "score_total": st, "score_direct": st - si})
    avg = average_effects(eff)["prop_mediated"]
    leaf = adjusted_subgroup_effects(eff, np.zeros(n, dtype=int)).iloc[0]
    ref = proportion_mediated(si, st)
    assert avg["estimate"] == pytest.approx(ref["estimate"]) == pytest.approx(leaf["prop_mediated"])
    assert avg["ci_low"] == pytest.approx(leaf["prop_mediated_ci_low"])
    assert avg["ci_high"] == pytest.approx(leaf["prop_mediated_ci_high"])
    # a total effect indistinguishable from 0: both suppress, with the same note
    eff0 = eff.assign(score_total=rng.normal(0.0, 1.0, n))
    avg0 = average_effects(eff0)["prop_mediated"]
    leaf0 = adjusted_subgroup_effects(eff0, np.zeros(n, dtype=int)).iloc[0]
    assert avg0["estimate"] is None and avg0["note"] == PROP_MEDIATED_SUPPRESSED
    assert math.isnan(leaf0["prop_mediated"]) and PROP_MEDIATED_SUPPRESSED in leaf0["note"]


def test_fieller_covers_where_the_total_effect_is_weak():
    # TE / se(TE) about 3: the delta method's symmetric interval under-covers, Fieller does not
    rng = np.random.default_rng(21)
    sims, n, covered, reported = 400, 100, 0, 0
    cov = [[1.0, 0.7], [0.7, 1.0]]
    for _ in range(sims):
        s = rng.multivariate_normal([0.15, 0.3], cov, size=n)
        got = proportion_mediated(s[:, 0], s[:, 1])
        if got["note"]:
            continue
        reported += 1
        covered += got["ci_low"] <= 0.5 <= got["ci_high"]
    rate = covered / reported
    assert reported > 0.7 * sims
    assert rate >= 0.95 - 3 * math.sqrt(0.95 * 0.05 / reported), rate
