"""Input validation on Spark: the statistics of :mod:`mlearner_dist.core.validation` by aggregation.

:func:`spark_column_stats` computes the same :class:`~mlearner_dist.core.validation.TableStats` as
:func:`~mlearner_dist.core.validation.pandas_column_stats` with two aggregations and no collect of
rows: the first counts rows, missing and infinite values, treated and control units, exact
distinct ids, per-column minima and maxima, approximate distinct counts and strings that do not
parse as numbers; the second collects the distinct values (and category-fold pairs) of the
columns whose approximate distinct count is small. Only DataFrame API calls are used, so the code
also runs on Spark Connect and Databricks serverless.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

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
# Rows read (the first ones Spark returns) to rule columns out of the HyperLogLog sketch: a column
# with more than _ENUMERATE_BELOW distinct valid values among them has more in the table, which is
# all the sketch is asked; only the others are sketched (an imperative aggregate, evaluated row by
# row outside code generation: at 1M rows and 14 columns it cost as much as all other statistics).
_SAMPLE_ROWS = 10_000


def _col(name: str) -> Column:
    from pyspark.sql import functions as F

    return F.col("`" + name.replace("`", "``") + "`")


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


def _value_expr(name: str, kind: str) -> Column:
    """The column as Spark sees it for statistics: double for numeric and boolean kinds."""
    c = _col(name)
    return c.cast("double") if kind in ("numeric", "boolean") else c


def _valid_expr(name: str, kind: str) -> Column:
    """True where the column holds a usable value (non-null, not NaN, finite)."""
    from pyspark.sql import functions as F

    c = _col(name)
    if kind in ("numeric", "boolean"):
        x = c.cast("double")
        inf = [F.lit(float("inf")), F.lit(float("-inf"))]
        return x.isNotNull() & ~F.isnan(x) & ~x.isin(*inf)
    return c.isNotNull()


def _columns_to_sketch(sdf: DataFrame, present: dict[str, str], kinds: dict[str, str]) -> set[str]:
    """The columns whose distinct count the first aggregation must estimate.

    Those of kind ``"other"`` are never counted. Of the rest, a column with more than
    ``_ENUMERATE_BELOW`` distinct valid values among the first ``_SAMPLE_ROWS`` rows is certain
    to have more in the whole table, so it needs no sketch and is not enumerated (exactly what a
    sketch above the bound decides). Reading those rows is bounded on the driver whatever n.
    """
    countable = [c for c in present if kinds[c] != "other"]
    if not countable:
        return set()
    names = [f"s{i}" for i in range(len(countable))]
    head = (
        sdf.select(
            *[_value_expr(c, kinds[c]).alias(a) for c, a in zip(countable, names, strict=True)],
            *[
                _valid_expr(c, kinds[c]).alias(f"{a}_ok")
                for c, a in zip(countable, names, strict=True)
            ],
        )
        .limit(_SAMPLE_ROWS)
        .toPandas()
    )
    keep = set()
    for c, a in zip(countable, names, strict=True):
        values = head[a][head[f"{a}_ok"].astype(bool)]
        if kinds[c] in ("numeric", "boolean"):
            values = values.astype("float64") + 0.0  # -0.0 and 0.0 are one value to Spark
        if values.nunique() <= _ENUMERATE_BELOW:
            keep.add(c)
    return keep


def spark_column_stats(sdf: DataFrame, roles: Roles, *, fold_col: str | None = None) -> TableStats:
    """Summary statistics of the used columns of a Spark DataFrame, in two aggregations.

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

    sketched = _columns_to_sketch(sdf, present, kinds)

    # --- aggregation 1: counts, extremes, approximate cardinalities -------------------------
    # Project each used column once to its value and validity flag (and the index of the first
    # invalid column per row), then aggregate over plain columns: the plan stays linear in the
    # number of columns (nested validity expressions made Spark's code generation quadratic).
    proj: list[Column] = []
    for i, c in enumerate(present):
        proj += [_value_expr(c, kinds[c]).alias(f"v{i}"), _valid_expr(c, kinds[c]).alias(f"ok{i}")]
    base = sdf.select(*proj)
    first_bad: Column = F.lit(-1)
    for i in reversed(range(len(present))):
        first_bad = F.when(~F.col(f"ok{i}"), F.lit(i)).otherwise(first_bad)
    base = base.withColumn("first_bad", first_bad)
    exprs: list[Column] = [F.count(F.lit(1)).alias("n_rows")]
    for i, c in enumerate(present):
        kind = kinds[c]
        x, ok = F.col(f"v{i}"), F.col(f"ok{i}")
        exprs.append(F.count(F.when(F.col("first_bad") == i, 1)).alias(f"c{i}_first_bad"))
        if kind in ("numeric", "boolean"):
            exprs += [
                F.count(F.when(x.isNull() | F.isnan(x), 1)).alias(f"c{i}_null"),
                F.count(F.when(x.isin(float("inf"), float("-inf")), 1)).alias(f"c{i}_inf"),
                F.min(F.when(ok, x)).alias(f"c{i}_min"),
                F.max(F.when(ok, x)).alias(f"c{i}_max"),
            ]
        else:
            exprs.append(F.count(F.when(x.isNull(), 1)).alias(f"c{i}_null"))
        if kind == "string":
            bad = x.isNotNull() & x.try_cast("double").isNull()
            exprs += [
                F.count(F.when(bad, 1)).alias(f"c{i}_unparse"),
                F.min(F.when(bad, x)).alias(f"c{i}_example"),
            ]
        if c in sketched:
            exprs.append(F.approx_count_distinct(F.when(ok, x), 0.05).alias(f"c{i}_approx"))
    names = list(present)
    t_kind = kinds.get(roles.treatment)
    if t_kind in ("numeric", "boolean"):
        t = F.col(f"v{names.index(roles.treatment)}")
        exprs += [
            F.count(F.when(t == 1.0, 1)).alias("n_treated"),
            F.count(F.when(t == 0.0, 1)).alias("n_control"),
        ]
    row1 = base.agg(*exprs).collect()[0].asDict()
    if roles.unit_id in present:
        j = names.index(roles.unit_id)
        row1["n_ids"] = base.where(F.col(f"ok{j}")).select(f"v{j}").distinct().count()

    # --- aggregation 2: exact distinct values of low-cardinality columns ----------------------
    exprs2: list[Column] = []
    for i, c in enumerate(present):
        kind = kinds[c]
        if c in sketched and row1[f"c{i}_approx"] <= _ENUMERATE_BELOW:
            ok = _valid_expr(c, kind)
            exprs2.append(F.collect_set(F.when(ok, _value_expr(c, kind))).alias(f"c{i}_set"))
            if fold_col is not None and kind == "string" and present[c] == "covariate":
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
    messages, from :func:`spark_column_stats` (two aggregations; two more after dropping rows).

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
