"""Cluster randomisation: shares, cluster-level re-randomisation, halves and folds by cluster."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mlearner_dist.core.calibration import average_shifts, make_null_replicate, split_sample
from mlearner_dist.core.clusters import cluster_codes, cluster_shares, permute_between_clusters
from mlearner_dist.core.roles import Roles


def _clustered(n_clusters: int = 30, seed: int = 2, strata: bool = False) -> pd.DataFrame:
    """Clusters of unequal sizes; one arm per cluster (10 of 30 treated)."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(2, 30, size=n_clusters)
    cl = np.repeat(np.arange(n_clusters), sizes)
    t_c = np.zeros(n_clusters, dtype=np.int64)
    t_c[rng.choice(n_clusters, size=n_clusters // 3, replace=False)] = 1
    n = len(cl)
    df = pd.DataFrame(
        {
            "id": np.arange(n) * 5,
            "school": np.asarray([f"k{c}" for c in cl]),
            "T": t_c[cl],
            "X1": rng.normal(size=n),
        }
    )
    df["M"] = df["X1"] + df["T"] + rng.normal(size=n_clusters)[cl] + rng.normal(size=n)
    df["Y"] = df["M"] + rng.normal(size=n)
    if strata:
        df["site"] = np.where(cl % 2 == 0, "even", "odd")
    return df


def test_cluster_share_is_the_share_of_treated_clusters():
    df = _clustered()
    assert cluster_shares(df, "T", "school") == pytest.approx(10 / 30)
    assert df["T"].mean() != pytest.approx(10 / 30)  # unit share differs (unequal sizes)
    by = cluster_shares(_clustered(strata=True), "T", "school", ("site",))
    assert set(by) == {("even",), ("odd",)}


def test_cluster_permutation_keeps_clusters_whole_and_counts():
    for strata in (False, True):
        df = _clustered(strata=strata)
        roles = Roles(
            "id", "T", "Y", ("M",), ("X1",), strata=("site",) if strata else (), cluster="school"
        )
        dm, dy = average_shifts(df, roles)
        rng = np.random.default_rng(3)
        moved = 0
        for _ in range(30):
            rep = make_null_replicate(df, roles, rng=rng, shift_mediator=dm, shift_outcome=dy)
            per = rep.groupby("school")["T"].agg(["min", "max", "first"])
            assert (per["min"] == per["max"]).all()
            assert per["first"].sum() == 10
            if strata:
                first = rep.groupby("school")[["site", "T"]].first()
                orig = df.groupby("school")[["site", "T"]].first()
                pd.testing.assert_series_equal(
                    first.groupby("site")["T"].sum(), orig.groupby("site")["T"].sum()
                )
            moved += int((rep["T"] != df["T"]).sum())
        assert moved > 0
    t = df["T"].to_numpy()
    again = permute_between_clusters(t, df, "school", (), np.random.default_rng(0))
    assert np.array_equal(
        again, permute_between_clusters(t, df, "school", (), np.random.default_rng(0))
    )


def test_halves_keep_clusters_whole_and_balance_arms():
    df = _clustered(n_clusters=40)
    codes = cluster_codes(df, "school")
    arm = df["T"].to_numpy()
    mask = split_sample(df["id"].to_numpy(), 7, strata=arm, clusters=df["school"].to_numpy())
    per = pd.Series(mask).groupby(codes).nunique()
    assert (per == 1).all()
    first = pd.DataFrame({"m": mask, "t": arm}).groupby(codes).first()
    for a in (0, 1):
        half = first.loc[first["t"] == a, "m"]
        assert abs(int(half.sum()) - int((~half).sum())) <= 1


def test_effects_table_carries_the_design_and_folds_keep_clusters():
    from mlearner_dist.core.effects import cross_fit_effects
    from mlearner_dist.core.nuisance import NuisanceSpec

    df = _clustered(n_clusters=30)
    df["w"] = 1.0 + (df["id"] % 3)
    roles = Roles("id", "T", "Y", ("M",), ("X1",), cluster="school", weight="w")
    eff, diag = cross_fit_effects(df, roles, NuisanceSpec(learner="linear"), n_folds=3, seed=0)
    assert {"design_cluster", "design_weight"} <= set(eff.columns)
    merged = eff.merge(df, left_on="unit_id", right_on="id")
    assert (merged.groupby("school")["fold"].nunique() == 1).all()
    assert (merged.groupby("school")["design_cluster"].nunique() == 1).all()
    assert np.allclose(merged["design_weight"], merged["w"])
    # the known propensity is the share of treated clusters
    assert np.allclose(eff["propensity"], 10 / 30)
    d = diag["design"]
    assert d["n_clusters"] == 30 and d["treated_clusters"] == 10 and d["weight"] == "w"
    assert d["treatment_probability"] == pytest.approx(1 / 3)
    json.dumps(diag)
    plain, _ = cross_fit_effects(
        df,
        Roles("id", "T", "Y", ("M",), ("X1",)),
        NuisanceSpec(learner="linear"),
        n_folds=3,
        seed=0,
    )
    assert "design_cluster" not in plain.columns


def test_auto_learner_cv_and_r_learner_halves_go_by_cluster(monkeypatch):
    import mlearner_dist.core.learners as learners
    import mlearner_dist.core.nuisance as nuisance
    from mlearner_dist.core.effects import cross_fit_effects
    from mlearner_dist.core.folds import assign_folds
    from mlearner_dist.core.nuisance import NuisanceSpec

    seen: list[tuple[str, bool]] = []

    def spy(ids, n, seed, *, purpose="fold", strata=None, clusters=None):
        seen.append((purpose, clusters is not None))
        out = assign_folds(ids, n, seed, purpose=purpose, strata=strata, clusters=clusters)
        if clusters is not None:
            assert (pd.Series(out).groupby(np.asarray(clusters)).nunique() == 1).all()
        return out

    monkeypatch.setattr(learners, "assign_folds", spy)
    monkeypatch.setattr(nuisance, "assign_folds", spy)
    df = _clustered(n_clusters=30)
    roles = Roles("id", "T", "Y", ("M",), ("X1",), cluster="school")
    spec = NuisanceSpec(learner="auto", auto_candidates=("constant", "linear"))
    cross_fit_effects(df, roles, spec, n_folds=3, seed=0)
    assert ("select", True) in seen and ("inner", True) in seen
    assert all(grouped for purpose, grouped in seen if purpose in ("select", "inner"))


def test_strata_and_clusters_together():
    from mlearner_dist.core.effects import cross_fit_effects, design_blocks
    from mlearner_dist.core.nuisance import NuisanceSpec

    df = _clustered(n_clusters=40, strata=True)
    roles = Roles("id", "T", "Y", ("M",), ("X1",), strata=("site",), cluster="school")
    eff, _ = cross_fit_effects(df, roles, NuisanceSpec(learner="linear"), n_folds=3, seed=1)
    merged = eff.merge(df, left_on="unit_id", right_on="id")
    by = df.groupby("school")[["site", "T"]].first().groupby("site")["T"].mean()
    for site, share in by.items():
        assert np.allclose(merged.loc[merged["site"] == site, "propensity"], share)
    assert (merged.groupby("school")["fold"].nunique() == 1).all()
    codes, clusters = design_blocks(df, roles)
    mask = split_sample(df["id"].to_numpy(), 3, strata=codes, clusters=clusters)
    assert (pd.Series(mask).groupby(df["school"].to_numpy()).nunique() == 1).all()


def test_spark_cross_fitting_refuses_designs_it_does_not_support():
    pytest.importorskip("pyspark")
    from mlearner_dist.backends.spark_effects import refuse_design
    from mlearner_dist.exceptions import ConfigError

    refuse_design(Roles("id", "T", "Y", ("M",), ("X1",)))  # the default design runs
    for kw, match in (
        ({"cluster": "school"}, r"columns\.cluster='school'.*in-memory MLearner"),
        ({"weight": "w"}, r"columns\.weight='w'.*analysis weights"),
        ({"strata": ("site",)}, r"columns\.strata=\['site'\]"),
    ):
        with pytest.raises(ConfigError, match=match):
            refuse_design(Roles("id", "T", "Y", ("M",), ("X1",), **kw))
