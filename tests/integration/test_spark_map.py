"""Spark tasks as the calibration's map function (classic local session)."""

from __future__ import annotations

import numpy as np
import pytest

from mlearner_dist.backends.spark_map import spark_map

pytestmark = pytest.mark.spark


def test_spark_map_returns_results_in_item_order_with_the_closure_shipped(spark):
    data = np.arange(10.0)

    def weighted(i):  # closes over data: shipped with the function (by value)
        from threadpoolctl import threadpool_info

        counts = [int(p["num_threads"]) for p in threadpool_info()]
        return {"i": i, "sum": float((data * i).sum()), "threads": max(counts, default=1)}

    run = spark_map(spark, label="item")
    out = run(weighted, [3, 0, 7, 1, 5])
    assert [o["i"] for o in out] == [3, 0, 7, 1, 5]
    assert [o["sum"] for o in out] == [45.0 * i for i in (3, 0, 7, 1, 5)]
    assert all(o["threads"] == 1 for o in out)  # native thread pools limited per task
    assert run(weighted, []) == []
    assert run.n_workers >= 1


def test_spark_map_gives_the_cross_split_calibration_its_in_process_result(spark):
    import warnings

    from mlearner_dist.core.estimator import MLearner, cross_split_calibration
    from mlearner_dist.core.roles import Roles
    from mlearner_dist.datasets import simulate

    df = simulate("simple-all", 300, seed=4, noise_sd=0.01).sort_values("unit_id")
    df = df.reset_index(drop=True)
    roles = Roles("unit_id", "T", "Y", ("M",), tuple(f"X{i}" for i in range(1, 11)))
    kw = {"n_iter": 250, "k_values": (2, 3), "cv_folds": 3, "n_replicates": 40, "random_state": 4}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = cross_split_calibration(MLearner(**kw), df, roles, target="indirect")
        mapped = cross_split_calibration(
            MLearner(**kw), df, roles, target="indirect", map_fn=spark_map(spark)
        )
    assert mapped["p_decision"] == plain["p_decision"]
    assert mapped["directions"] == plain["directions"]


def test_spark_map_checks_its_arguments(spark):
    with pytest.raises(ValueError, match="threads_per_task"):
        spark_map(spark, threads_per_task=0)
    with pytest.raises(TypeError, match="threads_per_task"):
        spark_map(spark, threads_per_task=1.5)

