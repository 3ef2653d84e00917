"""Step 2 on Dask: the effects table -> ``embedding/`` parquet, with nothing n x n anywhere.

Every pass works partition by partition and sends only summaries to the driver:

1. counts, exact partial sums, minima and maxima of each effect column (exact sums make the
   standardisation identical on any partitioning, see
   :func:`~mlearner_dist.core.embedding.exact_partial_sums`);
2. exact sums of squared deviations (the standard deviations);
3. the reference sample (units whose key is below ``reference_size / n``) for quantile edges, the
   principal direction and the codebook;
4. landmark candidates per partition; the same rule on their union gives the landmarks
   (:func:`~mlearner_dist.core.embedding.landmark_candidates`);
5. the landmark distance matrix blockwise with dask.array, openTSNE on the landmarks, the codebook
   projected against the fixed landmark embedding (driver, bounded by ``n_landmarks`` and
   ``grid_size``);
6. every unit placed from the codebook, partition by partition on the workers, and written
   (one parquet file per non-empty partition, a progress line as each one finishes).

At ``n <= exact_max_n`` the table is small and the exact path runs in memory as the reference does.
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
from distributed import as_completed

from mlearner_dist.core.distances import effect_distances
from mlearner_dist.core.embedding import (
    TSNE_SETTINGS,
    LandmarkEmbedding,
    check_embedding_settings,
    combine_partial_sums,
    effect_matrix,
    embed_exact,
    exact_partial_sums,
    landmark_candidates,
    reference_mask,
    scale_from_partials,
    unit_keys,
)
from mlearner_dist.core.progress import Progress
from mlearner_dist.exceptions import MLearnerError
from mlearner_dist.stages import atomic_output

__all__ = ["dask_distances", "dask_embed"]

logger = logging.getLogger(__name__)

UNIT = "unit_id"


def _raw(part: pd.DataFrame, effects: Sequence[str]) -> np.ndarray:
    return part[list(effects)].to_numpy(dtype=np.float64).reshape(len(part), len(effects))


def _summaries(part: pd.DataFrame, effects: Sequence[str]) -> dict[str, Any]:
    X = _raw(part, effects)
    finite = np.isfinite(X)
    return {
        "n": len(part),
        "nonfinite": (~finite).sum(axis=0).tolist(),
        "sums": [exact_partial_sums(X[:, j][finite[:, j]]) for j in range(X.shape[1])],
        "min": np.where(finite, X, np.inf).min(axis=0).tolist() if len(part) else None,
        "max": np.where(finite, X, -np.inf).max(axis=0).tolist() if len(part) else None,
    }


def _squared_deviations(part: pd.DataFrame, effects: Sequence[str], means: np.ndarray) -> list:
    X = _raw(part, effects)
    return [exact_partial_sums((X[:, j] - means[j]) ** 2) for j in range(X.shape[1])]


def _vectors(part: pd.DataFrame, effects: Sequence[str], scale: np.ndarray) -> np.ndarray:
    return _raw(part, effects) / scale


def _reference_rows(
    part: pd.DataFrame, effects: Sequence[str], scale: np.ndarray, n: int, size: int, seed: int
) -> pd.DataFrame:
    keys = unit_keys(part[UNIT].to_numpy(), seed)
    keep = reference_mask(keys, n, size)
    V = _vectors(part, effects, scale)[keep]
    return pd.DataFrame({"key": keys[keep], **{f"v{j}": V[:, j] for j in range(V.shape[1])}})


def _candidates(
    part: pd.DataFrame, effects: Sequence[str], scale: np.ndarray, plan: Any, seed: int
) -> pd.DataFrame:
    keys = unit_keys(part[UNIT].to_numpy(), seed)
    V = _vectors(part, effects, scale)
    idx = landmark_candidates(V, keys, plan)
    return pd.DataFrame(
        {
            UNIT: part[UNIT].to_numpy()[idx],
            "key": keys[idx],
            **{f"v{j}": V[idx, j] for j in range(V.shape[1])},
        }
    )


def _place(
    part: pd.DataFrame,
    effects: Sequence[str],
    scale: np.ndarray,
    model: LandmarkEmbedding,
    landmarks: pd.DataFrame,
) -> pd.DataFrame:
    V = _vectors(part, effects, scale)
    Y = model.transform(V) if len(part) else np.empty((0, 2))
    ids = part[UNIT].to_numpy()
    pos = pd.Index(landmarks[UNIT]).get_indexer(ids)
    is_lm = pos >= 0
    if is_lm.any():
        Y[is_lm] = landmarks[["tsne_1", "tsne_2"]].to_numpy()[pos[is_lm]]
    return pd.DataFrame({UNIT: ids, "is_landmark": is_lm, "tsne_1": Y[:, 0], "tsne_2": Y[:, 1]})


def _write_block(frame: pd.DataFrame, path: str) -> int:
    """Write one placed partition (nothing for an empty one); returns its rows."""
    if len(frame):
        frame.to_parquet(path, index=False)
    return len(frame)


def dask_distances(client: Any, kernel_power: int, block_size: int):
    """A ``(A, B) -> distances`` function computed blockwise with dask.array on ``client``.

    Parameters
    ----------
    client : distributed.Client
    kernel_power : {2, 4}
    block_size : int
        Rows per block.

    Returns
    -------
    callable
    """

    def distances(A: np.ndarray, B: np.ndarray) -> np.ndarray:
        rows = max(1, min(block_size, 4096))
        Ad = da.from_array(np.ascontiguousarray(A), chunks=(rows, A.shape[1]))
        Bd = da.from_array(np.ascontiguousarray(B), chunks=(rows, B.shape[1]))
        D = da.blockwise(
            lambda a, b: effect_distances(a, b, kernel_power=kernel_power),
            "ij",
            Ad,
            "ik",
            Bd,
            "jk",
            dtype=np.float64,
            concatenate=True,
        )
        return np.asarray(client.compute(D).result())

    return distances


def dask_embed(
    effects_dir: str | Path,
    out_dir: str | Path,
    client: Any,
    *,
    effects: Sequence[str],
    scaling: str = "standardize",
    exact_max_n: int = 5000,
    n_landmarks: int = 2000,
    perplexity: float = 30.0,
    n_iter: int = 750,
    kernel_power: int = 2,
    grid_size: int = 2000,
    block_size: int = 200_000,
    random_state: int = 0,
    n_jobs: int = 1,
    reference_size: int = 100_000,
) -> dict[str, Any]:
    """Embed every unit of ``effects_dir`` and write ``out_dir`` (unit_id, is_landmark, tsne_1/2).

    Parameters
    ----------
    effects_dir, out_dir : path
        The effects parquet folder; the embedding parquet folder (written atomically).
    client : distributed.Client
    effects : sequence of str
        Effect columns forming the vector.
    scaling : {"standardize", "none"}
    exact_max_n, n_landmarks, perplexity, n_iter, kernel_power, grid_size, random_state, n_jobs
        As in :func:`mlearner_dist.core.embedding.embed`.
    block_size : int
        Target rows per partition and per distance block.
    reference_size : int
        Reference sample size.

    Returns
    -------
    dict
        The embedding info (path, effective openTSNE settings, timings, ``n_units``).
    """
    started = time.perf_counter()
    s = check_embedding_settings(
        exact_max_n=exact_max_n,
        n_landmarks=n_landmarks,
        grid_size=grid_size,
        perplexity=perplexity,
        n_iter=n_iter,
        kernel_power=kernel_power,
        random_state=random_state,
        n_jobs=n_jobs,
        reference_size=reference_size,
        block_size=block_size,
    )
    tsne = {name: s[name] for name in TSNE_SETTINGS if name in s}
    effects = list(effects)
    ddf = dd.read_parquet(str(effects_dir), columns=[UNIT, *effects])
    parts = ddf.to_delayed()
    summ = client.compute([dask.delayed(_summaries)(p, effects) for p in parts], sync=True)
    n = int(sum(s["n"] for s in summ))
    if n == 0:
        raise MLearnerError(f"the effects table {effects_dir} has no rows: run the effects stage")
    for j, name in enumerate(effects):
        bad = sum(s["nonfinite"][j] for s in summ)
        if bad:
            raise MLearnerError(
                f"effect column {name!r} has {bad} missing or non-finite value(s) of {n}: without "
                "a mediator only 'total' is defined (embed.effects=[total])"
            )
    if n <= exact_max_n:
        frame = ddf.compute().sort_values(UNIT, kind="stable").reset_index(drop=True)
        V = effect_matrix(frame, effects, scaling)
        Y, info = embed_exact(V, **tsne)
        out = pd.DataFrame(
            {
                UNIT: frame[UNIT].to_numpy(),
                "is_landmark": np.ones(n, bool),
                "tsne_1": Y[:, 0],
                "tsne_2": Y[:, 1],
            }
        )
        with atomic_output(Path(out_dir)) as tmp:
            tmp.mkdir(parents=True)
            out.to_parquet(tmp / "part-0.parquet", index=False)
        return {**info, "n_units": n, "seconds": round(time.perf_counter() - started, 2)}

    v_min_raw = np.array([min(s["min"][j] for s in summ if s["n"]) for j in range(len(effects))])
    v_max_raw = np.array([max(s["max"][j] for s in summ if s["n"]) for j in range(len(effects))])
    if scaling == "standardize":
        means = np.array(
            [combine_partial_sums(s["sums"][j] for s in summ) / n for j in range(len(effects))]
        )
        ss = client.compute(
            [dask.delayed(_squared_deviations)(p, effects, means) for p in parts], sync=True
        )
        scale = np.array(
            [
                scale_from_partials(n, combine_partial_sums(part[j] for part in ss), name)
                for j, name in enumerate(effects)
            ]
        )
    else:
        scale = np.ones(len(effects))
    v_min, v_max = v_min_raw / scale, v_max_raw / scale
    ref = pd.concat(
        client.compute(
            [
                dask.delayed(_reference_rows)(p, effects, scale, n, reference_size, random_state)
                for p in parts
            ],
            sync=True,
        ),
        ignore_index=True,
    ).sort_values("key", kind="stable")
    V_ref = ref[[f"v{j}" for j in range(len(effects))]].to_numpy()
    model = LandmarkEmbedding(
        n_landmarks=n_landmarks,
        grid_size=grid_size,
        reference_size=reference_size,
        block_size=min(block_size, 4096),
        **tsne,
    )
    plan = model.plan(n, v_min, v_max, V_ref)
    cand = pd.concat(
        client.compute(
            [dask.delayed(_candidates)(p, effects, scale, plan, random_state) for p in parts],
            sync=True,
        ),
        ignore_index=True,
    )
    vcols = [f"v{j}" for j in range(len(effects))]
    keep = landmark_candidates(cand[vcols].to_numpy(), cand["key"].to_numpy(), plan)
    lm = cand.iloc[keep].sort_values("key", kind="stable").reset_index(drop=True)
    logger.info("embed: %d units, %d landmarks from %d candidates", n, len(lm), len(cand))
    model.fit_parts(
        lm[vcols].to_numpy(),
        V_ref,
        v_min,
        v_max,
        n_units=n,
        distance_fn=dask_distances(client, kernel_power, block_size),
    )
    landmarks = pd.DataFrame(
        {
            UNIT: lm[UNIT].to_numpy(),
            "tsne_1": model.landmark_embedding_[:, 0],
            "tsne_2": model.landmark_embedding_[:, 1],
        }
    )
    fitted = time.perf_counter()
    meta = pd.DataFrame(
        {
            UNIT: ddf[UNIT]._meta,
            "is_landmark": pd.Series([], dtype=bool),
            "tsne_1": pd.Series([], dtype=float),
            "tsne_2": pd.Series([], dtype=float),
        }
    )
    placed = ddf.map_partitions(_place, effects, scale, model, landmarks, meta=meta)
    with atomic_output(Path(out_dir)) as tmp:
        tmp.mkdir(parents=True)
        blocks = placed.to_delayed()
        futures = client.compute(
            [
                dask.delayed(_write_block)(block, str(tmp / f"part.{i:05d}.parquet"))
                for i, block in enumerate(blocks)
            ]
        )
        placed_rows = 0
        with Progress(len(futures), f"placing {n} units (partitions)") as bar:
            for fut in as_completed(futures):
                placed_rows += fut.result()
                bar.update(message=f"{placed_rows}/{n} units placed")
    info = dict(model.info_)
    info.update(
        n_units=n,
        scaling=scaling,
        scale=scale.tolist(),
        effects=effects,
        n_partitions=len(parts),
        seconds_fit=round(fitted - started, 2),
        seconds_place=round(time.perf_counter() - fitted, 2),
        seconds=round(time.perf_counter() - started, 2),
    )
    return info
