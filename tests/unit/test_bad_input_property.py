"""Property: any malformed frame gives either a clean result or our own error, never a crash.

Hypothesis builds small frames with the roles' columns sometimes missing, renamed, of the wrong
type (text in numeric columns), with NaN/inf, constant, duplicated ids, a non-binary or one-armed
treatment, few rows; validation and then cross-fitted effects (in memory) must either succeed with
one row per unit and a consistent row account, or raise an :class:`MLearnerError` subclass.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlearner_dist.core.effects import cross_fit_effects
from mlearner_dist.core.nuisance import NuisanceSpec
from mlearner_dist.core.roles import Roles
from mlearner_dist.core.validation import validate_frame
from mlearner_dist.exceptions import MLearnerError

ROLES = Roles("id", "T", "Y", ("M",), ("X1", "X2", "C"))

CORRUPTIONS = (
    "drop_column", "rename_column", "text_in_numeric", "nan", "inf", "constant",
    "duplicate_ids", "treatment_2", "one_arm", "all_missing", "bool_treatment",
)


@st.composite
def frames(draw: st.DrawFn) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    n = draw(st.integers(min_value=0, max_value=120))
    seed = draw(st.integers(min_value=0, max_value=2**16))
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "id": np.arange(n),
        "T": rng.integers(0, 2, n),
        "X1": rng.normal(size=n),
        "X2": rng.normal(size=n),
        "C": rng.choice(["a", "b", "c"], n),
    })
    df["M"] = df["X1"] + df["T"] + rng.normal(size=n)
    df["Y"] = df["M"] + df["X2"] + rng.normal(size=n)
    wanted = draw(st.lists(st.sampled_from(CORRUPTIONS), max_size=3, unique=True))
    applied: list[tuple[str, str]] = []
    for what in wanted:
        col = draw(st.sampled_from(["id", "T", "M", "Y", "X1", "X2", "C"]))
        if col not in df.columns:
            continue
        if what in ("duplicate_ids",):
            applied.append((what, "id"))
        elif what in ("treatment_2", "one_arm", "bool_treatment"):
            applied.append((what, "T"))
        else:
            applied.append((what, col))
        if what == "drop_column":
            df = df.drop(columns=col)
        elif what == "rename_column":
            df = df.rename(columns={col: col.lower() + "_"})
        elif what == "text_in_numeric" and n:
            df[col] = df[col].astype(object)
            df.loc[df.index[0], col] = "n/a"
        elif what in ("nan", "inf") and n and df[col].dtype != object:
            df[col] = df[col].astype(float)
            df.loc[df.index[:2], col] = np.nan if what == "nan" else np.inf
        elif what == "constant":
            df[col] = df[col].iloc[0] if n else df[col]
        elif what == "duplicate_ids" and n > 1:
            df.loc[df.index[1], "id"] = df["id"].iloc[0]
        elif what == "treatment_2" and "T" in df and n:
            df.loc[df.index[0], "T"] = 2
        elif what == "one_arm" and "T" in df:
            df["T"] = 1
        elif what == "all_missing" and col != "id":
            df[col] = np.nan
        elif what == "bool_treatment" and "T" in df:
            df["T"] = df["T"].astype(bool)
    return df, applied


SIZE_WORDS = ("treated", "control", "fold", "units", "rows")


def _assert_names_a_cause(message: str, applied: list[tuple[str, str]], n: int) -> None:
    """A refusal must name a corrupted column (by name or role), or be about too few units.

    A validator that rejects everything with a generic message fails this: on an uncorrupted
    frame only a size problem may be reported, and on a corrupted one the message must point at
    one of the corrupted columns.
    """
    text = message.lower()
    named = [col for _, col in applied if f"'{col.lower()}'" in text or f"{col.lower()} (" in text]
    renamed = [col for what, col in applied if what == "rename_column"]
    if named or any(f"'{c.lower()}_'" in text or c.lower() in text for c in renamed):
        return
    assert any(w in text for w in SIZE_WORDS), (
        f"refused with a message naming no corrupted column {applied} and no size problem "
        f"(n={n}): {message}"
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames())
def test_malformed_frames_give_a_result_or_our_error(case):
    df, applied = case
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            clean, account = validate_frame(df, ROLES, min_treated=5, min_control=5, n_folds=3)
        except MLearnerError as exc:
            _assert_names_a_cause(str(exc), applied, len(df))
            return
        assert account.n_input == len(df) and account.n_used == len(clean)
        spec = NuisanceSpec(learner="linear", random_state=0)
        try:
            effects, _ = cross_fit_effects(clean, ROLES, spec, n_folds=3, seed=0)
        except MLearnerError as exc:
            assert str(exc)
            return
    assert len(effects) == len(clean)
    assert effects["unit_id"].is_unique
    assert np.allclose(effects["indirect"] + effects["direct"], effects["total"])
