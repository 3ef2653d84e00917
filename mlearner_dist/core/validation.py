"""Input checks against the column roles, and the row account that travels with the data.

Validation is split in two so that the same checks run on pandas and on Spark without collecting
the rows:

1. summary statistics per used column (:class:`ColumnStats`) and per table (:class:`TableStats`),
   computed by :func:`~mlearner_dist.core.column_stats.pandas_column_stats` or by
   :func:`mlearner_dist.backends.spark_validation.spark_column_stats` with two Spark aggregations;
2. the pure :func:`check_table`, which turns the statistics into one line per problem (the
   column, its role, what was found, what to do).

:func:`validate_frame` runs both on a pandas frame, raises :class:`InputValidationError` listing
every problem at once, and returns the clean frame with its
:class:`~mlearner_dist.core.row_account.RowAccount`; :func:`apply_checks` is that flow for any
engine.

Conventions shared by both engines
----------------------------------
- ``kind`` of a column: ``numeric`` (integers, floats, decimals), ``boolean``, ``string`` (text
  and categorical) or ``other`` (dates, binary, nested types). Boolean values count as 0/1.
- ``n_null`` counts missing values: null, None and NaN (pandas cannot tell NaN from missing in a
  float column, so neither do we). ``n_nonfinite`` counts +-inf. Both are "missing" for the
  ``missing="drop"`` policy.
- ``n_distinct`` counts distinct finite (numeric) or non-null values exactly up to
  :data:`DISTINCT_LIMIT`; ``DISTINCT_LIMIT + 1`` means "more than that".
- With ``missing="drop"`` each removed row is counted once, under ``missing:<column>`` for the
  first used column (in :attr:`Roles.used_columns` order) where it has a missing or infinite
  value.
"""

from __future__ import annotations

import difflib
import logging
import warnings
from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar

import numpy as np
import pandas as pd

from mlearner_dist.core.column_stats import (
    DISTINCT_LIMIT,
    ColumnStats,
    TableStats,
    as_float_array,
    pandas_column_stats,
    role_assignments,
    series_stats,
    used_roles,
)
from mlearner_dist.core.roles import Roles
from mlearner_dist.core.row_account import RowAccount
from mlearner_dist.exceptions import ConfigError, FewClustersWarning, InputValidationError

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Role names used in messages.
ROLE_LABELS = {
    "unit_id": "unit id",
    "treatment": "treatment",
    "mediator": "mediator",
    "outcome": "outcome",
    "covariate": "covariate",
    "stratum": "stratum",
    "cluster": "cluster",
    "weight": "weight",
}
NUMERIC_ROLES = ("treatment", "mediator", "outcome", "weight")
#: Below this many clusters in an arm a cluster-randomised analysis warns (FewClustersWarning).
MIN_CLUSTERS_PER_ARM = 10
MissingPolicy = Literal["error", "drop"]


class CategoryFoldWarning(UserWarning):
    """A category of a categorical covariate occurs in one cross-fitting fold only.

    When that fold is held out, the nuisance models were trained without the category.
    """


