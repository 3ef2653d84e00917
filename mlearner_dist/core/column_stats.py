"""Summary statistics of the used columns, computed without collecting the rows.

:class:`ColumnStats` (per used column) and :class:`TableStats` (per table) are what the checks of
:mod:`mlearner_dist.core.validation` read: :func:`pandas_column_stats` computes them on a pandas
frame, :func:`mlearner_dist.backends.spark_validation.spark_column_stats` with two Spark
aggregations. Conventions shared by both engines are in :mod:`mlearner_dist.core.validation`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlearner_dist.core.roles import Roles
from mlearner_dist.exceptions import ConfigError, InputValidationError

#: Distinct values are listed in :attr:`ColumnStats.values` when there are at most this many.
MAX_LISTED_VALUES = 20
#: ``n_distinct`` is exact up to this many; ``DISTINCT_LIMIT + 1`` stands for more.
DISTINCT_LIMIT = 100


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


# --- roles ----------------------------------------------------------------------------------


def role_assignments(roles: Roles) -> list[tuple[str, str]]:
    """Every (column, role) pair of the roles, in :attr:`Roles.used_columns` order.

    Parameters
    ----------
    roles : Roles

    Returns
    -------
    list of (str, str)
        Role is one of ``unit_id``, ``treatment``, ``mediator``, ``outcome``, ``covariate``,
        ``stratum``, ``cluster``, ``weight``; a column named in two roles appears twice (a
        stratum, cluster or weight column that is also a covariate is listed once, as a
        covariate).
    """
    check_roles(roles)
    return [
        (roles.unit_id, "unit_id"),
        (roles.treatment, "treatment"),
        *((m, "mediator") for m in roles.mediators),
        (roles.outcome, "outcome"),
        *((c, "covariate") for c in roles.covariates),
        *((s, "stratum") for s in roles.strata if s not in roles.covariates),
        *(
            (c, role)
            for c, role in ((roles.cluster, "cluster"), (roles.weight, "weight"))
            if c and c not in roles.covariates and c not in roles.strata
        ),
    ]


def check_unique_columns(columns: Iterable[object]) -> None:
    """Raise InputValidationError naming the column names that occur more than once."""
    dup = sorted(name for name, n in Counter(str(c) for c in columns).items() if n > 1)
    if dup:
        raise InputValidationError(
            [f"columns {dup} appear more than once in the table; rename them"]
        )


def check_roles(roles: object) -> None:
    """Raise ConfigError unless ``roles`` is a :class:`~mlearner_dist.core.roles.Roles`."""
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


def as_float_array(s: pd.Series, kind: str) -> np.ndarray:
    """A column of kind ``numeric`` or ``boolean`` as float64, shape (n,); NaN where missing."""
    if kind == "boolean":
        return pd.array(s, dtype="boolean").to_numpy(dtype=float, na_value=np.nan)
    if isinstance(s.dtype, np.dtype) and s.dtype.kind in "iuf":
        return s.to_numpy(dtype=float)
    return pd.to_numeric(s, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def distinct_summary(kind: str, distinct: Sequence[Any]) -> tuple[int, tuple[Any, ...] | None]:
    """``n_distinct`` and ``values`` of a column from its sorted distinct usable values.

    ``n_distinct`` is capped at ``DISTINCT_LIMIT + 1`` (an engine may pass that many
    placeholders when it did not enumerate the values); the values are listed when there are at
    most :data:`MAX_LISTED_VALUES` of them and the column is not of kind ``other``.
    """
    n_distinct = min(len(distinct), DISTINCT_LIMIT + 1)
    listed = kind != "other" and n_distinct <= MAX_LISTED_VALUES
    return n_distinct, tuple(distinct) if listed else None


def series_stats(s: pd.Series, name: str, role: str) -> tuple[ColumnStats, np.ndarray]:
    """Statistics of one column and its mask of usable (non-missing, finite) rows."""
    kind = _pandas_kind(s)
    n = len(s)
    lo = hi = None
    n_unparseable, example = 0, None
    if kind in ("numeric", "boolean"):
        x = as_float_array(s, kind)
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
    n_distinct, values = distinct_summary(kind, listed)
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
    check_roles(roles)
    if not isinstance(df, pd.DataFrame):
        raise InputValidationError([f"data: expected a pandas DataFrame, found {type(df)}"])
    check_unique_columns(df.columns)
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
        st, valid = series_stats(df[col], col, role)
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
        x = as_float_array(df[roles.treatment], t.kind)
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


__all__ = [
    "DISTINCT_LIMIT",
    "MAX_LISTED_VALUES",
    "ColumnStats",
    "TableStats",
    "as_float_array",
    "check_roles",
    "check_unique_columns",
    "distinct_summary",
    "pandas_column_stats",
    "role_assignments",
    "series_stats",
    "used_roles",
]
