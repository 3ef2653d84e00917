"""Spark validation equals pandas validation on the same small frame (local[2])."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlearner_dist.backends.spark_validation import spark_column_stats, validate_spark_frame
from mlearner_dist.core.roles import Roles
from mlearner_dist.core.validation import (
    DISTINCT_LIMIT,
    CategoryFoldWarning,
    pandas_column_stats,
    validate_frame,
)
from mlearner_dist.exceptions import InputValidationError

pytestmark = pytest.mark.spark

ROLES = Roles("id", "T", "Y", ("M",), ("X1", "flag", "city", "code"))
KW = {"min_treated": 3, "min_control": 3, "n_folds": 3}


def make_frame(n: int = 240, seed: int = 0) -> pd.DataFrame:
    """Numeric, boolean, categorical and text-coded columns, some values missing or infinite."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "id": np.arange(n, dtype=np.int64),
            "T": np.tile([0, 1], n // 2).astype(np.int64),
            "M": rng.normal(size=n),
            "Y": rng.normal(size=n),
            "X1": np.round(rng.normal(size=n), 2),
            "flag": rng.random(n) < 0.3,
            "city": rng.choice(np.array(["north", "south", "east"], dtype=object), size=n),
            "code": rng.choice(np.array(["12", "7", "x9"], dtype=object), size=n),
            "fold": (np.arange(n) % 3).astype(np.int64),
        }
    )
    df.loc[[3, 10], "Y"] = np.nan
    df.loc[[10, 20], "X1"] = np.nan
    df.loc[30, "M"] = np.inf
    df.loc[[40, 41], "city"] = None
    df.loc[50, "city"] = "west"  # a category in a single fold
    return df


@pytest.fixture(scope="module")
def frames(spark):
    df = make_frame()
    return df, spark.createDataFrame(df)


def test_spark_stats_equal_pandas_stats(frames):
    df, sdf = frames
    want = pandas_column_stats(df, ROLES, folds=df["fold"].to_numpy())
    got = spark_column_stats(sdf, ROLES, fold_col="fold")
    assert got == want
    # and the statistics are the hand-known ones
    assert got.stats["Y"].n_null == 2 and got.stats["M"].n_nonfinite == 1
    assert got.stats["X1"].n_distinct == DISTINCT_LIMIT + 1
    assert got.stats["flag"].kind == "boolean" and got.stats["flag"].values == (0.0, 1.0)
    assert got.stats["code"].n_unparseable == (df["code"] == "x9").sum()
    assert got.n_removable == {
        "id": 0,
        "T": 0,
        "M": 1,
        "Y": 2,
        "X1": 1,
        "flag": 0,
        "city": 2,
        "code": 0,
    }
    assert got.single_fold_categories == {"city": ("west",), "code": ()}


def test_spark_reports_the_same_problems_as_pandas(spark):
    df = make_frame(60).assign(T=lambda d: np.arange(60) % 3, X1=1.5)
    df = df.astype({"Y": object})
    df.loc[5, "Y"] = "abc"
    roles = Roles("id", "T", "Y", ("M",), ("X1", "cty"))
    with pytest.raises(InputValidationError) as pandas_error:
        validate_frame(df, roles, **KW)
    sdf = spark.createDataFrame(df.astype({"Y": str}).replace({"nan": None}))
    with pytest.raises(InputValidationError, match=r"cty \(covariate\).*did you mean 'city'") as e:
        validate_spark_frame(sdf, roles, **KW)
    assert e.value.problems == pandas_error.value.problems
    assert len(e.value.problems) >= 5


def test_spark_drop_keeps_the_same_rows_and_account(frames):
    df, sdf = frames
    clean_pd, account_pd = validate_frame(df, ROLES, missing="drop", **KW)
    with pytest.warns(CategoryFoldWarning, match="'west'"):
        clean, account = validate_spark_frame(sdf, ROLES, missing="drop", fold_col="fold", **KW)
    assert account.to_dict() == account_pd.to_dict()
    assert account.removed == {"missing:M": 1, "missing:Y": 2, "missing:X1": 1, "missing:city": 2}
    ids = sorted(r["id"] for r in clean.select("id").collect())
    assert ids == sorted(clean_pd["id"]) and len(ids) == account.n_used == 234
    account.check("validate", clean.count())


