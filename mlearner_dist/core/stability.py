"""Seed stability: do the declared subgroups survive another seed for t-SNE and K-means?

t-SNE and K-means are randomised, so the chosen partition can depend on the seed. The stability
check keeps the unit effects (step 1) fixed and re-runs steps 2 to 4 (embedding, K-means, trees,
the decision test) with ``n_seeds`` other seeds, then reports

* the share of seeds whose decision statistic beats the analysis's threshold (the threshold is
  held fixed: calibrated once, for the reported seed);
* the adjusted Rand index between each seed's partition and the reported one (1 = the same
  subgroups, about 0 = unrelated);
* how often each rule of the reported partition recurs exactly, and the variables chosen.

A reported subgroup structure that few seeds reproduce should be read as fragile whatever its
p-value.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.metrics import adjusted_rand_score

from mlearner_dist.exceptions import MLearnerError

__all__ = ["SeedRun", "summarise_stability"]


@dataclass(frozen=True)
class SeedRun:
    """What one re-run of steps 2 to 4 with another seed chose.

    Attributes
    ----------
    seed : int
    p_leaf : float
        Its decision statistic.
    leaf : ndarray of shape (n,)
        The leaf of every unit under its chosen partition (same unit order as the reported one).
    rules : tuple of str
        The rules of its leaves.
    variables : tuple of str
        The covariates its chosen tree splits on.
    """

    seed: int
    p_leaf: float
    leaf: np.ndarray
    rules: tuple[str, ...]
    variables: tuple[str, ...]


def summarise_stability(
    reported_leaf: np.ndarray,
    reported_rules: Sequence[str],
    threshold: float,
    runs: Sequence[SeedRun],
) -> dict[str, Any]:
    """Agreement of seed re-runs with the reported analysis.

    Parameters
    ----------
    reported_leaf : ndarray of shape (n,)
        Leaf of every unit under the reported partition.
    reported_rules : sequence of str
        The reported leaves' rules.
    threshold : float
        The analysis's calibrated threshold (a run declares when ``p_leaf < threshold``).
    runs : sequence of SeedRun

    Returns
    -------
    dict
        ``n_seeds``, ``seeds``, ``share_declared``, ``p_leaf`` (per seed), ``ari`` (per seed),
        ``median_ari``, ``rule_recurrence`` (reported rule -> share of seeds with exactly that
        rule), ``variables`` (covariate -> share of seeds whose chosen tree uses it).
    """
    if not runs:
        raise MLearnerError("seed stability needs at least one re-run")
    ref = np.asarray(reported_leaf)
    for r in runs:
        if np.asarray(r.leaf).shape != ref.shape:
            raise MLearnerError(
                f"seed {r.seed}: {np.asarray(r.leaf).shape[0]} leaf labels for {ref.shape[0]} units"
            )
    ari = [float(adjusted_rand_score(ref, r.leaf)) for r in runs]
    declared = [bool(r.p_leaf < threshold) for r in runs]
    n = len(runs)
    recurrence = {rule: sum(rule in r.rules for r in runs) / n for rule in reported_rules}
    var_counts = Counter(v for r in runs for v in set(r.variables))
    return {
        "n_seeds": n,
        "seeds": [int(r.seed) for r in runs],
        "share_declared": float(np.mean(declared)),
        "p_leaf": [float(r.p_leaf) for r in runs],
        "ari": ari,
        "median_ari": float(np.median(ari)),
        "rule_recurrence": recurrence,
        "variables": {v: c / n for v, c in sorted(var_counts.items())},
    }
