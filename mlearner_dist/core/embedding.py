"""Step 2: the effect vector and its 2-D t-SNE embedding, exact for small n, by landmarks above.

Exact path (``n <= exact_max_n``): the full n x n matrix of effect differences
(:mod:`mlearner_dist.core.distances`) and openTSNE on it, as the reference does with Rtsne
(2-D, perplexity 30, random N(0, 1e-4) initialisation; 2000 iterations under
``fidelity: reference``).

Iterations (``fidelity: ours``, issue 16). Rtsne steps with a fixed learning rate of 200 and
needs its 2000 iterations; openTSNE steps with ``learning_rate = n / exaggeration`` (``n / 12``
while exaggerated, then ``n``), which scales the step to the data and converges in a few hundred
iterations (Belkina et al. 2019, "Automated optimized parameters for t-SNE"; openTSNE's defaults).
The rule is openTSNE's own schedule: ``n_iter = 750`` in all, the first
``min(250, n_iter // 3) = 250`` with exaggeration 12. Measured on simple-all (n = 1,000, one
thread): 1.3 s instead of 3.5 s for 2000 iterations. The K-means labels of a t-SNE of a 1-D
effect are not a stable function of the settings: multiplying the initialisation by 1 + 1e-6
or running openTSNE on two threads instead of one already moves the adjusted Rand index between
the labels of the 2000-iteration schedule down to 0.26 and 0.27 (K = 3, seed 0;
``perturbation_1000`` in benchmarks/results_selection.json), so the schedules are compared by
cluster homogeneity (tests/unit/test_embedding_quality.py) and by the decisions of the whole
selection (benchmarks/quality_selection.py, results_quality.json).

Landmark path (``n > exact_max_n``), where nothing n x n exists:

1. landmarks are chosen by :func:`select_landmarks`: equal quotas from quantile bins of the effect
   (of its first principal direction for several effects), one unit from each equal-width value
   bin of every effect (so the sparse tails are represented far beyond their share of units) and
   the extreme units of every effect. Within a stratum the units with the smallest *unit keys* win;
   a key is a hash of the unit id and the seed (:func:`unit_keys`), so the choice depends neither
   on row order nor on how the data are partitioned;
2. openTSNE embeds the landmarks from their (m x m) distance matrix;
3. a codebook of at most ``grid_size`` representative effect vectors (quantiles and an even value
   grid for one effect, a key-ordered random sample for several; plus every landmark, which keeps
   its fitted position) is placed once by openTSNE's out-of-sample ``transform`` against the FIXED
   landmark embedding;
4. every unit is placed from the codebook alone (:meth:`LandmarkEmbedding.transform`): linear
   interpolation between the two codebook neighbours of a single effect unless they sit on
   different sides of a gap in the embedding (then the nearest), nearest codebook point (KD-tree)
   for several effects. A unit's position is a function of its effect vector only, and costs
   O(log G) per unit whatever the number of landmarks.

openTSNE's silent choices are pinned (in :mod:`~mlearner_dist.core.tsne`) and recorded in the
returned ``info`` dictionary: the effective perplexity (openTSNE lowers it on small sets), the
number of neighbours, the neighbour method (exact neighbours from the precomputed matrix), the
gradient method (Barnes-Hut below 10,000 points, FFT above, as openTSNE would pick, but explicit)
and an explicit thread count.

The code lives in small modules, re-exported here with the same names (import them from here):
:mod:`~mlearner_dist.core.effect_vectors` (the effect vector and its exact sums),
:mod:`~mlearner_dist.core.landmarks` (unit keys, landmark choice),
:mod:`~mlearner_dist.core.tsne` (openTSNE on distances, the exact path),
:mod:`~mlearner_dist.core.landmark_embedding` (landmark t-SNE, codebook, placement) and
:mod:`~mlearner_dist.core.embedding_checks` (shared checks); :func:`embed`, here, chooses the path.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlearner_dist.core.effect_vectors import (
    EFFECT_NAMES,
    combine_partial_sums,
    effect_matrix,
    exact_partial_sums,
    scale_from_partials,
)
from mlearner_dist.core.effect_vectors import SCALINGS as SCALINGS
from mlearner_dist.core.embedding_checks import INITIALIZATIONS as INITIALIZATIONS
from mlearner_dist.core.embedding_checks import (
    TSNE_SETTINGS,
    check_embedding_settings,
    check_vectors,
)
from mlearner_dist.core.landmark_embedding import GAP_FACTOR as GAP_FACTOR
from mlearner_dist.core.landmark_embedding import TRANSFORM_CHUNK as TRANSFORM_CHUNK
from mlearner_dist.core.landmark_embedding import TRANSFORM_SETTINGS as TRANSFORM_SETTINGS
from mlearner_dist.core.landmark_embedding import DistanceFn as DistanceFn
from mlearner_dist.core.landmark_embedding import (
    LandmarkEmbedding,
    build_codebook,
    fit_landmark_embedding,
)
from mlearner_dist.core.landmarks import (
    LandmarkPlan,
    landmark_candidates,
    plan_landmarks,
    reference_mask,
    select_landmarks,
    unit_keys,
)
from mlearner_dist.core.tsne import EARLY_EXAGGERATION as EARLY_EXAGGERATION
from mlearner_dist.core.tsne import EARLY_EXAGGERATION_ITER as EARLY_EXAGGERATION_ITER
from mlearner_dist.core.tsne import FFT_MIN_POINTS as FFT_MIN_POINTS
from mlearner_dist.core.tsne import embed_exact

# ``X as X``: names of this module before the split that are not in __all__ (still importable).
__all__ = [
    "EFFECT_NAMES",
    "TSNE_SETTINGS",
    "LandmarkEmbedding",
    "LandmarkPlan",
    "build_codebook",
    "check_embedding_settings",
    "combine_partial_sums",
    "effect_matrix",
    "embed",
    "embed_exact",
    "exact_partial_sums",
    "fit_landmark_embedding",
    "landmark_candidates",
    "plan_landmarks",
    "reference_mask",
    "scale_from_partials",
    "select_landmarks",
    "unit_keys",
]


def embed(
    V: np.ndarray,
    *,
    exact_max_n: int = 5000,
    n_landmarks: int = 2000,
    perplexity: float = 30.0,
    n_iter: int = 750,
    kernel_power: int = 2,
    grid_size: int = 2000,
    random_state: int = 0,
    n_jobs: int = 1,
    keys: np.ndarray | None = None,
    theta: float = 0.5,
    initialization: str = "random",
) -> tuple[np.ndarray, dict[str, Any]]:
    """2-D t-SNE of the effect vectors: exact for ``n <= exact_max_n``, else landmarks.

    Parameters
    ----------
    V : ndarray, shape (n, d)
        Effect vectors (:func:`effect_matrix`).
    exact_max_n : int
        Largest n embedded exactly (full n x n distances).
    n_landmarks, grid_size, keys
        Landmark path (:class:`LandmarkEmbedding`).
    perplexity, n_iter, kernel_power, random_state, n_jobs, theta, initialization
        As in :func:`embed_exact`.

    Returns
    -------
    Y : ndarray, shape (n, 2)
        Landmarks keep their fitted positions; every other unit is placed from the codebook.
    info : dict
        Effective settings, ``info["path"]`` in {"exact", "landmark"}.
    """
    V = check_vectors(V)
    s = check_embedding_settings(
        exact_max_n=exact_max_n,
        n_landmarks=n_landmarks,
        grid_size=grid_size,
        perplexity=perplexity,
        n_iter=n_iter,
        kernel_power=kernel_power,
        random_state=random_state,
        n_jobs=n_jobs,
        theta=theta,
        initialization=initialization,
    )
    tsne = {name: s[name] for name in TSNE_SETTINGS}
    if V.shape[0] <= s["exact_max_n"]:
        return embed_exact(V, **tsne)
    model = fit_landmark_embedding(
        V, n_landmarks=s["n_landmarks"], grid_size=s["grid_size"], keys=keys, **tsne
    )
    Y = model.transform(V)
    Y[model.landmark_index_] = model.landmark_embedding_
    return Y, dict(model.info_)
