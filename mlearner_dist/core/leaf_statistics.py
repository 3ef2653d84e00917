"""Sufficient statistics of the profile trees' partitions, computed chunk by chunk.

Once the trees are grown (on a sample of the units), everything the selection still needs from
the units is a few moments per leaf of each tree:

- per raw leaf, the count, mean and centred sum of squares of the target's DR score: leaf merging
  (:func:`~mlearner_dist.core.leaf_merging.merge_leaves_from_moments`) and the DR-score test of
  the merged partition (:func:`~mlearner_dist.core.score_test.pvalue_from_moments`);
- per (raw leaf, treatment) cell, the same moments of the outcome and of every mediator: the
  reference interaction tests (:func:`~mlearner_dist.core.interaction_test.\
interaction_pvalue_from_aggregates`).

A merged partition's statistics are its raw leaves' statistics pooled by Chan's formula
(:meth:`LeafStatistics.relabel`), so one pass over the units serves the raw and the merged trees.
:func:`tree_statistics` computes them on one chunk of units (a Spark partition, a pandas frame),
:func:`combine_tree_statistics` pools chunks, and the result equals that of all units at once:
the distributed profile stage and the in-memory estimator test the same numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mlearner_dist.core.interaction_test import (
    cell_aggregates,
    combine_cell_aggregates,
    interaction_pvalue_from_aggregates,
)
from mlearner_dist.core.profile_tree import ProfileTree
from mlearner_dist.core.score_test import (
    combine_score_aggregates,
    pvalue_from_moments,
    score_aggregates,
)
from mlearner_dist.exceptions import MLearnerError

__all__ = ["LeafStatistics", "combine_tree_statistics", "tree_statistics"]


@dataclass(frozen=True)
class LeafStatistics:
    """Moments of one partition's leaves.

    Attributes
    ----------
    scores : DataFrame or None
        :func:`~mlearner_dist.core.score_test.score_aggregates` rows (``score``, ``leaf``, ``n``,
        ``sum``, ``sumsq``, ``mean``, ``m2``), scores named without the ``score_`` prefix.
    cells : dict of str -> DataFrame
        Response column (outcome, mediators) -> its
        :func:`~mlearner_dist.core.interaction_test.cell_aggregates` by (leaf, treatment).
    outcome : str or None
        The outcome column among ``cells`` (the ``p_y`` test).
    mediators : tuple of str
        The mediator columns among ``cells`` (the ``p_m`` test).
    method : {"f", "lr"}
        The interaction tests' method.
    """

    scores: pd.DataFrame | None = None
    cells: dict[str, pd.DataFrame] = field(default_factory=dict)
    outcome: str | None = None
    mediators: tuple[str, ...] = ()
    method: str = "f"

    def leaf_sizes(self) -> dict[int, int]:
        """Leaf -> units (from the first score's moments, else from the cell moments)."""
        if self.scores is not None and len(self.scores):
            rows = self._score_rows(str(self.scores["score"].iloc[0]))
            return {int(r.leaf): int(r.n) for r in rows.itertuples(index=False)}
        for agg in self.cells.values():
            return {int(k): int(v) for k, v in agg.groupby("leaf")["n"].sum().items()}
        return {}

    def score_moments(self, score: str) -> dict[int, tuple[float, float, float]]:
        """Raw leaf -> ``(n, mean, m2)`` of one score (for the leaf merging)."""
        rows = self._score_rows(score)
        return {
            int(r.leaf): (float(r.n), float(r.mean), float(r.m2))
            for r in rows.itertuples(index=False)
        }

    def score_pvalue(self, score: str, *, covariance: str = "HC1", min_leaf_n: int = 2) -> float:
        """The DR-score test of equal leaf means; leaves under ``min_leaf_n`` units left out.

        The aggregate form of :func:`~mlearner_dist.core.score_test.score_pvalue`.
        """
        rows = self._score_rows(score)
        rows = rows[rows["n"] >= min_leaf_n]
        return pvalue_from_moments(
            rows["n"].to_numpy(dtype=float),
            rows["mean"].to_numpy(dtype=float),
            rows["m2"].to_numpy(dtype=float),
            covariance=covariance,
        )

    def interaction_pvalues(self) -> tuple[float, float | None]:
        """``(p_y, p_m)``: the reference interaction tests from the cell moments.

        As :func:`~mlearner_dist.core.selection.leaf_pvalues`: several mediators give the
        smallest per-mediator p-value times their number (Bonferroni), capped at one.
        """
        if self.outcome is None:
            raise MLearnerError("these statistics hold no outcome moments (outcome=None)")
        p_y = interaction_pvalue_from_aggregates(self._cells(self.outcome), method=self.method)
        if not self.mediators:
            return p_y, None
        ps = [
            interaction_pvalue_from_aggregates(self._cells(m), method=self.method)
            for m in self.mediators
        ]
        return p_y, float(min(1.0, min(ps) * len(ps)))

    def relabel(self, leaf_map: Mapping[int, int]) -> LeafStatistics:
        """The statistics of the coarser partition ``raw leaf -> leaf_map[raw leaf]``."""
        lookup = {int(k): int(v) for k, v in leaf_map.items()}

        def pooled(agg: pd.DataFrame, combine: object) -> pd.DataFrame:
            missing = sorted(set(agg["leaf"].astype(int)) - set(lookup))
            if missing:
                raise MLearnerError(f"leaf_map has no entry for raw leaves {missing}")
            return combine([agg.assign(leaf=agg["leaf"].astype(int).map(lookup))])  # type: ignore[operator]

        scores = None if self.scores is None else pooled(self.scores, combine_score_aggregates)
        cells = {name: pooled(agg, combine_cell_aggregates) for name, agg in self.cells.items()}
        return LeafStatistics(scores, cells, self.outcome, self.mediators, self.method)

    def _score_rows(self, score: str) -> pd.DataFrame:
        if self.scores is None or not (self.scores["score"] == score).any():
            have = [] if self.scores is None else sorted(set(self.scores["score"]))
            raise MLearnerError(f"no moments of score {score!r} (have {have})")
        return self.scores[self.scores["score"] == score]

    def _cells(self, response: str) -> pd.DataFrame:
        if response not in self.cells:
            raise MLearnerError(f"no cell moments of {response!r} (have {sorted(self.cells)})")
        return self.cells[response]


def tree_statistics(
    frame: pd.DataFrame,
    trees: Mapping[int, ProfileTree],
    *,
    treatment: str,
    outcome: str | None = None,
    mediators: Sequence[str] = (),
    scores: Mapping[str, str] | None = None,
    method: str = "f",
) -> dict[int, LeafStatistics]:
    """The statistics of every tree's raw leaves on one chunk of units.

    Parameters
    ----------
    frame : DataFrame
        The chunk: every covariate the trees use, ``treatment``, the ``responses`` and the
        ``scores`` columns.
    trees : mapping of K -> ProfileTree
    treatment : str
        The 0/1 treatment column (cells of the interaction tests).
    outcome : str, optional
        The outcome column (cell moments for ``p_y``).
    mediators : sequence of str
        Mediator columns (cell moments for ``p_m``).
    scores : mapping of name -> column, optional
        DR scores to take per-leaf moments of (e.g. ``{"indirect": "score_indirect"}``).
    method : {"f", "lr"}
        The interaction tests' method, carried for :meth:`LeafStatistics.interaction_pvalues`.

    Returns
    -------
    dict of K -> LeafStatistics
        Empty tables for an empty chunk are left out (:func:`combine_tree_statistics` skips
        them).
    """
    meds = tuple(mediators)
    if len(frame) == 0:
        return {int(k): LeafStatistics(None, {}, outcome, meds, method) for k in trees}
    responses = ([outcome] if outcome else []) + list(meds)
    out: dict[int, LeafStatistics] = {}
    t = frame[treatment].to_numpy()
    named = {name: frame[col].to_numpy(dtype=float) for name, col in (scores or {}).items()}
    for k, tree in trees.items():
        leaf = np.asarray(tree.leaf_of(frame), dtype=np.int64)
        out[int(k)] = LeafStatistics(
            scores=score_aggregates(named, leaf) if named else None,
            cells={
                r: cell_aggregates(frame[r].to_numpy(dtype=float), t, leaf) for r in responses
            },
            outcome=outcome,
            mediators=meds,
            method=method,
        )
    return out


def combine_tree_statistics(
    parts: Sequence[Mapping[int, LeafStatistics]],
) -> dict[int, LeafStatistics]:
    """Pool the statistics of disjoint chunks (Chan's formula; exact up to rounding)."""
    keys = sorted({int(k) for p in parts for k in p})
    out: dict[int, LeafStatistics] = {}
    for k in keys:
        stats = [p[k] for p in parts if k in p]
        score_parts = [s.scores for s in stats if s.scores is not None and len(s.scores)]
        names = sorted({name for s in stats for name in s.cells})
        first = stats[0]
        out[k] = LeafStatistics(
            scores=combine_score_aggregates(score_parts) if score_parts else None,
            cells={
                name: combine_cell_aggregates(
                    [s.cells[name] for s in stats if name in s.cells and len(s.cells[name])]
                )
                for name in names
            },
            outcome=first.outcome,
            mediators=first.mediators,
            method=first.method,
        )
    return out
