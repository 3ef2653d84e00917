"""Issue 16, quality: the fast t-SNE schedule clusters the units as the previous one did.

Data: simple-all (mlearner_dist.datasets, n = 1,000, noise sd 0.01, seed 1), effects cross-fitted
as the selection does, the standardised indirect effect embedded. For every seed s the K-means
labels (K = 2..5, 10 restarts) of two embeddings with the same initialisation are compared:

* ``old``: the previous schedule, 2000 iterations (still reachable as ``embed.n_iter: 2000`` and
  under ``fidelity: reference``);
* ``new``: the fast default, 750 iterations (250 exaggerated, then 500).

The issue asked for ARI >= 0.95 between the new and the old labels. No change of settings can
promise that: the K-means labels of a t-SNE of a one-dimensional effect are a chaotic function
of the optimisation (the layout is a set of arcs that K-means cuts where their bends fall). With
the old schedule itself, multiplying the initialisation by 1 + 1e-6 gives ARI 0.26 and two
openTSNE threads instead of one 0.27 (K = 3, seed 0; ``perturbation_1000`` in
benchmarks/results_selection.json). Measured here: median ARI(new, old) over (seed, K) 0.80.

So the tests check what can be promised:

* the labels stay related (median ARI >= 0.5, a guard against a broken embedding, not the 0.95
  the issue asked for);
* the clusters are as homogeneous in the effect as before: the between-cluster share of the
  effect's variance, paired by (seed, K), does not drop by more than three standard errors of
  the paired mean difference.

The decisions of the whole selection are compared over replicates in
benchmarks/quality_selection.py (results_quality.json). The figures are printed (``-s``).

A comparison of two schedules over many embeddings (86 s on the 2-core machine), so the module
runs in `make test-slow`; the default suite checks the embedding itself in
tests/unit/test_embedding.py and tests/integration/test_dask_embed_cluster.py.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from mlearner_dist.core.clustering import kmeans_for_k
from mlearner_dist.core.effects import cross_fit_effects
from mlearner_dist.core.embedding import effect_matrix, embed
from mlearner_dist.core.nuisance import NuisanceSpec
from mlearner_dist.datasets import simulate
from mlearner_dist.study import study_roles

pytestmark = pytest.mark.slow

KS = (2, 3, 4, 5)
SEEDS = (0, 1, 2, 3)
OLD = {"n_iter": 2000, "n_jobs": 1}
NEW = {"n_iter": 750, "n_jobs": 1}


def _labels(V: np.ndarray, seed: int, settings: dict[str, int]) -> dict[int, np.ndarray]:
    Y, info = embed(V, random_state=seed, **settings)
    assert info["path"] == "exact" and info["n_iter"] == settings["n_iter"]
    km = kmeans_for_k(Y, KS, n_init=10, max_iter=50, random_state=seed)
    return {k: km[k][0] for k in KS}


def _between_share(v: np.ndarray, labels: np.ndarray) -> float:
    """1 - within-cluster / total sum of squares of the effect ``v``."""
    within = sum(((v[labels == c] - v[labels == c].mean()) ** 2).sum() for c in np.unique(labels))
    return float(1.0 - within / ((v - v.mean()) ** 2).sum())


@pytest.fixture(scope="module")
def agreement() -> dict[str, np.ndarray]:
    frame = simulate("simple-all", 1000, seed=1, noise_sd=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        effects, _ = cross_fit_effects(
            frame, study_roles(True), NuisanceSpec(random_state=1), n_folds=5, seed=1
        )
    V = effect_matrix(effects, ["indirect"], "standardize")
    ari_new, share_old, share_new = [], [], []
    for seed in SEEDS:
        old, new = (_labels(V, seed, s) for s in (OLD, NEW))
        ari_new.append([adjusted_rand_score(old[k], new[k]) for k in KS])
        share_old.append([_between_share(V[:, 0], old[k]) for k in KS])
        share_new.append([_between_share(V[:, 0], new[k]) for k in KS])
    out = {
        "ari_new_old": np.array(ari_new),
        "share_old": np.array(share_old),
        "share_new": np.array(share_new),
    }
    for name, arr in out.items():
        print(f"{name} (rows: seeds {SEEDS}, columns: K {KS})\n{np.round(arr, 3)}")
    return out


def test_new_schedule_labels_stay_related_to_the_old(agreement: dict[str, np.ndarray]) -> None:
    """Median ARI(new, old) over (seed, K) >= 0.5 (see the module docstring for why not 0.95)."""
    assert np.median(agreement["ari_new_old"]) >= 0.5


def test_new_schedule_clusters_are_as_homogeneous_in_the_effect(
    agreement: dict[str, np.ndarray],
) -> None:
    """Paired by (seed, K), the between-cluster share does not drop by > 3 standard errors."""
    d = (agreement["share_new"] - agreement["share_old"]).ravel()
    se = d.std(ddof=1) / np.sqrt(d.size)
    print(f"between-cluster share, new - old: mean {d.mean():.3f}, se {se:.3f}")
    assert d.mean() >= -3 * se