def test_spark_missing_values_are_errors_by_default(frames):
    _, sdf = frames
    with pytest.raises(InputValidationError, match=r"M \(mediator\): 1 infinite values"):
        validate_spark_frame(sdf, ROLES, **KW)


def test_duplicated_column_names_are_refused_alike(frames):
    df, sdf = frames
    want = r"columns \['M'\] appear more than once in the table; rename them"
    with pytest.raises(InputValidationError, match=want):
        pandas_column_stats(pd.concat([df, df[["M"]]], axis=1), ROLES)
    with pytest.raises(InputValidationError, match=want):
        spark_column_stats(sdf.select(*sdf.columns, sdf["M"]), ROLES)


def test_the_first_rows_values_give_the_statistics_of_a_full_enumeration(frames, monkeypatch):
    """Checking columns against their first rows' values is exact, whatever those rows hold."""
    import mlearner_dist.backends.spark_validation as sv

    _, sdf = frames
    seen = []
    first_rows_values = sv._first_rows_values
    monkeypatch.setattr(
        sv, "_first_rows_values", lambda *a: seen.append(first_rows_values(*a)) or seen[-1]
    )
    names = list(ROLES.used_columns)
    want = spark_column_stats(sdf, ROLES, fold_col="fold")
    first = {names[i]: v for i, v in seen[0].items()}
    assert not {"id", "M", "Y"} & set(first)  # 240 values each: more than the bound
    assert first["T"] == [0.0, 1.0] and first["city"] == ["east", "north", "south", "west"]
    want = spark_column_stats(sdf, ROLES, fold_col="fold")
    for rows in (0, 7):  # none read (every column sketched and enumerated), or a few
        monkeypatch.setattr(sv, "_SAMPLE_ROWS", rows)
        assert spark_column_stats(sdf, ROLES, fold_col="fold") == want


def test_a_column_few_valued_in_the_first_rows_is_still_counted(spark, monkeypatch):
    import mlearner_dist.backends.spark_validation as sv

    monkeypatch.setattr(sv, "_SAMPLE_ROWS", 50)
    df = make_frame(n=600).drop(columns="fold")
    df["X1"] = np.where(np.arange(600) < 300, 0.0, np.random.default_rng(1).normal(size=600))
    df["city"] = np.where(np.arange(600) < 300, "north", df["city"])
    got = spark_column_stats(spark.createDataFrame(df), ROLES)
    assert got == pandas_column_stats(df, ROLES)
    assert got.stats["X1"].n_distinct == DISTINCT_LIMIT + 1
    assert got.stats["city"].values == ("east", "north", "south")  # two beyond row 50


def test_few_awkward_floats_are_matched_exactly_and_ids_counted_as_stored(spark):
    """Few-valued doubles survive the SQL literals; large, negative or repeated ids count right."""
    n = 300
    awkward = np.array([0.1, 1e-300, -2.5e17, 1 / 3, 12345.678901234567])
    base = make_frame(n=n).drop(columns="fold")
    cases = {
        "negative and zero ids": np.arange(n, dtype=np.int64) - 150,
        "ids beyond 2^53, one apart": np.arange(n, dtype=np.int64) + 2**60,
        "one repeated id": np.r_[np.arange(n - 1), 7].astype(np.int64),
        "sparse ids (distinct(), not bitmaps)": np.arange(n, dtype=np.int64) * 2**40,
        "double ids": np.arange(n) + 0.5,
    }
    for label, ids in cases.items():
        df = base.assign(id=ids, X1=awkward[np.arange(n) % 5])
        got = spark_column_stats(spark.createDataFrame(df), ROLES)
        assert got == pandas_column_stats(df, ROLES), label
        assert got.n_distinct_ids == len(set(ids.tolist())), label
        assert got.stats["X1"].values == tuple(sorted(awkward)), label
