"""Input validation on Spark: the statistics of :mod:`mlearner_dist.core.validation` by aggregation.

:func:`spark_column_stats` computes the same :class:`~mlearner_dist.core.validation.TableStats` as
:func:`~mlearner_dist.core.validation.pandas_column_stats` from the first 10,000 rows and two
passes over the table, with no collect of the n rows: the first rows give each column's values
where they are few; the first aggregation counts rows, missing and infinite values, treated and
control units, per-column minima and maxima, strings that do not parse as numbers, and the valid
values outside the first rows' few (none: that set is the column's exact set of values); the second
counts the exact distinct ids. Only where a column has values outside its first rows' set, or
category-fold pairs are asked for, does a further aggregation sketch and enumerate it. Only
DataFrame API calls are used, so the code also runs on Spark Connect and Databricks serverless.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from mlearner_dist.backends.spark_io import sql_identifier
from mlearner_dist.core.column_stats import (
    DISTINCT_LIMIT,
    ColumnStats,
    TableStats,
    check_roles,
    check_unique_columns,
    distinct_summary,
    used_roles,
)
from mlearner_dist.core.roles import Roles
from mlearner_dist.core.row_account import RowAccount
from mlearner_dist.core.validation import MissingPolicy, apply_checks, check_validation_params
from mlearner_dist.exceptions import ConfigError, InputValidationError

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

logger = logging.getLogger(__name__)

# Columns whose approximate distinct count (HyperLogLog, 5% relative standard deviation) is at most
# this are enumerated exactly in the second aggregation; above it the true count exceeds
# DISTINCT_LIMIT.
_ENUMERATE_BELOW = 2 * DISTINCT_LIMIT
# Rows read first (the first ones Spark returns): a column with more than _ENUMERATE_BELOW distinct
# valid values among them has more in the table; one with fewer is checked against them in the
# first aggregation. This replaced a HyperLogLog sketch of every column (an imperative aggregate,
# evaluated row by row outside code generation: at 1M rows and 14 columns it cost as much as all
# other statistics) and the second pass that enumerated the small columns.
_SAMPLE_ROWS = 10_000


def _col(name: str) -> Column:
    from pyspark.sql import functions as F

    return F.col(sql_identifier(name))


_INFINITIES = "CAST('Infinity' AS DOUBLE), CAST('-Infinity' AS DOUBLE)"
_INTEGRAL = ("ByteType", "ShortType", "IntegerType", "LongType")
# exact distinct integer ids by bitmaps (32,768 ids per bucket) while their range is at most this
# (a bitmap of the range takes range / 8 bytes: 256 MiB at the bound); beyond it, distinct()
_BITMAP_RANGE = 2**31


def _spark_kind(dtype: Any) -> str:
    from pyspark.sql import types as T

    if isinstance(dtype, T.BooleanType):
        return "boolean"
    if isinstance(dtype, T.NumericType):
        return "numeric"
    string_types = tuple(
        getattr(T, name) for name in ("StringType", "VarcharType", "CharType") if hasattr(T, name)
    )
    if isinstance(dtype, string_types):
        return "string"
    return "other"


def _value_sql(name: str, kind: str) -> str:
    """The column as Spark sees it for statistics: double for numeric and boolean kinds (SQL)."""
    q = sql_identifier(name)
    return f"CAST({q} AS DOUBLE)" if kind in ("numeric", "boolean") else q


def _valid_sql(value: str, kind: str) -> str:
    """SQL true where ``value`` (a :func:`_value_sql`) is usable: non-null, not NaN, finite."""
    if kind in ("numeric", "boolean"):
        return f"({value} IS NOT NULL AND NOT isnan({value}) AND {value} NOT IN ({_INFINITIES}))"
    return f"({value} IS NOT NULL)"


def _value_expr(name: str, kind: str) -> Column:
    """:func:`_value_sql` as a Column."""
    from pyspark.sql import functions as F

    return F.expr(_value_sql(name, kind))


def _valid_expr(name: str, kind: str) -> Column:
    """True where the column holds a usable value (non-null, not NaN, finite)."""
    from pyspark.sql import functions as F

    return F.expr(_valid_sql(_value_sql(name, kind), kind))


def _double_literal(x: float) -> str:
    """A finite float as a Spark SQL double literal that reads back as the same float."""
    return f"{float(x)!r}D"


def _first_rows_values(base: DataFrame, countable: dict[int, str]) -> dict[int, list[Any]]:
    """The distinct valid values of each countable column among the first rows, where few.

    ``base`` holds each used column ``i`` as its value ``v{i}`` and validity ``ok{i}``;
    ``countable`` maps the indices of the columns not of kind ``"other"`` to their kinds. Reads
    the first ``_SAMPLE_ROWS`` rows Spark returns (bounded on the driver whatever n). A column with
    at most ``_ENUMERATE_BELOW`` distinct valid values there maps to their sorted list (floats for
    numeric and boolean columns, with -0.0 read as 0.0 as Spark's grouping does; strings
    otherwise). A column with more is left out: it is certain to have more in the whole table.
    """
    if not countable:
        return {}
    head = (
        base.select(*[f"v{i}" for i in countable], *[f"ok{i}" for i in countable])
        .limit(_SAMPLE_ROWS)
        .toPandas()
    )
    few: dict[int, list[Any]] = {}
    for i, kind in countable.items():
        values = head[f"v{i}"][head[f"ok{i}"].astype(bool)]
        if kind in ("numeric", "boolean"):
            uniq: list[Any] = sorted({float(v) + 0.0 for v in values})
        else:
            uniq = sorted({str(v) for v in values})
        if len(uniq) <= _ENUMERATE_BELOW:
            few[i] = uniq
    return few


def _distinct_ids(sdf: DataFrame, unit_id: str, kind: str, dtype: Any, lo: Any, hi: Any) -> int:
    """The exact number of distinct valid ids (of the column as stored, not cast to double).

    Integer ids whose range ``hi - lo`` (the valid minimum and maximum) is at most
    ``_BITMAP_RANGE`` are counted with Spark's bitmap aggregates (one small bitmap per 32,768
    consecutive ids, merged across tasks: about 1.5x faster than ``distinct()`` at 1M ids);
    others with ``distinct()``.
    """
    from pyspark.sql import functions as F

    q = sql_identifier(unit_id)
    valid = sdf.where(_valid_sql(_value_sql(unit_id, kind), kind))
    if type(dtype).__name__ in _INTEGRAL and lo is not None and hi - lo <= _BITMAP_RANGE:
        total = (
            valid.groupBy(F.expr(f"bitmap_bucket_number({q})"))
            .agg(F.expr(f"bitmap_count(bitmap_construct_agg(bitmap_bit_position({q}))) AS c"))
            .selectExpr("sum(c) AS n")
            .first()
        )
        return int(total["n"] or 0)
    return int(valid.select(_col(unit_id)).distinct().count())


def spark_column_stats(sdf: DataFrame, roles: Roles, *, fold_col: str | None = None) -> TableStats:
    """Summary statistics of the used columns of a Spark DataFrame, in two passes over it.

    The result equals :func:`mlearner_dist.core.validation.pandas_column_stats` on the same data
    (except the informative ``dtype``).

    Parameters
    ----------
    sdf : pyspark.sql.DataFrame
        The units table (n rows).
    roles : Roles
    fold_col : str, optional
        A column of ``sdf`` holding each row's fold; when given, categories of string covariates
        seen in a single fold are recorded.

    Returns
    -------
    TableStats

    Raises
    ------
    ConfigError
        If ``roles`` is not a :class:`Roles`.
    InputValidationError
        If ``sdf`` has duplicated column names or ``fold_col`` is not one of its columns.
    """
    from pyspark.sql import functions as F

    check_roles(roles)
    columns = tuple(sdf.columns)
    check_unique_columns(columns)
    if fold_col is not None and fold_col not in columns:
        raise InputValidationError([f"fold_col {fold_col!r}: no such column in the table"])
    dtypes = {f.name: f.dataType for f in sdf.schema.fields}
    present = {c: r for c, r in used_roles(roles).items() if c in dtypes}
    kinds = {c: _spark_kind(dtypes[c]) for c in present}
    names = list(present)

    # Project each used column once to its value and validity flag (and the index of the first
    # invalid column per row), then aggregate over plain columns: the plan stays linear in the
    # number of columns (nested validity expressions made Spark's code generation quadratic).
    # Expressions are SQL text: a handful of calls to the JVM instead of several per operator.
    base = sdf.selectExpr(*[f"{_value_sql(c, kinds[c])} AS v{i}" for i, c in enumerate(names)])
    oks = [f"{_valid_sql(f'v{i}', kinds[c])} AS ok{i}" for i, c in enumerate(names)]
    cases = " ".join(f"WHEN NOT ok{i} THEN {i}" for i in range(len(names)))
    base = base.selectExpr("*", *oks).selectExpr(
        "*", f"CASE {cases} ELSE -1 END AS first_bad" if names else "-1 AS first_bad"
    )

    # Columns with few values in the first rows: the first aggregation counts the valid values
    # outside that set; where there are none, the set is the column's exact set of values.
    first_values = _first_rows_values(
        base, {i: kinds[c] for i, c in enumerate(names) if kinds[c] != "other"}
    )
    outside: dict[int, str] = {}
    string_sets: dict[str, Column] = {}
    for i, values in first_values.items():
        if not values:
            outside[i] = "TRUE"
        elif kinds[names[i]] == "string":  # literals through the API: no SQL quoting of text
            string_sets[f"out{i}"] = ~F.col(f"v{i}").isin(*values)
            outside[i] = f"out{i}"
        else:
            outside[i] = f"NOT (v{i} IN ({', '.join(_double_literal(v) for v in values)}))"
    if string_sets:
        base = base.withColumns(string_sets)

    # --- aggregation 1: counts, extremes, values outside the first rows' ---------------------
    aggs = ["count(1) AS n_rows"]
    for i, c in enumerate(names):
        kind, v, ok = kinds[c], f"v{i}", f"ok{i}"
        aggs.append(f"count_if(first_bad = {i}) AS c{i}_first_bad")
        if kind in ("numeric", "boolean"):
            aggs += [
                f"count_if({v} IS NULL OR isnan({v})) AS c{i}_null",
                f"count_if({v} IN ({_INFINITIES})) AS c{i}_inf",
                f"min(IF({ok}, {v}, NULL)) AS c{i}_min",
                f"max(IF({ok}, {v}, NULL)) AS c{i}_max",
            ]
        else:
            aggs.append(f"count_if({v} IS NULL) AS c{i}_null")
        if kind == "string":
            bad = f"({v} IS NOT NULL AND try_cast({v} AS DOUBLE) IS NULL)"
            aggs += [
                f"count_if({bad}) AS c{i}_unparse",
                f"min(IF({bad}, {v}, NULL)) AS c{i}_example",
            ]
        if i in outside:
            aggs.append(f"count_if({ok} AND {outside[i]}) AS c{i}_outside")
    if kinds.get(roles.treatment) in ("numeric", "boolean"):
        t = f"v{names.index(roles.treatment)}"
        aggs += [f"count_if({t} = 1.0D) AS n_treated", f"count_if({t} = 0.0D) AS n_control"]
    row1 = base.selectExpr(*aggs).collect()[0].asDict()
    if roles.unit_id in present:
        j, c = names.index(roles.unit_id), roles.unit_id
        row1["n_ids"] = _distinct_ids(
            sdf, c, kinds[c], dtypes[c], row1.get(f"c{j}_min"), row1.get(f"c{j}_max")
        )

    # Where a value lies outside the first rows' set (a table ordered by that column, say), the
    # column is sketched (HyperLogLog: an imperative aggregate, outside code generation, so
    # only here) and enumerated when the sketch is small.
    exact: dict[str, list[Any]] = {}
    unsure: list[int] = []
    for i, values in first_values.items():
        if row1[f"c{i}_outside"] == 0:
            exact[names[i]] = values
        else:
            unsure.append(i)
    if unsure:
        sketch = base.selectExpr(
            *[f"approx_count_distinct(IF(ok{i}, v{i}, NULL), 0.05) AS c{i}_approx" for i in unsure]
        ).collect()[0]
        unsure = [i for i in unsure if sketch[f"c{i}_approx"] <= _ENUMERATE_BELOW]

    # --- aggregation 2: values of the unsure small columns, category-fold pairs ---------------
    exprs2: list[Column] = []
    for i, c in enumerate(names):
        kind = kinds[c]
        pairs = (
            fold_col is not None
            and kind == "string"
            and present[c] == "covariate"
            and (i in unsure or c in exact)
        )
        if i not in unsure and not pairs:
            continue
        ok = _valid_expr(c, kind)
        if i in unsure:
            exprs2.append(F.collect_set(F.when(ok, _value_expr(c, kind))).alias(f"c{i}_set"))
        if pairs:
            pair = F.struct(_col(c).alias("v"), _col(fold_col).alias("f"))
            exprs2.append(F.collect_set(F.when(ok, pair)).alias(f"c{i}_pairs"))
    row2 = sdf.agg(*exprs2).collect()[0].asDict() if exprs2 else {}

    stats: dict[str, ColumnStats] = {}
    removable: dict[str, int] = {}
    single: dict[str, tuple[str, ...]] = {}
    n_rows = int(row1["n_rows"])
    for i, (c, role) in enumerate(present.items()):
        kind = kinds[c]
        removable[c] = int(row1[f"c{i}_first_bad"])
        collected = row2.get(f"c{i}_set")
        if kind == "other":
            uniq: list[Any] = []
        elif c in exact:
            uniq = list(exact[c])
        elif collected is None:
            uniq = [None] * (DISTINCT_LIMIT + 1)
        elif kind == "string":
            uniq = sorted(str(v) for v in collected)
        else:
            uniq = sorted({float(v) for v in collected})
        n_distinct, values = distinct_summary(kind, uniq)
        lo = row1.get(f"c{i}_min") if kind in ("numeric", "boolean") else None
        hi = row1.get(f"c{i}_max") if kind in ("numeric", "boolean") else None
        stats[c] = ColumnStats(
            name=c,
            role=role,
            kind=kind,
            n=n_rows,
            n_null=int(row1[f"c{i}_null"]),
            n_nonfinite=int(row1.get(f"c{i}_inf", 0)),
            n_distinct=n_distinct,
            min=None if lo is None else float(lo),
            max=None if hi is None else float(hi),
            values=values,
            n_unparseable=int(row1.get(f"c{i}_unparse", 0)),
            example_unparseable=row1.get(f"c{i}_example"),
            dtype=dtypes[c].simpleString(),
        )
        pairs = row2.get(f"c{i}_pairs")
        if pairs is not None and n_distinct <= DISTINCT_LIMIT:
            folds_of: dict[str, set[Any]] = {}
            for p in pairs:
                folds_of.setdefault(str(p["v"]), set()).add(p["f"])
            single[c] = tuple(sorted(v for v, f in folds_of.items() if len(f) == 1))
    return TableStats(
        n_rows=n_rows,
        n_distinct_ids=int(row1.get("n_ids", 0)),
        columns=columns,
        stats=stats,
        n_treated=None if "n_treated" not in row1 else int(row1["n_treated"]),
        n_control=None if "n_control" not in row1 else int(row1["n_control"]),
        n_removable=removable,
        single_fold_categories=single,
    )


def validate_spark_frame(
    sdf: DataFrame,
    roles: Roles,
    *,
    min_treated: int = 20,
    min_control: int = 20,
    n_folds: int = 5,
    missing: MissingPolicy = "error",
    fold_col: str | None = None,
) -> tuple[DataFrame, RowAccount]:
    """Check a Spark DataFrame against the roles; return the clean frame and its row account.

    The Spark twin of :func:`mlearner_dist.core.validation.validate_frame`: the same checks and
    messages, from :func:`spark_column_stats` (two passes; two more after dropping rows).

    Parameters
    ----------
    sdf : pyspark.sql.DataFrame
    roles : Roles
    min_treated, min_control : int, default 20
        Minimum numbers of treated and control units (after any removal).
    n_folds : int, default 5
    missing : {"error", "drop"}, default "error"
        ``"drop"`` filters out rows with a missing or infinite value in a used column, recorded
        under ``missing:<column>``.
    fold_col : str, optional
        Fold column, to warn about categories seen in a single fold.

    Returns
    -------
    clean : pyspark.sql.DataFrame
        The kept rows (lazy); a boolean treatment becomes long 0/1.
    account : RowAccount

    Raises
    ------
    InputValidationError
        Listing every problem found.
    ConfigError
        Invalid parameters.

    Warns
    -----
    CategoryFoldWarning
        A category of a categorical covariate is seen in a single fold.
    """
    from pyspark.sql import DataFrame as SparkDataFrame

    check_validation_params(min_treated, min_control, n_folds, missing)
    if not isinstance(sdf, SparkDataFrame):
        raise ConfigError(f"sdf must be a Spark DataFrame, found {type(sdf).__name__}")

    def drop_invalid(frame: DataFrame, stats: TableStats) -> DataFrame:
        keep = None
        for c in used_roles(roles):
            ok = _valid_expr(c, stats.stats[c].kind)
            keep = ok if keep is None else keep & ok
        return frame.filter(keep)

    clean, stats, account = apply_checks(
        sdf,
        roles,
        stats_of=lambda frame: spark_column_stats(frame, roles, fold_col=fold_col),
        drop_invalid=drop_invalid,
        min_treated=min_treated,
        min_control=min_control,
        n_folds=n_folds,
        missing=missing,
    )
    if stats.stats[roles.treatment].kind == "boolean":
        clean = clean.withColumn(roles.treatment, _col(roles.treatment).cast("long"))
    return clean, account
