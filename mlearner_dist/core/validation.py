"""Input checks against the column roles, and the row account that travels with the data.

Validation is split in two so that the same checks run on pandas and on Spark without collecting
the rows:

1. summary statistics per used column (:class:`ColumnStats`) and per table (:class:`TableStats`),
   computed by :func:`pandas_column_stats` here or by
   :func:`mlearner_dist.backends.spark_validation.spark_column_stats` with two Spark aggregations;
2. the pure :func:`check_table`, which turns the statistics into one line per problem (the
   column, its role, what was found, what to do).

:func:`validate_frame` runs both on a pandas frame, raises :class:`InputValidationError` listing
every problem at once, and returns the clean frame with its :class:`RowAccount`.

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
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from mlearner_dist.core.roles import Roles
from mlearner_dist.exceptions import ConfigError, InputValidationError, RowAccountError

logger = logging.getLogger(__name__)

#: Distinct values are listed in :attr:`ColumnStats.values` when there are at most this many.
MAX_LISTED_VALUES = 20
#: ``n_distinct`` is exact up to this many; ``DISTINCT_LIMIT + 1`` stands for more.
DISTINCT_LIMIT = 100
#: Role names used in messages.
ROLE_LABELS = {
    "unit_id": "unit id",
    "treatment": "treatment",
    "mediator": "mediator",
    "outcome": "outcome",
    "covariate": "covariate",
}
NUMERIC_ROLES = ("treatment", "mediator", "outcome")
MissingPolicy = Literal["error", "drop"]


class CategoryFoldWarning(UserWarning):
    """A category of a categorical covariate occurs in one cross-fitting fold only.

    When that fold is held out, the nuisance models were trained without the category.
    """


@dataclass(frozen=True)
class ColumnStats:
    """Summary of one used column, computed without collecting its rows.

    Parameters
    ----------
    name : str
        Column name.
    role : str
        ``unit_id``, ``treatment``, ``mediator``, ``outcome`` or ``covariate``.
    kind : str
        ``numeric``, ``boolean``, ``string`` or ``other``.
    n : int
        Number of rows.
    n_null : int
        Missing values (null, None, NaN).
    n_nonfinite : int
        Infinite values (numeric columns; 0 otherwise).
    n_distinct : int
        Distinct finite / non-null values, exact up to :data:`DISTINCT_LIMIT`, else
        ``DISTINCT_LIMIT + 1``. 0 for kind ``other`` (not computed).
    min, max : float or None
        Smallest and largest finite value (numeric and boolean columns), None if there is none.
    values : tuple or None
        The sorted distinct values when ``n_distinct <= MAX_LISTED_VALUES`` (floats for numeric and
        boolean columns, str for string columns), else None.
    n_unparseable : int
        Non-null values of a string column that do not parse as numbers (0 for other kinds).
    example_unparseable : str or None
        The smallest such value, for messages.
    dtype : str
        The engine's type name (informative; not compared).
    """

    name: str
    role: str
    kind: str
    n: int
    n_null: int
    n_nonfinite: int
    n_distinct: int
    min: float | None
    max: float | None
    values: tuple[Any, ...] | None
    n_unparseable: int = 0
    example_unparseable: str | None = None
    dtype: str = field(default="", compare=False)

    @property
    def n_valid(self) -> int:
        """Rows with a usable (non-missing, finite) value."""
        return self.n - self.n_null - self.n_nonfinite

    @property
    def numeric_parse_fails(self) -> bool:
        """Whether some values of a string column are not numbers."""
        return self.n_unparseable > 0


@dataclass(frozen=True)
class TableStats:
    """Table-level summary plus one :class:`ColumnStats` per used column present.

    Parameters
    ----------
    n_rows : int
        Rows of the table.
    n_distinct_ids : int
        Distinct non-missing unit ids (exact); 0 when the id column is absent.
    columns : tuple of str
        Every column of the table (for suggestions when a role names a missing column).
    stats : dict of str to ColumnStats
        Used columns that exist in the table, keyed by name.
    n_treated, n_control : int or None
        Rows with treatment 1 and 0 (None when the treatment is absent or not numeric/boolean).
    n_removable : dict of str to int
        For each used column present, the rows whose first missing or infinite used value (in
        :attr:`Roles.used_columns` order) is in this column; the ``missing="drop"`` removals.
    single_fold_categories : dict of str to tuple of str
        For string covariates with at most :data:`DISTINCT_LIMIT` categories, the categories that
        occur in exactly one fold; empty unless a fold assignment was given.
    """

    n_rows: int
    n_distinct_ids: int
    columns: tuple[str, ...]
    stats: dict[str, ColumnStats]
    n_treated: int | None = None
    n_control: int | None = None
    n_removable: dict[str, int] = field(default_factory=dict)
    single_fold_categories: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass
class RowAccount:
    """How many rows came in, how many were removed and why, how many are used.

    Parameters
    ----------
    n_input : int
        Rows of the input table.
    removed : dict of str to int
        Rows removed, by reason (e.g. ``"missing:Y"``).
    """

    n_input: int
    removed: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.n_input, bool) or not isinstance(self.n_input, (int, np.integer)):
            raise RowAccountError(f"n_input={self.n_input!r}: must be an integer")
        if self.n_input < 0:
            raise RowAccountError(f"n_input={self.n_input}: must be >= 0")
        self.n_input = int(self.n_input)
        self.removed = {str(k): int(v) for k, v in self.removed.items()}
        bad = {k: v for k, v in self.removed.items() if v < 0}
        if bad:
            raise RowAccountError(f"removed counts must be >= 0, found {bad}")
        if sum(self.removed.values()) > self.n_input:
            raise RowAccountError(
                f"{sum(self.removed.values())} rows removed but only {self.n_input} came in"
            )

    @property
    def n_used(self) -> int:
        """Rows left for the analysis: ``n_input - sum(removed.values())``."""
        return self.n_input - sum(self.removed.values())

    def remove(self, reason: str, count: int) -> None:
        """Record ``count`` more rows removed for ``reason``.

        Parameters
        ----------
        reason : str
            E.g. ``"missing:Y"``.
        count : int
            Rows removed, >= 0 and at most :attr:`n_used`.

        Raises
        ------
        RowAccountError
            If ``count`` is negative or exceeds the rows still in use.
        """
        count = int(count)
        if count < 0 or count > self.n_used:
            raise RowAccountError(
                f"cannot remove {count} rows for {reason!r}: {self.n_used} rows are in use"
            )
        if count:
            self.removed[reason] = self.removed.get(reason, 0) + count

    def to_dict(self) -> dict[str, Any]:
        """The account as ``{"n_input": int, "n_used": int, "removed": {reason: int}}``."""
        return {"n_input": self.n_input, "n_used": self.n_used, "removed": dict(self.removed)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RowAccount:
        """Rebuild an account from :meth:`to_dict` output (``n_used`` is checked, not trusted).

        Raises
        ------
        RowAccountError
            If keys are missing or ``n_used`` disagrees with ``n_input`` and ``removed``.
        """
        try:
            account = cls(int(data["n_input"]), dict(data.get("removed", {})))
        except KeyError as exc:
            raise RowAccountError(f"row account without {exc.args[0]!r}: {dict(data)}") from exc
        if "n_used" in data and int(data["n_used"]) != account.n_used:
            raise RowAccountError(
                f"row account inconsistent: n_used={data['n_used']} but n_input - removed = "
                f"{account.n_used}"
            )
        return account

    def check(self, stage: str, n_out: int) -> None:
        """Raise unless a stage produced exactly the accepted rows.

        Parameters
        ----------
        stage : str
            Stage name, for the message.
        n_out : int
            Rows the stage produced.

        Raises
        ------
        RowAccountError
            If ``n_out != n_used`` (rows lost or invented); the message names the stage and both
            counts.
        """
        n_out = int(n_out)
        if n_out != self.n_used:
            what = "lost" if n_out < self.n_used else "duplicated or invented"
            raise RowAccountError(
                f"stage {stage}: {n_out} rows out but {self.n_used} accepted ({self.n_input} in, "
                f"removed {self.removed or 'none'}); {abs(self.n_used - n_out)} rows were {what}"
            )


# --- roles ----------------------------------------------------------------------------------


def role_assignments(roles: Roles) -> list[tuple[str, str]]:
    """Every (column, role) pair of the roles, in :attr:`Roles.used_columns` order.

    Parameters
    ----------
    roles : Roles

    Returns
    -------
    list of (str, str)
        Role is one of ``unit_id``, ``treatment``, ``mediator``, ``outcome``, ``covariate``; a
        column named in two roles appears twice.
    """
    _check_roles(roles)
    return [
        (roles.unit_id, "unit_id"),
        (roles.treatment, "treatment"),
        *((m, "mediator") for m in roles.mediators),
        (roles.outcome, "outcome"),
        *((c, "covariate") for c in roles.covariates),
    ]


def _check_roles(roles: object) -> None:
    if not isinstance(roles, Roles):
        raise ConfigError(
            f"roles must be a mlearner_dist.core.roles.Roles, found {type(roles).__name__}"
        )


def used_roles(roles: Roles) -> dict[str, str]:
    """Column -> its first role, for the distinct used columns in ``Roles.used_columns`` order."""
    out: dict[str, str] = {}
    for col, role in role_assignments(roles):
        out.setdefault(col, role)
    return out


def _check_params(min_treated: int, min_control: int, n_folds: int, missing: str) -> None:
    for name, value, low in (
        ("min_treated", min_treated, 1),
        ("min_control", min_control, 1),
        ("n_folds", n_folds, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ConfigError(f"{name}={value!r}: must be an integer >= {low}")
    if missing not in ("error", "drop"):
        raise ConfigError(f"missing={missing!r}: choose 'error' or 'drop'")


# --- pandas statistics ----------------------------------------------------------------------


def _pandas_kind(s: pd.Series) -> str:
    dt = s.dtype
    if isinstance(dt, pd.CategoricalDtype):
        return "string"
    if pd.api.types.is_bool_dtype(dt):
        return "boolean"
    if pd.api.types.is_complex_dtype(dt):
        return "other"
    if pd.api.types.is_numeric_dtype(dt):
        return "numeric"
    if pd.api.types.is_object_dtype(dt) or pd.api.types.is_string_dtype(dt):
        inferred = pd.api.types.infer_dtype(s, skipna=True)
        if inferred in ("integer", "floating", "mixed-integer-float", "decimal"):
            return "numeric"
        if inferred == "boolean":
            return "boolean"
        if inferred in ("string", "empty", "mixed", "mixed-integer", "categorical", "bytes"):
            return "string"
    return "other"


def _as_float(s: pd.Series, kind: str) -> np.ndarray:
    if kind == "boolean":
        return pd.array(s, dtype="boolean").to_numpy(dtype=float, na_value=np.nan)
    if isinstance(s.dtype, np.dtype) and s.dtype.kind in "iuf":
        return s.to_numpy(dtype=float)
    return pd.to_numeric(s, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def _pandas_column(s: pd.Series, name: str, role: str) -> tuple[ColumnStats, np.ndarray]:
    """Statistics of one column and its mask of usable (non-missing, finite) rows."""
    kind = _pandas_kind(s)
    n = len(s)
    lo = hi = None
    values: tuple[Any, ...] | None = None
    n_unparseable, example = 0, None
    if kind in ("numeric", "boolean"):
        x = _as_float(s, kind)
        is_nan, is_inf = np.isnan(x), np.isinf(x)
        valid = ~(is_nan | is_inf)
        n_null, n_nonfinite = int(is_nan.sum()), int(is_inf.sum())
        finite = x[valid]
        uniq = np.unique(finite)
        if finite.size:
            lo, hi = float(finite.min()), float(finite.max())
        listed: list[Any] = [float(v) for v in uniq]
    elif kind == "string":
        missing = s.isna().to_numpy(dtype=bool)
        valid = ~missing
        n_null, n_nonfinite = int(missing.sum()), 0
        text = s[valid].astype(object).astype(str)
        listed = sorted(set(text))
        uniq = np.array(listed, dtype=object)
        parsed = pd.to_numeric(text, errors="coerce")
        bad = parsed.isna().to_numpy(dtype=bool)
        n_unparseable = int(bad.sum())
        if n_unparseable:
            example = str(min(text[bad]))
    else:
        missing = s.isna().to_numpy(dtype=bool)
        valid = ~missing
        n_null, n_nonfinite = int(missing.sum()), 0
        uniq, listed = np.array([]), []
    n_distinct = min(len(uniq), DISTINCT_LIMIT + 1)
    if kind != "other" and n_distinct <= MAX_LISTED_VALUES:
        values = tuple(listed)
    stats = ColumnStats(
        name=name,
        role=role,
        kind=kind,
        n=n,
        n_null=n_null,
        n_nonfinite=n_nonfinite,
        n_distinct=n_distinct,
        min=lo,
        max=hi,
        values=values,
        n_unparseable=n_unparseable,
        example_unparseable=example,
        dtype=str(s.dtype),
    )
    return stats, valid


def pandas_column_stats(
    df: pd.DataFrame, roles: Roles, *, folds: np.ndarray | pd.Series | None = None
) -> TableStats:
    """Summary statistics of the used columns of a pandas frame.

    Parameters
    ----------
    df : DataFrame of shape (n, p)
    roles : Roles
    folds : array-like of shape (n,), optional
        A fold label per row; when given, categories of string covariates seen in a single fold
        are recorded in :attr:`TableStats.single_fold_categories`.

    Returns
    -------
    TableStats

    Raises
    ------
    ConfigError
        If ``roles`` is not a :class:`Roles`.
    InputValidationError
        If ``df`` is not a DataFrame, has duplicated column names, or ``folds`` has the wrong
        length.
    """
    _check_roles(roles)
    if not isinstance(df, pd.DataFrame):
        raise InputValidationError([f"data: expected a pandas DataFrame, found {type(df)}"])
    dup = sorted({str(c) for c in df.columns[df.columns.duplicated()]})
    if dup:
        raise InputValidationError(
            [f"columns {dup} appear more than once in the table; rename them"]
        )
    fold_arr = None
    if folds is not None:
        fold_arr = np.asarray(folds)
        if fold_arr.shape != (len(df),):
            raise InputValidationError(
                [f"folds: expected one label per row ({len(df)}), found shape {fold_arr.shape}"]
            )
    columns = tuple(str(c) for c in df.columns)
    stats: dict[str, ColumnStats] = {}
    removable: dict[str, int] = {}
    covered = np.zeros(len(df), dtype=bool)
    valid_of: dict[str, np.ndarray] = {}
    for col, role in used_roles(roles).items():
        if col not in df.columns:
            continue
        st, valid = _pandas_column(df[col], col, role)
        stats[col] = st
        valid_of[col] = valid
        first_bad = ~valid & ~covered
        removable[col] = int(first_bad.sum())
        covered |= ~valid
    n_ids = 0
    if roles.unit_id in stats:
        ids = df[roles.unit_id][valid_of[roles.unit_id]]
        n_ids = int(ids.nunique())
    n_treated = n_control = None
    t = stats.get(roles.treatment)
    if t is not None and t.kind in ("numeric", "boolean"):
        x = _as_float(df[roles.treatment], t.kind)
        n_treated, n_control = int((x == 1).sum()), int((x == 0).sum())
    single: dict[str, tuple[str, ...]] = {}
    if fold_arr is not None:
        for col in roles.covariates:
            st = stats.get(col)
            if st is None or st.kind != "string" or st.n_distinct > DISTINCT_LIMIT:
                continue
            valid = valid_of[col]
            pairs = pd.DataFrame(
                {"v": df[col][valid].astype(object).astype(str).to_numpy(), "f": fold_arr[valid]}
            )
            n_f = pairs.groupby("v")["f"].nunique()
            single[col] = tuple(sorted(n_f.index[n_f == 1]))
    return TableStats(
        n_rows=len(df),
        n_distinct_ids=n_ids,
        columns=columns,
        stats=stats,
        n_treated=n_treated,
        n_control=n_control,
        n_removable=removable,
        single_fold_categories=single,
    )


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
    ids.

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
    _check_params(min_treated, min_control, n_folds, missing)
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
    _check_params(min_treated, min_control, n_folds, missing)
    stats = pandas_column_stats(df, roles, folds=folds)
    kw = {"min_treated": min_treated, "min_control": min_control, "n_folds": n_folds}
    problems = check_table(stats, roles, missing=missing, **kw)
    problems.extend(_mixed_id_problems(df, roles))
    if problems:
        raise InputValidationError(problems)
    account = RowAccount(len(df))
    clean = df
    reasons = removal_reasons(stats)
    if missing == "drop" and reasons:
        keep = np.ones(len(df), dtype=bool)
        for col, role in used_roles(roles).items():
            keep &= _pandas_column(df[col], col, role)[1]
        for reason, count in reasons.items():
            account.remove(reason, count)
        clean = df.loc[keep]
        account.check("validate (drop missing)", len(clean))
        fold_kept = None if folds is None else np.asarray(folds)[keep]
        stats = pandas_column_stats(clean, roles, folds=fold_kept)
        after = check_table(stats, roles, missing="error", **kw)
        if after:
            removed = sum(reasons.values())
            raise InputValidationError(
                [f"{p} (after dropping {removed} rows with missing values)" for p in after]
            )
        logger.info("validate: dropped %s", reasons)
    clean = clean.reset_index(drop=True)
    t = stats.stats[roles.treatment]
    if t.kind == "boolean" or pd.api.types.is_object_dtype(clean[roles.treatment].dtype):
        clean[roles.treatment] = _as_float(clean[roles.treatment], t.kind).astype(np.int64)
    _emit_warnings(stats)
    logger.info(
        "validate: %d rows in, %d used, removed %s",
        account.n_input,
        account.n_used,
        account.removed or "none",
    )
    return clean, account


__all__ = [
    "DISTINCT_LIMIT",
    "MAX_LISTED_VALUES",
    "CategoryFoldWarning",
    "ColumnStats",
    "RowAccount",
    "TableStats",
    "check_table",
    "pandas_column_stats",
    "removal_reasons",
    "role_assignments",
    "table_warnings",
    "used_roles",
    "validate_frame",
]
