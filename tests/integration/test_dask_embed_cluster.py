"""Steps 2-3 on a real local Dask cluster: distributed equals in-memory, whatever the partitioning.

Where results may differ, and the bound tested here:

- the embedding (exact and landmark paths) is identical bit for bit on any partitioning and equal
  to the in-memory ``embed(..., keys=unit_keys(ids))``: every reduction uses exact sums or
  key-ordered samples;
- K-means with every unit in the seed sample is identical bit for bit as well;
- with the seed sample smaller than n and ``engine="dask_ml"``, dask-ml's Lloyd sums floats chunk
  by chunk, so the centres can differ in the last bits between partitionings (tested: within
  1e-9 relative) and a unit can change label only if it lies within that distance of a boundary
  between two clusters (tested: no label changes on a well-separated embedding).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import cdist
from sklearn.metrics import adjusted_rand_score

from mlearner_dist.backends.dask_clustering import dask_cluster_embedding
from mlearner_dist.backends.dask_embedding import dask_embed
from mlearner_dist.core.clustering import kmeans_for_k
from mlearner_dist.core.embedding import effect_matrix, embed, embed_exact, unit_keys
from mlearner_dist.exceptions import ConfigError, MLearnerError

pytestmark = pytest.mark.dask

SEED = 5
EMBED = dict(n_landmarks=200, grid_size=300, n_iter=300, n_jobs=1, random_state=SEED)


def effects_frame(n: int, seed: int) -> pd.DataFrame:
    """Two-group mixture of indirect effects (40% at +8, the rest at 0, sd 1), direct N(0, 1)."""
    rng = np.random.default_rng(seed)
    group = rng.random(n) < 0.4
    indirect = 8.0 * group + rng.normal(0.0, 1.0, n)
    direct = rng.normal(0.0, 1.0, n)
    return pd.DataFrame({"unit_id": np.arange(n, dtype=np.int64) * 7 + 3, "indirect": indirect,
                         "direct": direct, "total": indirect + direct, "group": group.astype(int)})


def write_parts(frame: pd.DataFrame, folder: Path, n_parts: int, seed: int) -> Path:
    """Write ``frame`` shuffled into ``n_parts`` parquet files."""
    folder.mkdir(parents=True)
    shuffled = frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    for i, piece in enumerate(np.array_split(np.arange(len(shuffled)), n_parts)):
        shuffled.iloc[piece].to_parquet(folder / f"part-{i:03d}.parquet", index=False)
    return folder


def read_sorted(folder: Path) -> pd.DataFrame:
    return pd.read_parquet(folder).sort_values("unit_id").reset_index(drop=True)


@pytest.fixture(scope="module")
def landmark_runs(tmp_path_factory, dask_client):
    """The same 3,000 units on 2 and on 7 partitions, embedded and clustered on Dask."""
    root = tmp_path_factory.mktemp("embed")
    frame = effects_frame(3000, 1)
    out = {"frame": frame}
    for n_parts in (2, 7):
        src = write_parts(frame, root / f"effects{n_parts}", n_parts, n_parts)
        info = dask_embed(src, root / f"emb{n_parts}", dask_client, effects=["indirect"],
                          exact_max_n=1000, **EMBED)
        clu = dask_cluster_embedding(root / f"emb{n_parts}", root / f"clu{n_parts}", dask_client,
                                     k_values=[2, 3, 4], n_init=4, random_state=SEED)
        out[n_parts] = (info, read_sorted(root / f"emb{n_parts}"), clu,
                        read_sorted(root / f"clu{n_parts}"))
    out["root"] = root
    return out


def test_landmark_embedding_is_identical_on_2_and_7_partitions(landmark_runs) -> None:
    info2, emb2, _, _ = landmark_runs[2]
    info7, emb7, _, _ = landmark_runs[7]
    assert info2["path"] == "landmark" and info2["n_partitions"] == 2
    assert info7["n_partitions"] == 7
    assert len(emb2) == 3000 and emb2["unit_id"].is_unique
    pd.testing.assert_frame_equal(emb2, emb7, check_exact=True)
    assert emb2["is_landmark"].sum() == info2["n_landmarks"]


def test_dask_embedding_equals_in_memory_embed_with_unit_keys(landmark_runs) -> None:
    frame = landmark_runs["frame"]
    _, emb, _, _ = landmark_runs[2]
    V = effect_matrix(frame, ["indirect"], "standardize")
    Y, info = embed(V, exact_max_n=1000, keys=unit_keys(frame["unit_id"].to_numpy(), SEED),
                    **EMBED)
    assert info["path"] == "landmark"
    expected = pd.DataFrame({"unit_id": frame["unit_id"], "tsne_1": Y[:, 0], "tsne_2": Y[:, 1]})
    expected = expected.sort_values("unit_id").reset_index(drop=True)
    assert np.array_equal(emb[["tsne_1", "tsne_2"]].to_numpy(),
                          expected[["tsne_1", "tsne_2"]].to_numpy())


def test_clusters_identical_across_partitionings_and_in_memory(landmark_runs) -> None:
    _, emb, clu2, lab2 = landmark_runs[2]
    _, _, clu7, lab7 = landmark_runs[7]
    pd.testing.assert_frame_equal(lab2, lab7, check_exact=True)
    assert clu2["wcss"] == clu7["wcss"]
    assert clu2["seed_sample"] == 3000  # all units: the in-memory restarts decide alone
    Y = emb[["tsne_1", "tsne_2"]].to_numpy()
    km = kmeans_for_k(Y, [2, 3, 4], n_init=4, random_state=SEED,
                      sample_order=unit_keys(emb["unit_id"].to_numpy(), SEED))
    for k, (labels, centers, wcss) in km.items():
        assert np.array_equal(lab2[f"k_{k}"].to_numpy(), labels)
        np.testing.assert_array_equal(np.array(clu2["centers"][str(k)]), centers)
        assert clu2["wcss"][str(k)] == pytest.approx(wcss, rel=1e-12)
    # the two effect groups are the two clusters
    frame = landmark_runs["frame"].sort_values("unit_id")
    assert adjusted_rand_score(lab2["k_2"], frame["group"]) == 1.0


def test_exact_path_on_dask_equals_in_memory(tmp_path, dask_client) -> None:
    frame = effects_frame(300, 2)
    src = write_parts(frame, tmp_path / "effects", 3, 0)
    info = dask_embed(src, tmp_path / "emb", dask_client, effects=["indirect", "direct"],
                      exact_max_n=1000, kernel_power=4, **EMBED)
    emb = read_sorted(tmp_path / "emb")
    ordered = frame.sort_values("unit_id").reset_index(drop=True)
    Y, ref_info = embed_exact(effect_matrix(ordered, ["indirect", "direct"], "standardize"),
                              n_iter=300, kernel_power=4, random_state=SEED, n_jobs=1)
    assert info["path"] == "exact" and info["n_units"] == 300 and emb["is_landmark"].all()
    assert info["kl_divergence"] == ref_info["kl_divergence"]
    assert np.array_equal(emb[["tsne_1", "tsne_2"]].to_numpy(), Y)


def blob_embedding(folder: Path, n_parts: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [20.0, 0.0], [0.0, 20.0]])
    truth = rng.integers(0, 3, 2400)
    xy = centres[truth] + rng.normal(0.0, 1.0, (2400, 2))
    frame = pd.DataFrame({"unit_id": np.arange(2400), "is_landmark": False,
                          "tsne_1": xy[:, 0], "tsne_2": xy[:, 1], "truth": truth})
    write_parts(frame.drop(columns="truth"), folder, n_parts, seed)
    return frame


def test_dask_ml_and_sklearn_engines_agree(tmp_path, dask_client) -> None:
    frame = blob_embedding(tmp_path / "emb2", 2, 0)
    blob_embedding(tmp_path / "emb7", 7, 0)
    runs = {}
    for name, folder, engine in [("ml2", "emb2", "dask_ml"), ("ml7", "emb7", "dask_ml"),
                                 ("sk2", "emb2", "sklearn")]:
        info = dask_cluster_embedding(tmp_path / folder, tmp_path / f"clu_{name}", dask_client,
                                      k_values=[2, 3], n_init=3, engine=engine, sample_size=100,
                                      random_state=1)
        assert info["seed_sample"] == 100 and info["engine"] == engine
        runs[name] = (info, read_sorted(tmp_path / f"clu_{name}"))
    truth = frame.sort_values("unit_id")["truth"].to_numpy()
    ml2, ml7, sk2 = runs["ml2"][1], runs["ml7"][1], runs["sk2"][1]
    assert adjusted_rand_score(ml2["k_3"], truth) == 1.0
    assert adjusted_rand_score(ml2["k_3"], sk2["k_3"]) == 1.0
    assert adjusted_rand_score(ml2["k_2"], sk2["k_2"]) == 1.0
    # chunking only moves the last bits of dask-ml's centres; labels do not change here
    pd.testing.assert_frame_equal(ml2, ml7, check_exact=True)
    for k in ("2", "3"):
        np.testing.assert_allclose(runs["ml2"][0]["centers"][k], runs["ml7"][0]["centers"][k],
                                   rtol=1e-9)
        # reported WCSS is the direct sum of squared distances to the nearest centre
        centres = np.array(runs["ml2"][0]["centers"][k])
        direct = cdist(frame.sort_values("unit_id")[["tsne_1", "tsne_2"]], centres,
                       "sqeuclidean").min(axis=1).sum()
        assert runs["ml2"][0]["wcss"][k] == pytest.approx(direct, rel=1e-10)


def test_errors(tmp_path, dask_client) -> None:
    frame = effects_frame(50, 3)
    frame.loc[4, "indirect"] = np.nan
    src = write_parts(frame, tmp_path / "effects", 2, 0)
    with pytest.raises(MLearnerError, match="'indirect' has 1 missing"):
        dask_embed(src, tmp_path / "emb", dask_client, effects=["indirect"], **EMBED)
    # settings are checked before any pass over the data (the folder need not exist)
    with pytest.raises(ConfigError, match=r"perplexity must be a number"):
        dask_embed(
            tmp_path / "none",
            tmp_path / "emb",
            dask_client,
            effects=["indirect"],
            **{**EMBED, "perplexity": 0.1},
        )
    with pytest.raises(ConfigError, match=r"cluster\.engine must be dask_ml or sklearn"):
        dask_cluster_embedding(src, tmp_path / "clu", dask_client, k_values=[2], engine="spark")


def test_dask_placement_logs_a_line_per_partition(tmp_path, dask_client, caplog) -> None:
    import logging
    import re

    caplog.set_level(logging.INFO, logger="mlearner_dist.core.progress")
    src = write_parts(effects_frame(1200, 2), tmp_path / "effects", 3, 1)
    settings = {**EMBED, "n_iter": 250, "exact_max_n": 500}
    dask_embed(src, tmp_path / "emb", dask_client, effects=["indirect"], **settings)
    messages = [r.getMessage() for r in caplog.records]
    (start,) = [m for m in messages if m.startswith("placing 1200 units (partitions): starting")]
    n_parts = int(start.split()[-2])
    pattern = rf"placing 1200 units \(partitions\): \d+/{n_parts} "
    placed = [m for m in messages if re.match(pattern, m)]
    assert len(placed) == n_parts >= 2, messages
    assert placed[-1].endswith("1200/1200 units placed")
    assert any(m.startswith("projecting ") and "(blocks): 1/1" in m for m in messages)
    assert any(re.match(r"t-SNE of \d+ points: 250/250 .*KL divergence", m) for m in messages)
    assert len(read_sorted(tmp_path / "emb")) == 1200