def check_validation_params(min_treated: int, min_control: int, n_folds: int, missing: str) -> None:
    """Raise ConfigError unless the counts are integers >= 1 and ``missing`` is error or drop."""
    for name, value, low in (
        ("min_treated", min_treated, 1),
        ("min_control", min_control, 1),
        ("n_folds", n_folds, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ConfigError(f"{name}={value!r}: must be an integer >= {low}")
    if missing not in ("error", "drop"):
        raise ConfigError(f"missing={missing!r}: choose 'error' or 'drop'")


# --- checks ---------------------------------------------------------------------------------


def _label(col: str, role: str) -> str:
    return f"{col} ({ROLE_LABELS.get(role, role)})"


def _fmt_values(values: tuple[Any, ...] | None, n_distinct: int, limit: int = 10) -> str:
    if values is None:
        more = "more than" if n_distinct > DISTINCT_LIMIT else ""
        return f"{more} {min(n_distinct, DISTINCT_LIMIT)} distinct values".strip()
    shown = [f"{v:g}" if isinstance(v, float) else repr(v) for v in values[:limit]]
    tail = ", ..." if len(values) > limit else ""
    return "[" + ", ".join(shown) + tail + "]"


def _only_value(st: ColumnStats) -> str:
    v = st.values[0] if st.values else "?"
    return f"{v:g}" if isinstance(v, float) else repr(v)


def _suggest(name: str, columns: tuple[str, ...]) -> str:
    by_lower = {c.lower(): c for c in columns}
    if name.lower() in by_lower:
        return f"; did you mean {by_lower[name.lower()]!r} (case differs)?"
    close = difflib.get_close_matches(name, list(columns), n=1, cutoff=0.6)
    if close:
        return f"; did you mean {close[0]!r}?"
    shown = ", ".join(columns[:15]) + (", ..." if len(columns) > 15 else "")
    return f"; the table has: {shown}" if columns else "; the table has no columns"


def check_table(
    stats: TableStats,
    roles: Roles,
    *,
    min_treated: int,
    min_control: int,
    n_folds: int,
    missing: MissingPolicy = "error",
) -> list[str]:
    """Every problem of a table with respect to the roles, one line each.

    Pure: works from :class:`TableStats` alone, so it serves pandas and Spark alike. Each line
    names the column and its role, what was found, and what to do.

    Checks: columns named in two roles; missing or misnamed columns (with the closest existing
    name); an empty table or a single row; fewer units than folds; missing or infinite values in
    used columns (not errors with ``missing="drop"``: those rows are removed and counted, unless a
    column is entirely missing); text in the treatment, mediator or outcome; unsupported column
    types; a treatment not coded 0/1 or with one value only; fewer treated or control units than
    the minimum; constant covariates; a mediator or outcome with no variance; duplicated unit
    ids. Strata (``roles.strata``) are checked for both arms by :func:`strata_problems`, which
    needs the rows.

    Parameters
    ----------
    stats : TableStats
    roles : Roles
    min_treated, min_control : int
        Minimum numbers of treated (T=1) and control (T=0) units, >= 1.
    n_folds : int
        Cross-fitting folds; the table needs at least this many units.
    missing : {"error", "drop"}, default "error"
        Whether missing values are errors or rows to drop.

    Returns
    -------
    list of str
        Empty when the table can be analysed.

    Raises
    ------
    ConfigError
        Invalid parameters.
    """
    check_validation_params(min_treated, min_control, n_folds, missing)
    if not isinstance(stats, TableStats):
        raise ConfigError(f"stats must be a TableStats, found {type(stats).__name__}")
    problems: list[str] = []
    seen: dict[str, str] = {}
    for col, role in role_assignments(roles):
        if col in seen:
            problems.append(
                f"{col}: named as {ROLE_LABELS[seen[col]]} and as {ROLE_LABELS[role]}; a column "
                "can play one role only: fix the column roles"
            )
        else:
            seen[col] = role
    for col, role in seen.items():
        if col not in stats.stats:
            problems.append(
                f"{_label(col, role)}: no such column in the table{_suggest(col, stats.columns)}"
            )
    n = stats.n_rows
    if n == 0:
        problems.append("the table is empty (0 rows): check data.source and any filter applied")
        return problems
    if n == 1:
        problems.append("the table has a single row: the method needs many units (one per row)")
    elif n < n_folds:
        problems.append(
            f"the table has {n} rows, fewer than the {n_folds} cross-fitting folds: add units or "
            "lower effects.n_folds"
        )
    for col, st in stats.stats.items():
        role = seen.get(col, st.role)
        problems.extend(_column_problems(st, role, missing))
    problems.extend(_treatment_problems(stats, roles, min_treated, min_control))
    idst = stats.stats.get(roles.unit_id)
    if idst is not None:
        n_dup = idst.n - idst.n_null - idst.n_nonfinite - stats.n_distinct_ids
        if n_dup > 0:
            problems.append(
                f"{_label(roles.unit_id, 'unit_id')}: {n_dup} rows repeat an id already seen "
                f"({stats.n_distinct_ids} distinct ids in {idst.n_valid} rows): one row per "
                "unit is required; make the ids unique or aggregate the duplicates"
            )
    return problems


def _column_problems(st: ColumnStats, role: str, missing: str) -> list[str]:
    out: list[str] = []
    label = _label(st.name, role)
    if st.n_valid == 0:
        out.append(
            f"{label}: all {st.n} values are missing or infinite: fill the column or remove it "
            "from the roles"
        )
        return out
    if (st.n_null or st.n_nonfinite) and missing == "error":
        found = []
        if st.n_null:
            found.append(f"{st.n_null} missing (null/NaN)")
        if st.n_nonfinite:
            found.append(f"{st.n_nonfinite} infinite")
        out.append(
            f"{label}: {' and '.join(found)} values out of {st.n}: fill or remove those rows, or "
            "set data.missing: drop to drop them (they are counted in the row account)"
        )
    if st.kind == "other":
        out.append(
            f"{label}: type {st.dtype or 'unsupported'} is neither numeric nor text: convert it "
            "to a number or a category"
        )
        return out
    if role in NUMERIC_ROLES and st.kind == "string":
        if st.n_unparseable == 0:
            out.append(
                f"{label}: stored as text although every value is a number: cast the column to "
                "a numeric type"
            )
        else:
            out.append(
                f"{label}: {st.n_unparseable} text values are not numbers (e.g. "
                f"{st.example_unparseable!r}); the {ROLE_LABELS[role]} must be numeric: recode it"
            )
        return out
    if role == "covariate" and st.n_distinct == 1:
        out.append(
            f"{label}: constant (every value is {_only_value(st)}): it cannot "
            "explain heterogeneity; remove it from the covariates"
        )
    if role in ("mediator", "outcome") and st.n_distinct == 1:
        out.append(
            f"{label}: no variance (every value is {_only_value(st)}): check the "
            "column; a constant cannot carry an effect"
        )
    return out


def _treatment_problems(
    stats: TableStats, roles: Roles, min_treated: int, min_control: int
) -> list[str]:
    st = stats.stats.get(roles.treatment)
    if st is None or st.n_valid == 0 or st.kind not in ("numeric", "boolean"):
        return []
    label = _label(roles.treatment, "treatment")
    binary = st.values is not None and set(st.values) <= {0.0, 1.0}
    if not binary:
        return [
            f"{label}: must be coded 0/1, found {_fmt_values(st.values, st.n_distinct)}: recode "
            "it as 0 (control) and 1 (treated)"
        ]
    if st.n_distinct == 1:
        arm = "treated (1)" if st.values == (1.0,) else "control (0)"
        return [
            f"{label}: every unit is {arm}: both arms are needed to estimate an effect; check "
            "the column and any filter applied"
        ]
    out = []
    if stats.n_treated is not None and stats.n_treated < min_treated:
        out.append(
            f"{label}: {stats.n_treated} treated units (T=1), fewer than the minimum "
            f"{min_treated}: add units or lower validation.min_treated"
        )
    if stats.n_control is not None and stats.n_control < min_control:
        out.append(
            f"{label}: {stats.n_control} control units (T=0), fewer than the minimum "
            f"{min_control}: add units or lower validation.min_control"
        )
    return out


def table_warnings(stats: TableStats) -> list[str]:
    """Risky-but-valid findings, one line each (categories seen in a single fold).

    Parameters
    ----------
    stats : TableStats

    Returns
    -------
    list of str
    """
    out = []
    for col, cats in stats.single_fold_categories.items():
        if cats:
            shown = ", ".join(repr(c) for c in cats[:10]) + (", ..." if len(cats) > 10 else "")
            out.append(
                f"{col} (covariate): {len(cats)} "
                f"{'category occurs' if len(cats) == 1 else 'categories occur'} in one "
                "cross-fitting fold only "
                f"({shown}); models that predict that fold never saw them: merge rare categories"
            )
    return out


def _emit_warnings(stats: TableStats) -> list[str]:
    msgs = table_warnings(stats)
    for msg in msgs:
        logger.warning(msg)
        warnings.warn(msg, CategoryFoldWarning, stacklevel=3)
    return msgs


def removal_reasons(stats: TableStats) -> dict[str, int]:
    """Rows that ``missing="drop"`` removes, by reason ``missing:<column>`` (non-zero only).

    Parameters
    ----------
    stats : TableStats

    Returns
    -------
    dict of str to int
    """
    return {f"missing:{c}": k for c, k in stats.n_removable.items() if k > 0}


def _mixed_id_problems(df: pd.DataFrame, roles: Roles) -> list[str]:
    """An object id column that mixes text and numbers (they cannot be ordered or matched)."""
    if not isinstance(roles, Roles) or not isinstance(df, pd.DataFrame):
        return []  # reported by pandas_column_stats
    col = roles.unit_id
    if col not in df.columns or not pd.api.types.is_object_dtype(df[col].dtype):
        return []
    values = df[col].dropna()
    is_text = values.map(lambda v: isinstance(v, (str, bytes)))
    if is_text.all() or not is_text.any():
        return []
    example = values[is_text].iloc[0]
    return [
        f"{_label(col, 'unit_id')}: mixes text ({int(is_text.sum())} values, e.g. {example!r}) "
        f"and numbers ({int((~is_text).sum())} values): store every id as one type (all text or "
        "all integers)"
    ]


def strata_problems(df: pd.DataFrame, roles: Roles) -> list[str]:
    """Problems of the randomisation strata: each stratum must hold treated and control units.

    A stratum is one combination of the values of ``roles.strata``. Within a stratum the
    assignment probability is the stratum's treated share and null replicates permute the
    treatment inside it, so a stratum with a single arm has no usable contrast.

    Parameters
    ----------
    df : DataFrame of shape (n, p)
        Rows with the treatment (0/1) and the stratum columns present and without missing
        values (absent or missing columns are reported by :func:`check_table`).
    roles : Roles

    Returns
    -------
    list of str
        One line per stratum with a single arm (empty without strata).
    """
    strata = list(roles.strata)
    if not strata or any(c not in df.columns for c in (*strata, roles.treatment)):
        return []
    t = pd.to_numeric(df[roles.treatment], errors="coerce")
    counts = (
        pd.DataFrame({"__t": t})
        .join(df[strata])
        .groupby(strata, dropna=True, observed=True)["__t"]
        .agg(["size", "sum"])
    )
    problems: list[str] = []
    for key, row in counts.iterrows():
        n, n1 = int(row["size"]), int(row["sum"])
        if 0 < n1 < n:
            continue
        values = key if isinstance(key, tuple) else (key,)
        where = ", ".join(f"{c}={v!r}" for c, v in zip(strata, values, strict=True))
        arm = "treated" if n1 == n else "control"
        problems.append(
            f"stratum column(s) {strata} (stratum): stratum {where} has {n} units, all {arm}; "
            "every stratum needs treated and control units: merge it with a neighbouring "
            "stratum, drop its rows, or remove the column from columns.strata"
        )
    return problems


def design_problems(df: pd.DataFrame, roles: Roles) -> list[str]:
    """Problems of the cluster and weight columns that need the rows (empty list: fine).

    Cluster (``roles.cluster``): every cluster must hold one arm only (a cluster-randomised
    trial assigns the treatment to whole clusters), each arm needs at least two clusters (a
    cluster-robust variance needs them), and with strata every cluster must lie in one stratum
    (the clusters are randomised within strata). Weight (``roles.weight``): every weight must be
    positive (missing and infinite values are reported by :func:`check_table`).

    Parameters
    ----------
    df : DataFrame of shape (n, p)
        Rows with the treatment (0/1) and the named columns present and without missing values.
    roles : Roles

    Returns
    -------
    list of str
        One line per problem, naming the column, what was found and what to do.
    """
    problems: list[str] = []
    if roles.weight and roles.weight in df.columns:
        w = pd.to_numeric(df[roles.weight], errors="coerce").to_numpy(dtype=float)
        bad = np.isfinite(w) & (w <= 0)
        if bad.any():
            problems.append(
                f"column {roles.weight!r} (weight): {int(bad.sum())} weights are zero or "
                f"negative (e.g. {float(w[bad][0])!r}); analysis weights must be positive: fix "
                "them, drop those rows, or leave columns.weight empty"
            )
    c = roles.cluster
    if not c or any(col not in df.columns for col in (c, roles.treatment)):
        return problems
    t = pd.to_numeric(df[roles.treatment], errors="coerce")
    by = pd.DataFrame({"t": t.to_numpy(), "c": df[c].to_numpy()}).groupby("c", sort=True)["t"]
    lo, hi = by.min(), by.max()
    mixed = lo.index[(lo != hi).to_numpy()]
    if len(mixed):
        problems.append(
            f"column {c!r} (cluster): {len(mixed)} of {len(lo)} clusters hold both treated and "
            f"control units (e.g. {[v for v in mixed[:3]]}); in a cluster-randomised trial all "
            "units of a cluster share the treatment: check the cluster column and the treatment, "
            "or leave columns.cluster empty if units were randomised individually"
        )
        return problems
    n1 = int((lo == 1).sum())
    n0 = int((lo == 0).sum())
    if min(n0, n1) < 2:
        problems.append(
            f"column {c!r} (cluster): {n1} treated and {n0} control clusters; a cluster-"
            "randomised analysis needs at least 2 clusters per arm (10 or more for reliable "
            "cluster-robust intervals): add clusters or leave columns.cluster empty"
        )
    if roles.strata and all(s in df.columns for s in roles.strata):
        spans = df.groupby(c, sort=True)[list(roles.strata)].nunique(dropna=False).max(axis=1)
        bad_c = spans.index[(spans > 1).to_numpy()]
        if len(bad_c):
            problems.append(
                f"columns {c!r} (cluster) and {list(roles.strata)} (stratum): {len(bad_c)} "
                f"clusters span several strata (e.g. {[v for v in bad_c[:3]]}); clusters are "
                "randomised within strata, so every cluster must lie in one stratum: use "
                "cluster-level strata or leave one of columns.cluster, columns.strata empty"
            )
    return problems


def cluster_warnings(df: pd.DataFrame, roles: Roles) -> list[str]:
    """Risky but valid cluster designs: fewer than :data:`MIN_CLUSTERS_PER_ARM` per arm."""
    c = roles.cluster
    if not c or any(col not in df.columns for col in (c, roles.treatment)):
        return []
    arm = pd.DataFrame({"t": df[roles.treatment].to_numpy(), "c": df[c].to_numpy()})
    per_arm = arm.groupby("c", sort=True)["t"].first().value_counts()
    n1, n0 = int(per_arm.get(1, 0)), int(per_arm.get(0, 0))
    if min(n0, n1) >= MIN_CLUSTERS_PER_ARM:
        return []
    return [
        f"column {c!r} (cluster): {n1} treated and {n0} control clusters, fewer than "
        f"{MIN_CLUSTERS_PER_ARM} in an arm: cluster-robust standard errors and tests are "
        "anti-conservative with so few clusters; read intervals and p-values with care"
    ]


def apply_checks(
    table: T,
    roles: Roles,
    *,
    stats_of: Callable[[T], TableStats],
    drop_invalid: Callable[[T, TableStats], T],
    min_treated: int,
    min_control: int,
    n_folds: int,
    missing: MissingPolicy,
    extra_problems: Sequence[str] = (),
) -> tuple[T, TableStats, RowAccount]:
    """The validation flow shared by every engine: check, refuse or drop and count, re-check.

    1. ``stats = stats_of(table)``; every problem (:func:`check_table`, plus ``extra_problems``)
       is raised at once, before any work;
    2. with ``missing="drop"``, the rows with a missing or infinite value in a used column are
       removed by ``drop_invalid(table, stats)`` and counted by reason in the row account; the
       kept table is checked again (sizes may now be too small) and the account must match its
       row count;
    3. the warnings (:func:`table_warnings`) are emitted.

    Parameters
    ----------
    table : a pandas or Spark DataFrame
    roles : Roles
    stats_of : callable
        ``stats_of(table) -> TableStats`` (:func:`pandas_column_stats` or the Spark twin).
    drop_invalid : callable
        ``drop_invalid(table, stats) -> table`` without the rows that have an invalid value.
    min_treated, min_control, n_folds, missing
        As in :func:`validate_frame`.
    extra_problems : sequence of str
        Engine-specific problems found beforehand (reported with the others).

    Returns
    -------
    clean : the kept table
    stats : TableStats of ``clean``
    account : RowAccount
    """
    check_validation_params(min_treated, min_control, n_folds, missing)
    stats = stats_of(table)
    kw = {"min_treated": min_treated, "min_control": min_control, "n_folds": n_folds}
    problems = check_table(stats, roles, missing=missing, **kw)
    problems.extend(extra_problems)
    if problems:
        raise InputValidationError(problems)
    account = RowAccount(stats.n_rows)
    clean = table
    reasons = removal_reasons(stats)
    if missing == "drop" and reasons:
        clean = drop_invalid(table, stats)
        for reason, count in reasons.items():
            account.remove(reason, count)
        stats = stats_of(clean)
        account.check("validate (drop missing)", stats.n_rows)
        after = check_table(stats, roles, missing="error", **kw)
        if after:
            removed = sum(reasons.values())
            raise InputValidationError(
                [f"{p} (after dropping {removed} rows with missing values)" for p in after]
            )
        logger.info("validate: dropped %s", reasons)
    _emit_warnings(stats)
    logger.info(
        "validate: %d rows in, %d used, removed %s",
        account.n_input,
        account.n_used,
        account.removed or "none",
    )
    return clean, stats, account


def validate_frame(
    df: pd.DataFrame,
    roles: Roles,
    *,
    min_treated: int = 20,
    min_control: int = 20,
    n_folds: int = 5,
    missing: MissingPolicy = "error",
    folds: np.ndarray | pd.Series | None = None,
) -> tuple[pd.DataFrame, RowAccount]:
    """Check a pandas frame against the roles; return the clean frame and its row account.

    Parameters
    ----------
    df : DataFrame of shape (n, p)
    roles : Roles
    min_treated, min_control : int, default 20
        Minimum numbers of treated and control units (after any removal).
    n_folds : int, default 5
        Cross-fitting folds.
    missing : {"error", "drop"}, default "error"
        ``"drop"`` removes rows with a missing or infinite value in a used column and records
        them in the account under ``missing:<column>``.
    folds : array-like of shape (n,), optional
        Fold label per row, to warn about categories seen in one fold only.

    Returns
    -------
    clean : DataFrame of shape (n_used, p)
        The kept rows with a fresh 0..n_used-1 index; a boolean treatment becomes int 0/1.
    account : RowAccount

    Raises
    ------
    InputValidationError
        Listing every problem found (see :func:`check_table`).
    ConfigError
        Invalid parameters.

    Warns
    -----
    CategoryFoldWarning
        A category of a categorical covariate is seen in a single fold.
    """
    check_validation_params(min_treated, min_control, n_folds, missing)
    # the fold labels of the rows currently checked (the kept ones after a drop)
    current_folds = [None if folds is None else np.asarray(folds)]

    def stats_of(frame: pd.DataFrame) -> TableStats:
        return pandas_column_stats(frame, roles, folds=current_folds[0])

    def drop_invalid(frame: pd.DataFrame, stats: TableStats) -> pd.DataFrame:
        keep = np.ones(len(frame), dtype=bool)
        for col, role in used_roles(roles).items():
            keep &= series_stats(frame[col], col, role)[1]
        if current_folds[0] is not None:
            current_folds[0] = current_folds[0][keep]
        return frame.loc[keep]

    clean, stats, account = apply_checks(
        df,
        roles,
        stats_of=stats_of,
        drop_invalid=drop_invalid,
        min_treated=min_treated,
        min_control=min_control,
        n_folds=n_folds,
        missing=missing,
        extra_problems=_mixed_id_problems(df, roles),
    )
    clean = clean.reset_index(drop=True)
    t = stats.stats[roles.treatment]
    if t.kind == "boolean" or pd.api.types.is_object_dtype(clean[roles.treatment].dtype):
        clean[roles.treatment] = as_float_array(clean[roles.treatment], t.kind).astype(np.int64)
    problems = strata_problems(clean, roles) + design_problems(clean, roles)
    if problems:
        raise InputValidationError(problems)
    for msg in cluster_warnings(clean, roles):
        warnings.warn(msg, FewClustersWarning, stacklevel=2)
    return clean, account


__all__ = [
    "CategoryFoldWarning",
    "MissingPolicy",
    "apply_checks",
    "check_table",
    "check_validation_params",
    "cluster_warnings",
    "design_problems",
    "removal_reasons",
    "strata_problems",
    "table_warnings",
    "validate_frame",
]
