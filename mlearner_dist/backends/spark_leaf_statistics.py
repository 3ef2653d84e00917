"""The profile and report stages' reads of the units on Spark, so the driver never holds n rows.

1. :func:`spark_tree_sample` / :func:`spark_hashed_sample`: a hashed sample of about
   ``max_rows`` units (``stable_uniform(unit id) < max_rows / n``: independent of partitioning
   and row order): the profile trees are grown on it, the report's figures, sensitivity
   analysis and MLflow input example use it.
2. :func:`spark_tree_statistics`: one ``mapInPandas`` pass over the units joined with their DR
   scores computes, per partition, the leaf moments of every K's tested tree
   (:func:`mlearner_dist.core.leaf_statistics.tree_statistics`); each partition returns one
   pickled row and the driver pools them (:func:`~mlearner_dist.core.leaf_statistics.\
combine_tree_statistics`). The driver holds O(K x leaves) numbers.
3. :func:`spark_subgroup_sums`: the same for the reported partition's subgroup sums
   (:func:`mlearner_dist.core.subgroup_statistics.subgroup_sums`).

DataFrame API only (no RDD, no broadcast variables), so it runs on Spark Connect too.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from mlearner_dist.core.folds import stable_uniform
from mlearner_dist.core.leaf_statistics import (
    LeafStatistics,
    combine_tree_statistics,
    tree_statistics,
)
from mlearner_dist.core.profile_tree import ProfileTree
from mlearner_dist.core.roles import Roles
from mlearner_dist.core.subgroup_statistics import (
    LeafSums,
    combine_subgroup_sums,
    subgroup_sums,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

logger = logging.getLogger(__name__)

#: the salt of the tree sample's hash (a different purpose from the folds' and the learners')
SAMPLE_SEED_OFFSET = 7_919
_KEY = "__mlearner_unit"


def spark_hashed_sample(
    spark: SparkSession,
    tables: Sequence[tuple[Path, Sequence[str] | None]],
    key: str,
    *,
    n_units: int,
    max_rows: int,
    seed: int,
) -> pd.DataFrame:
    """About ``max_rows`` units of several tables joined on their unit id.

    Parameters
    ----------
    spark : SparkSession
    tables : sequence of (path, columns or None)
        Parquet folders; the first is keyed by ``key``, the others by ``unit_id``. None: every
        column.
    key : str
        The first table's unit id column (the others' ``unit_id`` is dropped after the join).
    n_units, max_rows, seed
        As in :func:`spark_tree_sample`.

    Returns
    -------
    DataFrame
        Ordered by ``key``.
    """
    frac = min(1.0, max_rows / max(n_units, 1))
    salt = int(seed) + SAMPLE_SEED_OFFSET

    def sampled(path: Path, cols: Sequence[str] | None, id_col: str) -> DataFrame:
        # the hash depends on the unit id alone: each table is sampled before the join, so the
        # join moves about max_rows rows, not n
        df = spark.read.parquet(str(path))
        if cols is not None:
            df = df.select(*dict.fromkeys([id_col, *cols]))

        def keep(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
            for pdf in batches:
                yield pdf[stable_uniform(pdf[id_col].to_numpy(), salt) < frac]

        return df.mapInPandas(keep, df.schema)

    (first, first_cols), *others = tables
    joined = sampled(first, first_cols, key)
    for path, cols in others:
        right = sampled(path, cols, "unit_id").withColumnRenamed("unit_id", _KEY)
        joined = joined.join(right, joined[key] == right[_KEY], "inner").drop(_KEY)
    sample = joined.toPandas()
    return sample.sort_values(key, kind="stable").reset_index(drop=True)


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
    sample = spark_hashed_sample(
        spark,
        [(output / "units", list(roles.covariates)), (output / "clusters", None)],
        roles.unit_id,
        n_units=n_units,
        max_rows=max_rows,
        seed=seed,
    )
    logger.info("profile trees: a hashed sample of %d of %d units", len(sample), n_units)
    return sample


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
    needed = sorted({v for t in trees.values() for v in t.variables})
    joined = _units_with_effects(spark, output, roles, needed, list(scores.values()))
    treatment, outcome, mediators = roles.treatment, roles.outcome, tuple(roles.mediators)
    score_cols = dict(scores)

    def stats(pdf: pd.DataFrame) -> dict[int, LeafStatistics]:
        return tree_statistics(
            pdf,
            trees,
            treatment=treatment,
            outcome=outcome,
            mediators=mediators,
            scores=score_cols,
            method=method,
        )

    return _pooled(joined, stats, combine_tree_statistics)


def _pooled(
    joined: DataFrame,
    part: Callable[[pd.DataFrame], Any],
    combine: Callable[[list[Any]], Any],
) -> Any:
    """``combine`` of ``part(partition)`` over the partitions of ``joined``.

    Each partition's Arrow batches are concatenated first (a few hundred thousand rows: one
    group-by per table instead of one per batch) and its result comes back as one pickled row.
    """

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        frames = [pdf for pdf in batches if len(pdf)]
        if frames:
            result = part(pd.concat(frames, ignore_index=True))
            yield pd.DataFrame({"blob": [pickle.dumps(result)]})

    rows = joined.mapInPandas(run, "blob binary").collect()
    return combine([pickle.loads(bytes(r["blob"])) for r in rows])


def _units_with_effects(
    spark: SparkSession,
    output: Path,
    roles: Roles,
    covariates: Sequence[str],
    effect_columns: Sequence[str],
) -> DataFrame:
    """Treatment, outcome, mediators and ``covariates`` of the units, with effects columns."""
    cols = [roles.treatment, roles.outcome, *roles.mediators, *covariates]
    units = spark.read.parquet(str(output / "units")).select(*dict.fromkeys([roles.unit_id, *cols]))
    effects = (
        spark.read.parquet(str(output / "effects"))
        .select("unit_id", *effect_columns)
        .withColumnRenamed("unit_id", _KEY)
    )
    return units.join(effects, units[roles.unit_id] == effects[_KEY], "inner").drop(_KEY)


def spark_subgroup_sums(
    spark: SparkSession,
    output: Path,
    roles: Roles,
    tree: ProfileTree,
    *,
    propensity_clip: float,
    max_density_ratio: float,
) -> dict[int, LeafSums]:
    """The reported partition's leaf sums over every unit, from one pass on Spark.

    Parameters
    ----------
    spark : SparkSession
    output : Path
        The run's output folder (``units/`` and ``effects/``).
    roles : Roles
    tree : ProfileTree
        The reported partition.
    propensity_clip, max_density_ratio : float
        The effects' own settings (the overlap diagnostics).

    Returns
    -------
    dict of leaf -> LeafSums
    """
    meds = tuple(roles.mediators)
    effect_cols = ["score_total"]
    if meds:
        effect_cols = ["score_indirect", "score_direct", "score_total"]
        effect_cols += ["propensity", "propensity_mx"]
    joined = _units_with_effects(spark, output, roles, list(tree.variables), effect_cols)
    treatment, outcome = roles.treatment, roles.outcome

    def sums(pdf: pd.DataFrame) -> dict[int, LeafSums]:
        return subgroup_sums(
            pdf,
            tree.leaf_of(pdf),
            treatment=treatment,
            outcome=outcome,
            mediators=meds,
            propensity_clip=propensity_clip,
            max_density_ratio=max_density_ratio,
        )

    return _pooled(joined, sums, combine_subgroup_sums)
