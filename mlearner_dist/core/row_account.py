"""The row account: rows in, removed by reason, used; it travels with the data stage to stage."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlearner_dist.exceptions import RowAccountError


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


__all__ = ["RowAccount"]
