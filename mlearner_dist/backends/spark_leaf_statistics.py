"""The profile stage's two reads of the units on Spark, so the driver never holds n rows.

1. :func:`spark_tree_sample`: a hashed sample of about ``max_rows`` units with their covariates
   and cluster labels, on which the profile trees are grown (``stable_uniform(unit id) <
   max_rows / n``: independent of partitioning and row order).
2. :func:`spark_tree_statistics`: one ``mapInPandas`` pass over the units joined with their DR
   scores computes, per partition, the leaf moments of every K's tested tree
   (:func:`mlearner_dist.core.leaf_statistics.tree_statistics`); each partition returns one
   pickled row and the driver pools them (:func:`~mlearner_dist.core.leaf_statistics.\
combine_tree_statistics`). The driver holds O(K x leaves) numbers.

DataFrame API only (no RDD, no broadcast variables), so it runs on Spark Connect too.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from mlearner_dist.core.folds import stable_uniform
from mlearner_dist.core.leaf_statistics import (
    LeafStatistics,
    combine_tree_statistics,
    tree_statistics,
)
from mlearner_dist.core.profile_tree import ProfileTree
from mlearner_dist.core.roles import Roles

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

logger = logging.getLogger(__name__)

#: the salt of the tree sample's hash (a different purpose from the folds' and the learners')
SAMPLE_SEED_OFFSET = 7_919
_KEY = "__mlearner_unit"


def _joined(
    spark: SparkSession, units: Path, other: Path, roles: Roles, columns: Sequence[str]
) -> DataFrame:
    """Units' ``columns`` joined with every column of ``other`` (keyed by ``unit_id``)."""
    left = spark.read.parquet(str(units)).select(*dict.fromkeys([roles.unit_id, *columns]))
    right = spark.read.parquet(str(other)).withColumnRenamed("unit_id", _KEY)
    return left.join(right, left[roles.unit_id] == right[_KEY], "inner").drop(_KEY)


def spark_tree_sample(
    spark: SparkSession,
    output: Path,
    roles: Roles,
    *,
    n_units: int,
    max_rows: int,
    seed: int,
) -> pd.DataFrame:
    """About ``max_rows`` units (hashed Bernoulli sample): unit id, covariates, ``k_*`` labels.

    Parameters
    ----------
    spark : SparkSession
    output : Path
        The run's output folder (``units/`` and ``clusters/``).
    roles : Roles
    n_units : int
        Units in the run (the row account's ``n_used``).
    max_rows : int
        Expected sample size.
    seed : int

    Returns
    -------
    DataFrame
        Ordered by unit id.
    """
    frac = min(1.0, max_rows / max(n_units, 1))
    uid = roles.unit_id
    salt = int(seed) + SAMPLE_SEED_OFFSET

    def keep(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for pdf in batches:
            yield pdf[stable_uniform(pdf[uid].to_numpy(), salt) < frac]

    joined = _joined(spark, output / "units", output / "clusters", roles, roles.covariates)
    sample = joined.mapInPandas(keep, joined.schema).toPandas()
    logger.info("profile trees: a hashed sample of %d of %d units", len(sample), n_units)
    return sample.sort_values(uid, kind="stable").reset_index(drop=True)


def spark_tree_statistics(
    spark: SparkSession,
    output: Path,
    roles: Roles,
    trees: Mapping[int, ProfileTree],
    *,
    scores: Mapping[str, str],
    method: str,
) -> dict[int, LeafStatistics]:
    """Leaf moments of every tree over every unit, from one pass on Spark.

    Parameters
    ----------
    spark : SparkSession
    output : Path
        The run's output folder (``units/`` and ``effects/``).
    roles : Roles
        Treatment, outcome and mediators (the interaction tests' cells), covariates.
    trees : mapping of K -> ProfileTree
    scores : mapping of name -> effects column
        E.g. ``{"indirect": "score_indirect", "total": "score_total"}``.
    method : {"f", "lr"}
        The interaction tests' method.

    Returns
    -------
    dict of K -> LeafStatistics
    """
    trees = {int(k): t for k, t in trees.items()}
    needed = {v for t in trees.values() for v in t.covariates}
    cols = [roles.treatment, roles.outcome, *roles.mediators, *sorted(needed)]
    units = spark.read.parquet(str(output / "units")).select(*dict.fromkeys([roles.unit_id, *cols]))
    effects = (
        spark.read.parquet(str(output / "effects"))
        .select("unit_id", *scores.values())
        .withColumnRenamed("unit_id", _KEY)
    )
    joined = units.join(effects, units[roles.unit_id] == effects[_KEY], "inner").drop(_KEY)
    treatment, outcome, mediators = roles.treatment, roles.outcome, tuple(roles.mediators)
    score_cols = dict(scores)

    def stats(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        # one partition at a time (a few hundred thousand rows): one group-by per table instead
        # of one per Arrow batch
        frames = [pdf for pdf in batches if len(pdf)]
        if frames:
            part = tree_statistics(
                pd.concat(frames, ignore_index=True),
                trees,
                treatment=treatment,
                outcome=outcome,
                mediators=mediators,
                scores=score_cols,
                method=method,
            )
            yield pd.DataFrame({"blob": [pickle.dumps(part)]})

    rows = joined.mapInPandas(stats, "blob binary").collect()
    parts = [pickle.loads(bytes(r["blob"])) for r in rows]
    return combine_tree_statistics(parts)
