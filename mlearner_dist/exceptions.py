"""Exception and warning types raised by mlearner-dist.

Every error the package raises on purpose derives from :class:`MLearnerError`, so callers (and the
property-based tests) can tell our own clear errors from unexpected failures.
"""

from __future__ import annotations


class MLearnerError(Exception):
    """Base class of every error mlearner-dist raises on purpose."""


class ConfigError(MLearnerError, ValueError):
    """A configuration file or ``--set`` override is invalid (unknown key, bad value)."""


class InputValidationError(MLearnerError, ValueError):
    """The input table does not fit the configured roles.

    Parameters
    ----------
    problems : list of str
        One line per problem: the column, its role, what was found and what to do.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} problem(s) with the input data:\n{lines}")


class StageError(MLearnerError, RuntimeError):
    """A pipeline stage cannot run (missing inputs from an earlier stage, inconsistent outputs)."""


class RowAccountError(StageError):
    """Rows were lost or invented between two stages."""


class TrackingError(MLearnerError, RuntimeError):
    """The MLflow tracking server cannot be reached or refused a write."""


class SmallSubgroupWarning(UserWarning):
    """A subgroup is small enough that its tests and intervals are unreliable."""


class FewClustersWarning(UserWarning):
    """A cluster-randomised trial has few clusters per arm: cluster-robust variances and the
    cluster-level re-randomisation are then approximate."""


class OverlapWarning(UserWarning):
    """Estimated propensities come close to 0 or 1 (poor overlap)."""
