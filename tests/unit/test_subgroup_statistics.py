"""The subgroup table and average effects from leaf sums equal the in-memory ones."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlearner_dist.core.effect_summaries import average_effects, subgroup_table
from mlearner_dist.core.effects import cross_fit_effects
from mlearner_dist.core.estimator import MLearner
from mlearner_dist.core.roles import Roles
from mlearner_dist.core.subgroup_effects import unadjusted_subgroup_effects
from mlearner_dist.core.subgroup_statistics import (
    NORMAL_BOOTSTRAP_NOTE,
    average_effects_from_sums,
    combine_subgroup_sums,
    pool_sums,
    subgroup_sums,
    subgroup_table_from_sums,
)
from mlearner_dist.datasets import simulate

COVS = tuple(f"X{i}" for i in range(1, 11))
ROLES = Roles(unit_id="unit_id", treatment="T", outcome="Y", mediators=("M",), covariates=COVS)


@pytest.fixture(scope="module")
def analysed() -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    data = simulate("simple-part", 1500, seed=2, noise_sd=1.0)
    model = MLearner(learner="linear", n_folds=2, random_state=0)
    effects, _ = cross_fit_effects(data, ROLES, model.nuisance_spec(), n_folds=2, seed=0)
    leaf = (data["X1"].to_numpy() > 0).astype(int) + 2 * (data["X2"].to_numpy() > 0.5)
    return data, effects, leaf


def _sums(data, effects, leaf, n_chunks=3):
    joined = pd.concat([data[["T", "M", "Y"]], effects.drop(columns=["unit_id"])], axis=1)
    parts = [
        subgroup_sums(
            joined.iloc[idx],
            leaf[idx],
            treatment="T",
            outcome="Y",
            mediators=("M",),
            propensity_clip=0.01,
            max_density_ratio=10.0,
        )
        for idx in np.array_split(np.arange(len(joined)), n_chunks)
    ]
    return combine_subgroup_sums(parts)


def test_table_from_sums_equals_the_in_memory_table(analysed) -> None:
    data, effects, leaf = analysed
    rules = {g: f"leaf {g}" for g in range(4)}
    kw = dict(n_bootstrap=200, level=0.95, min_size=10, random_state=5)
    want = subgroup_table(data, ROLES, effects, leaf, rules, **kw)
    got = subgroup_table_from_sums(
        _sums(data, effects, leaf), rules, has_mediator=True, max_density_ratio=10.0, **kw
    )
    # the unadjusted bootstrap by the normal approximation, as in memory above exact_max_n
    # (equal up to the rounding of the pooled cross-products through the eigendecomposition)
    una = unadjusted_subgroup_effects(data, ROLES, leaf, exact_max_n=1, **kw).set_index("leaf")
    assert [g["leaf"] for g in got] == [w["leaf"] for w in want]
    for g, w in zip(got, want, strict=True):
        assert g["n"] == w["n"] and g["rule"] == w["rule"]
        for name in ("indirect", "direct", "total", "prop_mediated"):
            for key in ("estimate", "ci_low", "ci_high"):
                assert g[name][key] == pytest.approx(w[name][key], rel=1e-9, abs=1e-12, nan_ok=True)
                u = g["unadjusted"][name][key]
                assert u == pytest.approx(
                    una.loc[g["leaf"], name if key == "estimate" else f"{name}_{key}"],
                    rel=1e-6,
                    abs=1e-12,
                )
        assert g["overlap"] == w["overlap"]
        assert NORMAL_BOOTSTRAP_NOTE in g["note"]


def test_average_effects_from_sums(analysed) -> None:
    data, effects, leaf = analysed
    got = average_effects_from_sums(pool_sums(_sums(data, effects, leaf, 4)))
    want = average_effects(effects)
    for name in ("indirect", "direct", "total", "prop_mediated"):
        for key in ("estimate", "ci_low", "ci_high"):
            assert got[name][key] == pytest.approx(
                want[name][key], rel=1e-9, abs=1e-12, nan_ok=True
            )
