"""Step 3 on Dask: ``embedding/`` -> ``clusters/`` (unit_id, k_2, k_3, ...), K-means per K.

The restart strategy of :mod:`mlearner_dist.core.clustering`: restarts on a key-chosen seed sample
in memory, then one Lloyd run on all units from the winning centres (dask-ml's ``KMeans`` with
those centres as ``init``, or scikit-learn in memory with ``engine: sklearn``), then our own
nearest-centre labels and within-cluster sums of squares, block by block (exact partial sums, so
the reported WCSS does not depend on the partitioning).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd

from mlearner_dist.core.clustering import (
    assign,
    best_restart,
    check_ks,
    lloyd,
    squared_distances,
)
from mlearner_dist.core.embedding import combine_partial_sums, exact_partial_sums, unit_keys
from mlearner_dist.exceptions import ConfigError, MLearnerError
from mlearner_dist.stages import atomic_output

__all__ = ["dask_cluster_embedding"]

logger = logging.getLogger(__name__)

UNIT = "unit_id"
XY = ["tsne_1", "tsne_2"]


def _smallest_keys(part: pd.DataFrame, size: int, seed: int) -> tuple[pd.DataFrame, int]:
    """The ``size`` units of smallest key in this partition, and the partition's row count."""
    keys = unit_keys(part[UNIT].to_numpy(), seed)
    order = np.argsort(keys, kind="stable")[:size]
    return pd.DataFrame({"key": keys[order], "tsne_1": part["tsne_1"].to_numpy()[order],
                         "tsne_2": part["tsne_2"].to_numpy()[order]}), len(part)


def _points(part: pd.DataFrame) -> np.ndarray:
    return np.ascontiguousarray(part[XY].to_numpy(dtype=np.float64))


def _label(part: pd.DataFrame, centers: dict[int, np.ndarray]) -> pd.DataFrame:
    Y = part[XY].to_numpy(dtype=np.float64)
    out = {UNIT: part[UNIT].to_numpy()}
    for k, c in centers.items():
        out[f"k_{k}"] = assign(Y, c)[0].astype(np.int32)
    return pd.DataFrame(out)


def _wcss(part: pd.DataFrame, centers: dict[int, np.ndarray]) -> dict[int, dict[int, int]]:
    """Exact partial sums of the squared distances to the nearest centre, per K."""
    Y = part[XY].to_numpy(dtype=np.float64)
    return {k: exact_partial_sums(squared_distances(Y, *assign(Y, c)))
            for k, c in centers.items()}


def dask_cluster_embedding(
    embedding_dir: str | Path,
    clusters_dir: str | Path,
    client: Any,
    *,
    k_values: Sequence[int],
    n_init: int = 10,
    max_iter: int = 50,
    engine: str = "dask_ml",
    random_state: int = 0,
    sample_size: int = 20_000,
) -> dict[str, Any]:
    """K-means of the embedding for every K; write ``clusters_dir`` atomically.

    Parameters
    ----------
    embedding_dir, clusters_dir : path
    client : distributed.Client
    k_values : sequence of int
    n_init : int
        Restarts per K (on the seed sample).
    max_iter : int
        Lloyd iterations.
    engine : {"dask_ml", "sklearn"}
        Where the final Lloyd run on all units happens.
    random_state : int
    sample_size : int
        Seed sample size.

    Returns
    -------
    dict
        ``n_units``, ``engine``, ``wcss`` and ``centers`` per K, timings.
    """
    if engine not in ("dask_ml", "sklearn"):
        raise ConfigError(f"cluster.engine must be dask_ml or sklearn, got {engine!r}")
    started = time.perf_counter()
    ddf = dd.read_parquet(str(embedding_dir), columns=[UNIT, *XY])
    parts = ddf.to_delayed()
    pieces = client.compute(
        [dask.delayed(_smallest_keys)(p, sample_size, random_state) for p in parts], sync=True)
    lengths = [int(length) for _, length in pieces]
    n = sum(lengths)
    sample = pd.concat([frame for frame, _ in pieces], ignore_index=True).sort_values(
        "key", kind="stable").head(sample_size)
    n_sample = len(sample)
    if n_sample == 0:
        raise MLearnerError(f"the embedding {embedding_dir} has no rows: run the embed stage")
    Ys = sample[XY].to_numpy(dtype=np.float64)
    ks = check_ks(k_values, n)
    whole = n_sample == n
    X = None
    Y_all = None
    if not whole and engine == "dask_ml":
        # one dask.array block per partition, with the row counts known from the sampling pass
        # (DataFrame.to_dask_array(lengths=True) miscounts partitions of a projected parquet read)
        X = da.concatenate([
            da.from_delayed(dask.delayed(_points)(p), shape=(length, 2), dtype=np.float64)
            for p, length in zip(parts, lengths, strict=True) if length
        ]).persist()
    elif not whole:
        Y_all = np.concatenate(client.compute([dask.delayed(_points)(p) for p in parts],
                                              sync=True))
    centers: dict[int, np.ndarray] = {}
    for k in ks:
        c = best_restart(Ys, k, n_init=n_init, max_iter=max_iter, random_state=random_state)
        if not whole:
            if engine == "dask_ml":
                from dask_ml.cluster import KMeans

                km = KMeans(n_clusters=k, init=c, n_init=1, max_iter=max_iter,
                            random_state=random_state).fit(X)
                c = np.asarray(km.cluster_centers_, dtype=np.float64)
            else:
                c = lloyd(Y_all, c, max_iter)[1]
        centers[k] = assign(c, c)[1]
        logger.info("cluster: K=%d done", k)
    per_part = client.compute([dask.delayed(_wcss)(p, centers) for p in parts], sync=True)
    # exact sums: the same bits on any partitioning, equal to core.clustering.within_cluster_ss
    wcss = {k: combine_partial_sums(w[k] for w in per_part) for k in ks}
    meta = pd.DataFrame({UNIT: ddf[UNIT]._meta,
                         **{f"k_{k}": pd.Series([], dtype=np.int32) for k in ks}})
    labelled = ddf.map_partitions(_label, centers, meta=meta)
    with atomic_output(Path(clusters_dir)) as tmp:
        client.compute(labelled.to_parquet(str(tmp), write_index=False, compute=False), sync=True)
    return {
        "n_units": n,
        "engine": engine if not whole else "in-memory (all units fit the seed sample)",
        "k_values": ks,
        "n_init": int(n_init),
        "max_iter": int(max_iter),
        "seed_sample": n_sample,
        "wcss": {str(k): v for k, v in wcss.items()},
        "centers": {str(k): c.tolist() for k, c in centers.items()},
        "seconds": round(time.perf_counter() - started, 2),
    }
