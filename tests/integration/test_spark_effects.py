"""Step 1 on Spark: the same numbers as in memory, whatever the partitioning (real local Spark)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlearner_dist.backends.spark_effects import spark_cross_fit_effects
from mlearner_dist.core.effects import cross_fit_effects, effect_columns
from mlearner_dist.core.nuisance import NuisanceSpec
from mlearner_dist.core.roles import Roles
from mlearner_dist.datasets import simulate
from mlearner_dist.exceptions import InputValidationError

pytestmark = pytest.mark.spark

N = 1500
SPEC = NuisanceSpec(learner_params={"max_iter": 30})


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, Roles]:
    df = simulate("simple-all", N, seed=3, noise_sd=0.01)
    covs = tuple(c for c in df.columns if c.startswith("X"))
    roles = Roles("unit_id", "T", "Y", ("M",), covs)
    return df[["unit_id", "T", "M", "Y", *covs]], roles


def _spark(spark, df: pd.DataFrame, roles: Roles, partitions: int, spec=SPEC) -> pd.DataFrame:
    sdf = spark.createDataFrame(df).repartition(partitions)
    eff, diag = spark_cross_fit_effects(sdf, roles, spec, n_folds=3, seed=11)
    out = eff.toPandas().sort_values("unit_id", kind="stable").reset_index(drop=True)
    assert diag["cross_fitted"] is (spec.estimator == "nested")
    return out


@pytest.mark.parametrize("estimator", ["nested", "reference"])
def test_spark_equals_in_memory_for_the_same_seed_and_folds(spark, data, estimator):
    df, roles = data
    spec = NuisanceSpec(estimator=estimator, learner_params={"max_iter": 30})
    mem, _ = cross_fit_effects(df, roles, spec, n_folds=3, seed=11)
    mem = mem.sort_values("unit_id", kind="stable").reset_index(drop=True)
    got = _spark(spark, df, roles, 4, spec)
    assert list(got.columns) == effect_columns(roles, estimator)
    assert len(got) == len(df)
    np.testing.assert_array_equal(got["fold"], mem["fold"])
    for col in effect_columns(roles, estimator)[2:]:
        np.testing.assert_allclose(got[col], mem[col], rtol=1e-9, atol=1e-12, err_msg=col)
    np.testing.assert_array_equal(got["indirect"] + got["direct"], got["total"])


def test_two_and_eight_partitions_give_identical_effects(spark, data):
    df, roles = data
    two = _spark(spark, df, roles, 2)
    eight = _spark(spark, df, roles, 8)
    pd.testing.assert_frame_equal(two, eight)


def test_a_fold_without_units_is_refused_before_fitting(spark, data):
    df, roles = data
    with pytest.raises(InputValidationError, match="fold"):
        spark_cross_fit_effects(
            spark.createDataFrame(df.head(6)), roles, SPEC, n_folds=5, seed=11
        )


def _close(a, b, atol: float) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return abs(float(a) - float(b)) <= atol


def test_spark_and_in_memory_diagnostics_come_from_one_builder(spark, data, caplog):
    """Same keys in the same order (Spark adds only ``timings``), equal values on the same data:
    R2 from Spark's sums to 1e-8, AUC from its 4096-bin histogram to 2e-3. Both paths log one
    progress line per fold."""
    import logging
    import re

    df, roles = data
    caplog.set_level(logging.INFO, logger="mlearner_dist.core.progress")
    _, mem = cross_fit_effects(df, roles, SPEC, n_folds=3, seed=11)
    _, got = spark_cross_fit_effects(
        spark.createDataFrame(df).repartition(3), roles, SPEC, n_folds=3, seed=11
    )
    lines = [r.getMessage() for r in caplog.records]
    for prefix in ("cross-fitting", "cross-fitting (Spark)"):
        folds = [m for m in lines if re.match(rf"{re.escape(prefix)}: \d/3 .* - fold \d/3 on", m)]
        assert len(folds) == 3 and all("mediator 2 models" in m for m in folds), lines
    assert list(got) == [*mem, "timings"]
    same = ["estimator", "design", "learner", "learners", "learner_choice", "mediator_kind"]
    same += ["n_folds", "n_units", "cross_fitted", "training_rows"]
    for key in same:
        assert got[key] == mem[key], key
    assert list(got["models"]) == list(mem["models"])
    for name, want in mem["models"].items():
        have = got["models"][name]
        assert list(have) == list(want) == ["metric", "by_fold", "mean"]
        assert have["metric"] == want["metric"]
        atol = 1e-8 if want["metric"] == "r2" else 2e-3
        pairs = zip(have["by_fold"], want["by_fold"], strict=True)
        assert all(_close(h, w, atol) for h, w in pairs), name
        assert _close(have["mean"], want["mean"], atol), name
    assert list(got["overlap"]) == list(mem["overlap"])
    for column, want in mem["overlap"].items():
        assert list(got["overlap"][column]) == list(want)
        assert all(_close(got["overlap"][column][k], v, 1e-8) for k, v in want.items())
    assert list(got["density_ratio"]) == list(mem["density_ratio"])
    for k, v in mem["density_ratio"].items():
        h = got["density_ratio"][k]
        assert h == v if not isinstance(v, float) else _close(h, v, 1e-5 * max(1.0, abs(v))), k


def test_the_partially_linear_outcome_model_runs_on_spark_as_in_memory(spark, data):
    # pickled into the partitions' closures; its inner folds follow the training rows' order,
    # which both engines sort by unit id
    df, roles = data
    spec = NuisanceSpec(
        learner="linear", model_outcome="partially_linear", learner_params={"max_iter": 30}
    )
    mem, _ = cross_fit_effects(df, roles, spec, n_folds=3, seed=11)
    mem = mem.sort_values("unit_id", kind="stable").reset_index(drop=True)
    got = _spark(spark, df, roles, 3, spec)
    for col in ("indirect", "direct", "score_indirect"):
        np.testing.assert_allclose(got[col], mem[col], rtol=1e-9, atol=1e-12, err_msg=col)
