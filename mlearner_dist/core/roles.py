"""Column roles: which column of the table plays which part in the mediation model."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Roles:
    """Names of the columns that play each role.

    Parameters
    ----------
    unit_id : str
        Unique identifier of a unit (one row per unit).
    treatment : str
        Binary treatment indicator, coded 0/1.
    outcome : str
        Outcome Y.
    mediators : tuple of str
        Mediator columns M. Empty: no mediator, only the total effect is studied. Several
        mediators are treated as one joint mediator.
    covariates : tuple of str
        Pre-treatment covariates X, numeric or categorical.
    strata : tuple of str
        Columns whose value combination is the unit's randomisation stratum (block). Empty:
        complete randomisation. A stratum column may also be a covariate.
    cluster : str or None
        Column of the unit's randomisation cluster (a cluster-randomised trial: all units of a
        cluster share the treatment). None: units were randomised individually.
    weight : str or None
        Column of the unit's analysis (sampling) weight, positive and finite. None: equal
        weights.
    """

    unit_id: str
    treatment: str
    outcome: str
    mediators: tuple[str, ...] = ()
    covariates: tuple[str, ...] = ()
    strata: tuple[str, ...] = ()
    cluster: str | None = None
    weight: str | None = None

    @property
    def has_mediator(self) -> bool:
        """Whether a mediator is configured (else only the total effect is estimated)."""
        return len(self.mediators) > 0

    @property
    def used_columns(self) -> tuple[str, ...]:
        """Every column the analysis reads, in a stable order."""
        extra = tuple(s for s in self.strata if s not in self.covariates)
        extra += tuple(
            c
            for c in (self.cluster, self.weight)
            if c and c not in self.covariates and c not in self.strata
        )
        return (
            self.unit_id,
            self.treatment,
            *self.mediators,
            self.outcome,
            *self.covariates,
            *extra,
        )
