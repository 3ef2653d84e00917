"""The landmark path (``n > exact_max_n``): landmark t-SNE and out-of-sample placement.

:class:`LandmarkEmbedding` embeds the landmarks (:mod:`mlearner_dist.core.landmarks`) with
:func:`mlearner_dist.core.tsne.tsne_on_distances`, projects a codebook once with openTSNE's
``transform`` against the fixed landmark embedding, and places every unit from the codebook
alone (steps 2-4 in :mod:`mlearner_dist.core.embedding`).
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from mlearner_dist.core.distances import (
    effect_distances_blockwise,
)
from mlearner_dist.core.embedding_checks import (
    TSNE_SETTINGS,
    check_embedding_settings,
    check_vectors,
)
from mlearner_dist.core.landmarks import (
    LandmarkPlan,
    landmark_candidates,
    plan_landmarks,
    reference_mask,
    resolve_keys,
)
from mlearner_dist.core.progress import Progress
from mlearner_dist.core.tsne import kernel_info, tsne_on_distances
from mlearner_dist.exceptions import MLearnerError

__all__ = [
    "GAP_FACTOR",
    "LANDMARK_SETTINGS",
    "TRANSFORM_CHUNK",
    "TRANSFORM_SETTINGS",
    "DistanceFn",
    "LandmarkEmbedding",
    "build_codebook",
    "fit_landmark_embedding",
]

logger = logging.getLogger(__name__)

#: openTSNE ``transform`` settings used to place the codebook (openTSNE's own defaults).
TRANSFORM_SETTINGS: dict[str, Any] = {
    "perplexity": 5.0,
    "k": 25,
    "n_iter": 250,
    "learning_rate": 0.1,
    "exaggeration": 1.5,
    "initialization": "median",
}

#: Codebook points placed by one openTSNE ``transform`` call (bounds the distance block in memory).
TRANSFORM_CHUNK = 2000

#: In 1-D, interpolate between codebook neighbours only if their embedded distance is at most this
#: multiple of the median embedded distance between consecutive codebook points.
GAP_FACTOR = 5.0

DistanceFn = Callable[[np.ndarray, np.ndarray], np.ndarray]

#: The settings of :class:`LandmarkEmbedding` besides the t-SNE ones (``TSNE_SETTINGS``).
LANDMARK_SETTINGS = (
    "n_landmarks",
    "grid_size",
    "n_bins",
    "tail_fraction",
    "reference_size",
    "block_size",
)


def build_codebook(
    landmark_vectors: np.ndarray,
    V_ref: np.ndarray,
    v_min: np.ndarray,
    v_max: np.ndarray,
    grid_size: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Representative effect vectors that are projected once, with the landmarks among them.

    One effect: the landmarks' values, ``grid_size / 2`` quantiles of the reference sample and
    ``grid_size / 2`` evenly spaced values over [min, max]; several: the landmarks and the first
    ``grid_size`` reference units in key order. Exact duplicates collapse (a landmark wins).

    Parameters
    ----------
    landmark_vectors : ndarray, shape (m, d)
    V_ref : ndarray, shape (r, d)
        Reference sample in ascending key order.
    v_min, v_max : ndarray, shape (d,)
    grid_size : int

    Returns
    -------
    codebook : ndarray, shape (G, d)
        Sorted by value for one effect.
    anchor : ndarray of int, shape (G,)
        Landmark index of each codebook point that is a landmark's vector, else -1.
    """
    m, d = landmark_vectors.shape
    if d == 1:
        half = max(2, grid_size // 2)
        extra = np.concatenate(
            [
                np.quantile(V_ref[:, 0], np.linspace(0.0, 1.0, half)),
                np.linspace(float(v_min[0]), float(v_max[0]), half),
            ]
        )[:, None]
    else:
        extra = V_ref[:grid_size]
    rows = np.vstack([landmark_vectors, extra])
    _, first = np.unique(rows, axis=0, return_index=True)
    keep = np.sort(first)
    codebook = rows[keep]
    anchor = np.where(keep < m, keep, -1)
    if d == 1:
        order = np.argsort(codebook[:, 0], kind="stable")
        codebook, anchor = codebook[order], anchor[order]
    return np.ascontiguousarray(codebook), anchor


class LandmarkEmbedding:
    """Landmark t-SNE with out-of-sample placement through a projected codebook.

    Parameters
    ----------
    n_landmarks : int
        Requested landmarks (>= 5).
    perplexity : float
        Perplexity of the landmark embedding (lowered on small sets; recorded).
    n_iter : int
        Total t-SNE iterations on the landmarks.
    kernel_power : {2, 4}
        Power of the effect difference in the Gaussian kernel.
    grid_size : int
        Codebook size besides the landmarks (>= 10).
    random_state : int
        Seed of the keys (in memory without ids) and of the t-SNE initialisation.
    n_jobs : int
        openTSNE threads.
    theta : float
        Barnes-Hut accuracy (below 10,000 landmarks).
    initialization : {"random", "spectral"}
    n_bins, tail_fraction, reference_size
        Landmark stratification (:func:`plan_landmarks`, :func:`reference_mask`).
    interpolate : bool
        One effect: interpolate between codebook neighbours (else the nearest).
    block_size : int
        Rows per block of the distance computations.

    Attributes
    ----------
    landmark_index_ : ndarray of int or None
        Rows of V that are landmarks, ascending key order (None after :meth:`fit_parts`).
    landmark_vectors_ : ndarray, shape (m, d)
    landmark_embedding_ : ndarray, shape (m, 2)
        Fixed landmark positions (centred as openTSNE's ``transform`` centres them).
    codebook_ : ndarray, shape (G, d)
    codebook_embedding_ : ndarray, shape (G, 2)
    info_ : dict
        Effective settings for result.json's ``embedding`` entry.
    """

    def __init__(
        self,
        *,
        n_landmarks: int = 2000,
        perplexity: float = 30.0,
        n_iter: int = 750,
        kernel_power: int = 2,
        grid_size: int = 2000,
        random_state: int = 0,
        n_jobs: int = 1,
        theta: float = 0.5,
        initialization: str = "random",
        n_bins: int = 50,
        tail_fraction: float = 0.2,
        reference_size: int = 100_000,
        interpolate: bool = True,
        block_size: int = 2048,
    ) -> None:
        self.n_landmarks = n_landmarks
        self.perplexity = perplexity
        self.n_iter = n_iter
        self.kernel_power = kernel_power
        self.grid_size = grid_size
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.theta = theta
        self.initialization = initialization
        self.n_bins = n_bins
        self.tail_fraction = tail_fraction
        self.reference_size = reference_size
        self.interpolate = interpolate
        self.block_size = block_size

    def _validate(self) -> None:
        check_embedding_settings(
            **{name: getattr(self, name) for name in (*TSNE_SETTINGS, *LANDMARK_SETTINGS)}
        )

    def plan(
        self, n_units: int, v_min: np.ndarray, v_max: np.ndarray, V_ref: np.ndarray
    ) -> LandmarkPlan:
        """The landmark stratification for these summaries (see :func:`plan_landmarks`)."""
        self._validate()
        return plan_landmarks(
            n_units,
            np.asarray(v_min, dtype=float),
            np.asarray(v_max, dtype=float),
            V_ref,
            n_landmarks=self.n_landmarks,
            n_bins=self.n_bins,
            tail_fraction=self.tail_fraction,
        )

    def fit(self, V: np.ndarray, *, keys: np.ndarray | None = None) -> LandmarkEmbedding:
        """Choose landmarks, embed them, project the codebook.

        Parameters
        ----------
        V : ndarray, shape (n, d)
            Effect vectors.
        keys : ndarray, shape (n,), optional
            Unit keys (:func:`unit_keys`); give them to match the Dask backend exactly.

        Returns
        -------
        self
        """
        self._validate()
        V = check_vectors(V)
        keys = resolve_keys(keys, V.shape[0], self.random_state)
        ref_idx = np.flatnonzero(reference_mask(keys, V.shape[0], self.reference_size))
        ref_idx = ref_idx[np.argsort(keys[ref_idx], kind="stable")]
        V_ref = V[ref_idx]
        v_min, v_max = V.min(axis=0), V.max(axis=0)
        plan = self.plan(V.shape[0], v_min, v_max, V_ref)
        idx = landmark_candidates(V, keys, plan)
        idx = idx[np.argsort(keys[idx], kind="stable")]
        self.fit_parts(V[idx], V_ref, v_min, v_max, n_units=V.shape[0])
        self.landmark_index_ = idx
        return self

    def fit_parts(
        self,
        landmark_vectors: np.ndarray,
        V_ref: np.ndarray,
        v_min: np.ndarray,
        v_max: np.ndarray,
        *,
        n_units: int,
        distance_fn: DistanceFn | None = None,
    ) -> LandmarkEmbedding:
        """Fit from driver-sized pieces (what the Dask backend gathers).

        Parameters
        ----------
        landmark_vectors : ndarray, shape (m, d)
            Landmark effect vectors, ascending key order.
        V_ref : ndarray, shape (r, d)
            Reference sample, ascending key order.
        v_min, v_max : ndarray, shape (d,)
            Column minima and maxima over all units.
        n_units : int
            Number of units (recorded).
        distance_fn : callable, optional
            ``(A, B) -> (na, nb)`` distances for this ``kernel_power``; default
            :func:`~mlearner_dist.core.distances.effect_distances_blockwise`. The Dask backend
            passes a dask.array version.

        Returns
        -------
        self
        """
        self._validate()
        VL = check_vectors(landmark_vectors, "landmark_vectors")
        V_ref = check_vectors(V_ref, "V_ref")
        m = VL.shape[0]
        if m < 4:
            raise MLearnerError(f"the landmark embedding needs at least 4 landmarks, got {m}")
        kp = int(self.kernel_power)
        if distance_fn is None:

            def distance_fn(A: np.ndarray, B: np.ndarray) -> np.ndarray:
                return effect_distances_blockwise(A, B, kernel_power=kp, block_size=self.block_size)

        D = distance_fn(VL, VL)
        emb, tsne_info = tsne_on_distances(
            D,
            perplexity=float(self.perplexity),
            n_iter=int(self.n_iter),
            theta=float(self.theta),
            random_state=int(self.random_state),
            n_jobs=int(self.n_jobs),
            initialization=self.initialization,
        )
        del D
        # transform() re-centres the reference embedding in place: centre it once ourselves so
        # the stored landmark positions and the projected codebook share one frame.
        emb -= (np.max(emb, axis=0) + np.min(emb, axis=0)) / 2
        YL = np.array(emb, dtype=np.float64)
        codebook, anchor = build_codebook(VL, V_ref, v_min, v_max, int(self.grid_size))
        Yc = np.empty((codebook.shape[0], 2))
        is_anchor = anchor >= 0
        Yc[is_anchor] = YL[anchor[is_anchor]]
        todo = np.flatnonzero(~is_anchor)
        starts = range(0, todo.size, TRANSFORM_CHUNK)
        desc = f"projecting {todo.size} codebook points onto {m} landmarks (blocks)"
        with Progress(len(starts), desc, every=min(1.0, 1.0 / max(1, len(starts)))) as bar:
            for start in starts:
                rows = todo[start : start + TRANSFORM_CHUNK]
                block = distance_fn(codebook[rows], VL)
                # transform() moves its reference in place: work on a full copy (pickle keeps
                # the affinities and optimizer settings; copy.deepcopy drops them)
                ref = pickle.loads(pickle.dumps(emb))
                Yc[rows] = np.asarray(
                    ref.transform(
                        block,
                        perplexity=TRANSFORM_SETTINGS["perplexity"],
                        k=TRANSFORM_SETTINGS["k"],
                        n_iter=TRANSFORM_SETTINGS["n_iter"],
                        learning_rate=TRANSFORM_SETTINGS["learning_rate"],
                        exaggeration=TRANSFORM_SETTINGS["exaggeration"],
                        initialization=TRANSFORM_SETTINGS["initialization"],
                    ),
                    dtype=np.float64,
                )
                bar.update(message=f"{start + len(rows)}/{todo.size} points placed")
        self.landmark_index_ = None
        self.landmark_vectors_ = VL
        self.landmark_embedding_ = YL
        self.codebook_ = codebook
        self.codebook_embedding_ = Yc
        one_d = codebook.shape[1] == 1
        if one_d:
            steps = np.linalg.norm(np.diff(Yc, axis=0), axis=1)
            tol = GAP_FACTOR * float(np.median(steps)) if steps.size else 0.0
            self._bridge = (steps <= tol) if self.interpolate else np.zeros(steps.size, bool)
            self._tree = None
        else:
            self._bridge = None
            self._tree = cKDTree(codebook)
        self.info_ = {
            "path": "landmark",
            "n_units": int(n_units),
            "n_landmarks": m,
            "n_landmarks_requested": int(self.n_landmarks),
            **kernel_info(kp),
            **tsne_info,
            "grid_size": int(self.grid_size),
            "codebook_size": int(codebook.shape[0]),
            "placement": "interpolate-1d" if one_d and self.interpolate else "nearest",
            "transform": dict(TRANSFORM_SETTINGS),
            "n_bins": int(self.n_bins),
            "tail_fraction": float(self.tail_fraction),
            "reference_size": int(min(self.reference_size, n_units)),
            "random_state": int(self.random_state),
        }
        logger.info(
            "landmark t-SNE: %d landmarks, codebook %d, perplexity %.1f, %s gradients",
            m,
            codebook.shape[0],
            tsne_info["perplexity_effective"],
            tsne_info["gradient_method"],
        )
        return self

    def transform(self, V_block: np.ndarray) -> np.ndarray:
        """Place units from their effect vectors alone (the codebook, never the landmarks).

        Parameters
        ----------
        V_block : ndarray, shape (b, d)

        Returns
        -------
        ndarray, shape (b, 2)
            One effect: ``y = (1 - t) Y_k + t Y_{k+1}`` with ``t = (v - c_k) / (c_{k+1} - c_k)``
            between the codebook neighbours ``c_k <= v <= c_{k+1}`` when they are not separated by
            a gap in the embedding, else the nearest of the two (beyond the ends: the end point).
            Several effects: the nearest codebook point.
        """
        if not hasattr(self, "codebook_"):
            raise MLearnerError("LandmarkEmbedding is not fitted: call fit() or fit_parts()")
        V = check_vectors(V_block, "V_block")
        if V.shape[1] != self.codebook_.shape[1]:
            raise MLearnerError(
                f"V_block has {V.shape[1]} effect column(s); the embedding was fitted on "
                f"{self.codebook_.shape[1]}"
            )
        return _place(V, self.codebook_, self.codebook_embedding_, self._bridge, self._tree)


def _place(
    V: np.ndarray,
    codebook: np.ndarray,
    Yc: np.ndarray,
    bridge: np.ndarray | None,
    tree: cKDTree | None,
) -> np.ndarray:
    if tree is not None:
        _, idx = tree.query(V, k=1)
        return Yc[idx]
    c = codebook[:, 0]
    v = V[:, 0]
    G = c.size
    if G == 1:
        return np.repeat(Yc, v.size, axis=0)
    r = np.clip(np.searchsorted(c, v, side="left"), 1, G - 1)
    left = r - 1
    t = np.clip((v - c[left]) / (c[r] - c[left]), 0.0, 1.0)
    assert bridge is not None
    use = bridge[left]
    t = np.where(use, t, np.where(t <= 0.5, 0.0, 1.0))
    return (1.0 - t)[:, None] * Yc[left] + t[:, None] * Yc[r]


def fit_landmark_embedding(
    V: np.ndarray,
    *,
    n_landmarks: int = 2000,
    perplexity: float = 30.0,
    n_iter: int = 750,
    kernel_power: int = 2,
    grid_size: int = 2000,
    random_state: int = 0,
    n_jobs: int = 1,
    keys: np.ndarray | None = None,
    **options: Any,
) -> LandmarkEmbedding:
    """Fit a :class:`LandmarkEmbedding` in memory (see the class for the parameters).

    Returns
    -------
    LandmarkEmbedding
        Fitted: ``landmark_index_``, ``landmark_embedding_``, ``transform(V_block) -> (b, 2)``,
        ``info_``.
    """
    model = LandmarkEmbedding(
        n_landmarks=n_landmarks,
        perplexity=perplexity,
        n_iter=n_iter,
        kernel_power=kernel_power,
        grid_size=grid_size,
        random_state=random_state,
        n_jobs=n_jobs,
        **options,
    )
    return model.fit(V, keys=keys)
