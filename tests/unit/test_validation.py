"""Input validation: statistics, one clear line per problem, the row account."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlearner_dist.core.roles import Roles
from mlearner_dist.core.validation import (
    DISTINCT_LIMIT,
    CategoryFoldWarning,
    RowAccount,
    check_table,
    pandas_column_stats,
    validate_frame,
)
from mlearner_dist.exceptions import ConfigError, InputValidationError, RowAccountError

ROLES = Roles("id", "T", "Y", ("M",), ("X1", "X2", "city"))
KW = {"min_treated": 3, "min_control": 3, "n_folds": 2}


def make_frame(n: int = 12, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "id": np.arange(n),
            "T": np.tile([0, 1], n // 2),
            "M": rng.normal(size=n),
            "Y": rng.normal(size=n),
            "X1": rng.normal(size=n),
            "X2": rng.normal(size=n),
            "city": np.array(["a", "b", "c"] * (n // 3), dtype=object),
            "extra": "unused",
        }
    )


def problems_of(df: pd.DataFrame, roles: Roles = ROLES, **kw) -> list[str]:
    with pytest.raises(InputValidationError) as info:
        validate_frame(df, roles, **(KW | kw))
    return info.value.problems


# --- statistics -------------------------------------------------------------------------------


def test_column_stats_hand_computed():
    df = pd.DataFrame(
        {
            "id": [1, 2, 3, 4, 5],
            "T": [0, 1, 1, 0, 1],
            "Y": [1.5, np.nan, np.inf, -2.0, 1.5],
            "X1": ["x", "7", None, "y", "x"],
        }
    )
    st = pandas_column_stats(df, Roles("id", "T", "Y", (), ("X1",)))
    assert (st.n_rows, st.n_distinct_ids, st.n_treated, st.n_control) == (5, 5, 3, 2)
    y = st.stats["Y"]
    assert (y.kind, y.n, y.n_null, y.n_nonfinite, y.n_distinct) == ("numeric", 5, 1, 1, 2)
    assert (y.min, y.max, y.values) == (-2.0, 1.5, (-2.0, 1.5))
    x = st.stats["X1"]
    assert (x.kind, x.n_null, x.n_distinct, x.values) == ("string", 1, 3, ("7", "x", "y"))
    assert (x.n_unparseable, x.example_unparseable, x.numeric_parse_fails) == (3, "x", True)
    # rows removed by missing="drop", counted at their first bad used column: Y rows 1 and 2,
    # X1 row 2 is already counted under Y
    assert st.n_removable == {"id": 0, "T": 0, "Y": 2, "X1": 0}


def test_distinct_count_is_capped_and_values_listed_only_when_few():
    df = make_frame(300)
    st = pandas_column_stats(df, ROLES).stats
    assert st["X1"].n_distinct == DISTINCT_LIMIT + 1 and st["X1"].values is None
    assert st["T"].values == (0.0, 1.0) and st["city"].values == ("a", "b", "c")


# --- each bad input gives its own clear line ---------------------------------------------------


def test_clean_frame_passes_with_full_account():
    df = make_frame()
    clean, account = validate_frame(df, ROLES, **KW)
    pd.testing.assert_frame_equal(clean, df)
    assert account.to_dict() == {"n_input": 12, "n_used": 12, "removed": {}}


def test_missing_column_suggests_closest_name():
    roles = Roles("id", "T", "y", ("M",), ("X1", "X2", "citty"))
    probs = problems_of(make_frame(), roles)
    assert any("y (outcome): no such column" in p and "did you mean 'Y'" in p for p in probs)
    assert any("citty (covariate)" in p and "did you mean 'city'" in p for p in probs)
    with pytest.raises(InputValidationError, match=r"y \(outcome\): no such column"):
        validate_frame(make_frame(), roles, **KW)


def test_empty_table():
    with pytest.raises(InputValidationError, match=r"the table is empty \(0 rows\)"):
        validate_frame(make_frame().iloc[:0], ROLES, **KW)


def test_single_row_and_fewer_units_than_folds():
    with pytest.raises(InputValidationError, match="single row"):
        validate_frame(make_frame().iloc[:1], ROLES, min_treated=1, min_control=1)
    with pytest.raises(InputValidationError, match="4 rows, fewer than the 5 cross-fitting folds"):
        validate_frame(make_frame().iloc[:4], ROLES, min_treated=1, min_control=1, n_folds=5)


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ([0, 1, 2] * 4, r"T \(treatment\): must be coded 0/1, found \[0, 1, 2\]"),
        ([1] * 12, r"T \(treatment\): every unit is treated \(1\)"),
        ([0] * 12, r"T \(treatment\): every unit is control \(0\)"),
        ([0] * 10 + [1] * 2, r"T \(treatment\): 2 treated units \(T=1\), fewer than the minimum 3"),
        ([1] * 10 + [0] * 2, r"T \(treatment\): 2 control units \(T=0\), fewer than the minimum 3"),
    ],
)
def test_treatment_problems(values, match):
    df = make_frame().assign(T=values)
    with pytest.raises(InputValidationError, match=match):
        validate_frame(df, ROLES, **KW)


def test_missing_and_infinite_values_are_counted():
    df = make_frame()
    df.loc[[0, 3], "X1"] = np.nan
    df.loc[5, "X1"] = np.inf
    with pytest.raises(
        InputValidationError,
        match=r"X1 \(covariate\): 2 missing \(null/NaN\) and 1 infinite values out of 12.*drop",
    ):
        validate_frame(df, ROLES, **KW)


def test_text_in_numeric_roles():
    df = make_frame().astype({"Y": object})
    df.loc[2, "Y"] = "abc"
    df.loc[4, "Y"] = "n/a"
    with pytest.raises(
        InputValidationError, match=r"Y \(outcome\): 2 text values are not numbers \(e.g. 'abc'\)"
    ):
        validate_frame(df, ROLES, **KW)
    numeric_text = make_frame().assign(M=lambda d: d.M.astype(str))
    with pytest.raises(InputValidationError, match=r"M \(mediator\): stored as text although"):
        validate_frame(numeric_text, ROLES, **KW)


def test_text_covariates_are_allowed_but_other_types_are_not():
    df = make_frame().assign(city=lambda d: d.city.astype("category"))
    validate_frame(df, ROLES, **KW)
    dates = make_frame().assign(X2=pd.date_range("2020-01-01", periods=12))
    with pytest.raises(InputValidationError, match=r"X2 \(covariate\): type datetime64"):
        validate_frame(dates, ROLES, **KW)


def test_constant_and_all_missing_covariates_and_constant_mediator():
    df = make_frame().assign(X1=3.0, X2=np.nan, M=0.5)
    probs = problems_of(df)
    assert any(p.startswith("X1 (covariate): constant (every value is 3)") for p in probs)
    assert any(p.startswith("X2 (covariate): all 12 values are missing") for p in probs)
    assert any(p.startswith("M (mediator): no variance (every value is 0.5)") for p in probs)
    # an entirely missing column is an error even when rows with missing values are dropped
    with pytest.raises(InputValidationError, match=r"X2 \(covariate\): all 12 values"):
        validate_frame(make_frame().assign(X2=np.nan), ROLES, missing="drop", **KW)


def test_duplicated_ids():
    df = make_frame().assign(id=[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9])
    with pytest.raises(InputValidationError, match=r"id \(unit id\): 2 rows repeat an id"):
        validate_frame(df, ROLES, **KW)


def test_column_in_two_roles():
    roles = Roles("id", "T", "Y", ("M",), ("X1", "T"))
    with pytest.raises(InputValidationError, match="T: named as treatment and as covariate"):
        validate_frame(make_frame(), roles, **KW)


def test_all_problems_reported_in_one_error():
    df = make_frame().assign(T=[0, 1, 2] * 4, X1=1.0)
    df.loc[0, "Y"] = np.nan
    roles = Roles("id", "T", "Y", ("M",), ("X1", "X2", "cty"))
    with pytest.raises(InputValidationError) as info:
        validate_frame(df, roles, **KW)
    probs = info.value.problems
    assert len(probs) == 4
    for needle in ("cty (covariate)", "T (treatment)", "Y (outcome)", "X1 (covariate)"):
        assert sum(p.startswith(needle) for p in probs) == 1, needle
    assert str(info.value).startswith("4 problem(s) with the input data:")


# --- missing="drop" and the row account ---------------------------------------------------------


def test_drop_accounts_for_every_removed_row():
    df = make_frame(30)
    df.loc[[0, 1], "Y"] = np.nan
    df.loc[[1, 2], "X1"] = np.nan  # row 1 is counted under Y, which comes first
    df.loc[3, "M"] = -np.inf
    df.loc[4, "city"] = None
    clean, account = validate_frame(df, ROLES, missing="drop", **KW)
    assert account.removed == {"missing:M": 1, "missing:Y": 2, "missing:X1": 1, "missing:city": 1}
    assert account.to_dict()["n_used"] == 25 == len(clean) == account.n_used
    assert sorted(clean["id"]) == list(range(5, 30))
    assert list(clean.index) == list(range(25))
    # the input is untouched
    assert df["Y"].isna().sum() == 2 and len(df) == 30


def test_drop_rechecks_counts_after_removal():
    df = make_frame()
    df.loc[df["T"] == 1, "Y"] = np.nan
    df.loc[1, "Y"] = 0.3
    with pytest.raises(
        InputValidationError, match=r"1 treated units.*after dropping 5 rows with missing values"
    ):
        validate_frame(df, ROLES, missing="drop", **KW)


def test_boolean_treatment_becomes_int():
    df = make_frame().assign(T=lambda d: d["T"].astype(bool))
    clean, _ = validate_frame(df, ROLES, **KW)
    assert clean["T"].dtype == np.int64 and clean["T"].sum() == 6
    assert df["T"].dtype == bool


def test_category_in_one_fold_warns():
    df = make_frame(12)
    df.loc[11, "city"] = "rare"
    folds = np.arange(12) % 2
    match = r"city \(covariate\): 1 category occurs in one.*\('rare'\)"
    with pytest.warns(CategoryFoldWarning, match=match):
        validate_frame(df, ROLES, folds=folds, **KW)
    st = pandas_column_stats(df, ROLES, folds=folds)
    assert st.single_fold_categories == {"city": ("rare",)}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"missing": "ignore"}, "missing='ignore'"),
        ({"n_folds": 0}, "n_folds=0"),
        ({"min_treated": 0}, "min_treated=0"),
    ],
)
def test_bad_parameters(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        validate_frame(make_frame(), ROLES, **(KW | kwargs))


def test_bad_arguments():
    with pytest.raises(ConfigError, match="roles must be a"):
        validate_frame(make_frame(), ("id", "T"))
    with pytest.raises(InputValidationError, match="expected a pandas DataFrame"):
        validate_frame(make_frame().to_dict(), ROLES)
    with pytest.raises(InputValidationError, match=r"folds: expected one label per row \(12\)"):
        validate_frame(make_frame(), ROLES, folds=np.zeros(3), **KW)
    with pytest.raises(ConfigError, match="stats must be a TableStats"):
        check_table({}, ROLES, **KW)


def test_check_table_is_pure_and_agrees_with_validate_frame():
    df = make_frame().assign(X1=2.0)
    stats = pandas_column_stats(df, ROLES)
    assert check_table(stats, ROLES, **KW) == problems_of(df)
    assert check_table(pandas_column_stats(make_frame(), ROLES), ROLES, **KW) == []


def test_row_account():
    account = RowAccount(10, {"missing:Y": 2})
    account.remove("missing:X1", 3)
    account.remove("missing:Y", 1)
    assert account.to_dict() == {
        "n_input": 10,
        "n_used": 4,
        "removed": {"missing:Y": 3, "missing:X1": 3},
    }
    assert RowAccount.from_dict(account.to_dict()) == account
    account.check("effects", 4)
    with pytest.raises(RowAccountError, match=r"stage effects: 3 rows out but 4 accepted.*lost"):
        account.check("effects", 3)
    with pytest.raises(RowAccountError, match=r"stage embed: 5 rows out.*invented"):
        account.check("embed", 5)
    with pytest.raises(RowAccountError, match="cannot remove 5 rows"):
        account.remove("x", 5)
    with pytest.raises(RowAccountError, match="12 rows removed but only 10 came in"):
        RowAccount(10, {"a": 12})
    with pytest.raises(RowAccountError, match="n_used=9 but n_input - removed = 8"):
        RowAccount.from_dict({"n_input": 10, "n_used": 9, "removed": {"a": 2}})
    with pytest.raises(RowAccountError, match="without 'n_input'"):
        RowAccount.from_dict({"removed": {}})


# --- strata -----------------------------------------------------------------------------------

STRATA = Roles("id", "T", "Y", ("M",), ("X1", "X2", "city"), strata=("site", "city"))


def strata_frame() -> pd.DataFrame:
    df = make_frame(24)
    df["site"] = np.repeat(["north", "south"], 12)
    return df


def test_strata_with_both_arms_pass_and_a_covariate_may_be_a_stratum():
    clean, account = validate_frame(strata_frame(), STRATA, **KW)
    assert account.n_used == 24 and "site" in clean.columns
    assert STRATA.used_columns.count("city") == 1 and STRATA.used_columns[-1] == "site"


def test_stratum_with_one_arm_is_named_with_the_fix():
    df = strata_frame()
    df.loc[(df["site"] == "south") & (df["city"] == "b"), "T"] = 1
    (line,) = problems_of(df, STRATA)
    assert "site='south', city='b'" in line and "all treated" in line
    assert "columns.strata" in line


def test_missing_or_absent_stratum_column():
    df = strata_frame()
    df.loc[3, "site"] = None
    assert any("site (stratum)" in p and "1 missing" in p for p in problems_of(df, STRATA))
    assert any(
        "site (stratum): no such column" in p
        for p in problems_of(strata_frame().drop(columns="site"), STRATA)
    )


def test_stratum_cannot_be_the_treatment():
    roles = Roles("id", "T", "Y", ("M",), ("X1",), strata=("T",))
    assert any("can play one role only" in p for p in problems_of(make_frame(), roles))


# --- clusters and weights ---------------------------------------------------------------------

CLUSTERED = Roles("id", "T", "Y", ("M",), ("X1", "X2", "city"), cluster="school", weight="w")


def cluster_frame(n_clusters: int = 24, size: int = 3) -> pd.DataFrame:
    df = make_frame(n_clusters * size)
    df["school"] = np.repeat([f"s{i:02d}" for i in range(n_clusters)], size)
    df["T"] = np.repeat(np.tile([0, 1], n_clusters // 2), size)
    df["w"] = 1.0 + np.arange(len(df)) % 3
    return df


def test_cluster_and_weight_columns_pass_and_are_used():
    clean, account = validate_frame(cluster_frame(), CLUSTERED, **KW)
    assert account.n_used == 72 and {"school", "w"} <= set(clean.columns)
    assert CLUSTERED.used_columns[-2:] == ("school", "w")


def test_treatment_varying_within_a_cluster_is_named_with_the_fix():
    df = cluster_frame()
    df.loc[0, "T"] = 1
    (line,) = problems_of(df, CLUSTERED)
    assert "'school' (cluster): 1 of 24 clusters hold both treated and control" in line
    assert "s00" in line and "columns.cluster empty" in line


def test_too_few_clusters_refused_and_few_warned():
    from mlearner_dist.exceptions import FewClustersWarning

    (line,) = problems_of(cluster_frame(n_clusters=2, size=9), CLUSTERED)
    assert "1 treated and 1 control clusters" in line and "at least 2 clusters per arm" in line
    with pytest.warns(FewClustersWarning, match="6 treated and 6 control clusters, fewer than"):
        validate_frame(cluster_frame(n_clusters=12), CLUSTERED, **KW)


def test_missing_cluster_column_or_values_and_bad_weights():
    df = cluster_frame()
    df.loc[4, "school"] = None
    assert any("school (cluster)" in p and "1 missing" in p for p in problems_of(df, CLUSTERED))
    absent = problems_of(cluster_frame().drop(columns="school"), CLUSTERED)
    assert any("school (cluster): no such column" in p for p in absent)
    df = cluster_frame()
    df.loc[[1, 2], "w"] = [0.0, -1.0]
    (line,) = problems_of(df, CLUSTERED)
    assert "'w' (weight): 2 weights are zero or negative" in line and "positive" in line
    df = cluster_frame()
    df.loc[1, "w"] = np.inf
    assert any("w (weight)" in p and "infinite" in p for p in problems_of(df, CLUSTERED))


def test_cluster_spanning_strata_is_refused():
    roles = Roles("id", "T", "Y", ("M",), ("X1",), strata=("site",), cluster="school")
    df = cluster_frame()
    df["site"] = np.tile(["north", "south"], 36)
    lines = problems_of(df, roles)
    assert any("clusters span several strata" in p and "columns.cluster" in p for p in lines)


def test_duplicated_column_names_are_named_once_each():
    from mlearner_dist.core.column_stats import check_unique_columns

    check_unique_columns(["a", "b", 3])
    with pytest.raises(InputValidationError, match=r"columns \['a', 'c'\] appear more than once"):
        check_unique_columns(["c", "a", "b", "a", "c", "a"])


def test_distinct_values_are_counted_and_listed_by_one_rule():
    from mlearner_dist.core.column_stats import (
        DISTINCT_LIMIT,
        MAX_LISTED_VALUES,
        distinct_summary,
    )

    assert distinct_summary("string", ["a", "b"]) == (2, ("a", "b"))
    assert distinct_summary("other", ["a", "b"]) == (2, None)
    many = list(range(MAX_LISTED_VALUES + 1))
    assert distinct_summary("numeric", many) == (len(many), None)
    assert distinct_summary("numeric", [None] * (DISTINCT_LIMIT + 5))[0] == DISTINCT_LIMIT + 1
