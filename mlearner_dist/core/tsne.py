"""openTSNE on a precomputed distance matrix, and the exact path (``n <= exact_max_n``).

openTSNE's silent choices are pinned here and recorded in the returned ``info``: the
effective perplexity, the neighbours, exact neighbours from the precomputed matrix, the
gradient method (Barnes-Hut below :data:`FFT_MIN_POINTS` points, FFT above) and an explicit
thread count. See :mod:`mlearner_dist.core.embedding` for the iteration schedule.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from mlearner_dist.core.distances import effect_distances
from mlearner_dist.core.embedding_checks import (
    INITIALIZATIONS,
    check_embedding_settings,
    check_vectors,
)
from mlearner_dist.core.progress import Progress
from mlearner_dist.exceptions import MLearnerError

__all__ = [
    "EARLY_EXAGGERATION",
    "EARLY_EXAGGERATION_ITER",
    "FFT_MIN_POINTS",
    "INITIALIZATIONS",
    "PROGRESS_EVERY_ITER",
    "check_tsne_settings",
    "embed_exact",
    "kernel_info",
    "tsne_on_distances",
]

logger = logging.getLogger(__name__)

#: openTSNE switches from Barnes-Hut to FFT gradients at this many points; we pin the same rule.
FFT_MIN_POINTS = 10_000

#: Early exaggeration phase (Rtsne's stop_lying_iter), counted inside ``n_iter``: the first
#: ``min(EARLY_EXAGGERATION_ITER, n_iter // 3)`` iterations (250 of 750, openTSNE's own schedule).
EARLY_EXAGGERATION_ITER = 250

#: Early exaggeration factor (Rtsne's and openTSNE's 12).
EARLY_EXAGGERATION = 12.0

#: t-SNE iterations between two progress lines (each with openTSNE's KL divergence then).
PROGRESS_EVERY_ITER = 250


class _IterationProgress:
    """openTSNE callback: counts iterations over both phases on a :class:`Progress`.

    openTSNE numbers iterations within each phase (early exaggeration, then the rest) and calls
    ``optimization_about_to_start`` before each; the second phase starts at ``early``. The KL
    divergence it passes is corrected for the exaggeration. Returns False: never stops the run.
    """

    def __init__(self, bar: Progress, early: int) -> None:
        self.bar = bar
        self.starts = (0, early)
        self.phase = -1

    def optimization_about_to_start(self) -> None:
        self.phase += 1

    def __call__(self, iteration: int, error: float, embedding: Any) -> bool:
        done = self.starts[min(max(self.phase, 0), 1)] + int(iteration)
        phase = " (early exaggeration)" if self.phase <= 0 else ""
        message = f"KL divergence {float(error):.4f}{phase}"
        self.bar.update(max(0, done - self.bar.done), message=message)
        return False


def check_tsne_settings(
    perplexity: float, n_iter: int, kernel_power: int, n_jobs: int, theta: float, init: str
) -> tuple[float, int, int, int, float]:
    """Checked t-SNE settings shared by the exact and the landmark path.

    Parameters
    ----------
    perplexity : float
        At least 1.
    n_iter : int
        At least 1.
    kernel_power : {2, 4}
    n_jobs : int
        Explicit positive thread count (openTSNE's -1 would count the host's cores).
    theta : float
        Barnes-Hut accuracy in [0, 1].
    init : {"random", "spectral"}

    Returns
    -------
    tuple
        ``(perplexity, n_iter, kernel_power, n_jobs, theta)`` as float, int, int, int, float.

    Raises
    ------
    ConfigError
    """
    s = check_embedding_settings(
        perplexity=perplexity,
        n_iter=n_iter,
        kernel_power=kernel_power,
        n_jobs=n_jobs,
        theta=theta,
        initialization=init,
    )
    return s["perplexity"], s["n_iter"], s["kernel_power"], s["n_jobs"], s["theta"]


def _effective_perplexity(perplexity: float, n: int) -> tuple[float, int]:
    """Perplexity actually used and neighbours (openTSNE: k = min(n - 1, floor(3 perplexity)))."""
    eff = min(perplexity, (n - 1) / 3.0)
    if eff < perplexity:
        logger.warning(
            "perplexity %.2f is too large for %d points; using %.2f (recorded in the embedding "
            "info)",
            perplexity,
            n,
            eff,
        )
    k = max(1, min(n - 1, int(3 * eff)))
    return eff, k


def tsne_on_distances(
    D: np.ndarray,
    *,
    perplexity: float,
    n_iter: int,
    theta: float,
    random_state: int,
    n_jobs: int,
    initialization: str,
) -> tuple[Any, dict[str, Any]]:
    """openTSNE on a precomputed (n, n) distance matrix, with every silent choice pinned.

    Parameters
    ----------
    D : ndarray, shape (n, n)
        Precomputed distances (:func:`mlearner_dist.core.distances.effect_distances`).
    perplexity : float
        Requested perplexity (lowered to ``(n - 1) / 3`` on small sets; recorded).
    n_iter : int
        Iterations in all, the first ``min(EARLY_EXAGGERATION_ITER, n_iter // 3)`` exaggerated.
    theta : float
        Barnes-Hut accuracy (below :data:`FFT_MIN_POINTS` points; FFT gradients above).
    random_state : int
    n_jobs : int
    initialization : {"random", "spectral"}
        ``random``: N(0, 1e-4) as Rtsne.

    Returns
    -------
    embedding : openTSNE.TSNEEmbedding, shape (n, 2)
    info : dict
        Effective openTSNE settings (perplexity, neighbours, gradient method, ...).
    """
    from openTSNE import TSNE
    from openTSNE.affinity import PerplexityBasedNN

    n = D.shape[0]
    eff, k = _effective_perplexity(perplexity, n)
    affinities = PerplexityBasedNN(
        D,
        perplexity=eff,
        method="exact",
        metric="precomputed",
        k_neighbors=k,
        n_jobs=n_jobs,
        random_state=random_state,
    )
    gradient = "bh" if n < FFT_MIN_POINTS else "fft"
    early = min(EARLY_EXAGGERATION_ITER, n_iter // 3)
    if initialization == "random":
        init: Any = np.random.default_rng(random_state).normal(0.0, 1e-4, (n, 2))
    else:
        init = "spectral"
    # a line every PROGRESS_EVERY_ITER iterations; the callback only reads the KL divergence
    # (openTSNE evaluates it on those iterations; the gradient steps are unchanged)
    every = min(1.0, PROGRESS_EVERY_ITER / n_iter)
    with Progress(n_iter, f"t-SNE of {n} points", every=every) as bar:
        # learning rate n / exaggeration in each phase (n / 12, then n), passed explicitly: with
        # it the gradient steps are scaled to the size of the data and a few hundred iterations
        # converge (Belkina et al. 2019; Linderman and Steinerberger 2019); Rtsne's fixed 200
        # needs thousands
        tsne = TSNE(
            n_components=2,
            perplexity=eff,
            early_exaggeration_iter=early,
            n_iter=n_iter - early,
            early_exaggeration=EARLY_EXAGGERATION,
            learning_rate="auto",
            theta=theta,
            metric="precomputed",
            n_jobs=n_jobs,
            negative_gradient_method=gradient,
            random_state=random_state,
            verbose=False,
            callbacks=_IterationProgress(bar, early),
            callbacks_every_iters=PROGRESS_EVERY_ITER,
        )
        emb = tsne.fit(affinities=affinities, initialization=init)
        if bar.done < n_iter:  # the last iterations fell between two callbacks
            bar.update(n_iter - bar.done, message=f"KL divergence {emb.kl_divergence:.4f}")
    # the embedding keeps its optimisation settings (transform() reuses them): drop the callback
    emb.gradient_descent_params["callbacks"] = None
    info = {
        "perplexity": perplexity,
        "perplexity_effective": eff,
        "k_neighbors": k,
        "neighbors_method": "exact (precomputed distances)",
        "gradient_method": gradient,
        "theta": theta if gradient == "bh" else None,
        "n_iter": n_iter,
        "early_exaggeration_iter": early,
        "early_exaggeration": EARLY_EXAGGERATION,
        "learning_rate": float(n / EARLY_EXAGGERATION),
        "learning_rate_after_exaggeration": float(n),
        "initialization": initialization,
        "n_jobs": n_jobs,
        # 6 significant digits: openTSNE sums the KL divergence over threads, so its last bits
        # vary between runs although the embedding does not (result.json stays identical)
        "kl_divergence": float(f"{float(emb.kl_divergence):.6g}"),
    }
    return emb, info


def kernel_info(kernel_power: int) -> dict[str, Any]:
    """The ``info`` entries that record the kernel: ``kernel_power`` and the distance supplied.

    Parameters
    ----------
    kernel_power : {2, 4}

    Returns
    -------
    dict
        ``{"kernel_power": kernel_power, "distance_supplied": "euclidean" | "squared euclidean"}``.
    """
    return {
        "kernel_power": kernel_power,
        "distance_supplied": "euclidean" if kernel_power == 2 else "squared euclidean",
    }


def embed_exact(
    V: np.ndarray,
    *,
    perplexity: float = 30.0,
    n_iter: int = 750,
    kernel_power: int = 2,
    random_state: int = 0,
    n_jobs: int = 1,
    theta: float = 0.5,
    initialization: str = "random",
) -> tuple[np.ndarray, dict[str, Any]]:
    """Exact-path t-SNE of all units from the full n x n distance matrix.

    Parameters
    ----------
    V : ndarray, shape (n, d)
        Effect vectors (:func:`effect_matrix`), 4 <= n.
    perplexity : float
        Requested perplexity (lowered to (n - 1) / 3 on small sets, recorded).
    n_iter : int
        Total iterations, the first min(250, n_iter // 3) with early exaggeration 12 (as Rtsne's
        ``max_iter``).
    kernel_power : {2, 4}
        The Gaussian kernel acts on ``||v_i - v_j|| ** kernel_power``; 4 reproduces the reference
        (see :mod:`mlearner_dist.core.distances`).
    random_state : int
        Seed of the N(0, 1e-4) initialisation.
    n_jobs : int
        openTSNE threads (explicit; never -1).
    theta : float
        Barnes-Hut accuracy; 0 evaluates every pair (Rtsne's exact ``theta=0``, O(n^2) per
        iteration).
    initialization : {"random", "spectral"}
        ``random`` as the reference.

    Returns
    -------
    Y : ndarray, shape (n, 2)
    info : dict
        Effective settings (``path="exact"``, perplexity, neighbours, gradient method, ...).
    """
    V = check_vectors(V)
    s = check_embedding_settings(
        perplexity=perplexity,
        n_iter=n_iter,
        kernel_power=kernel_power,
        random_state=random_state,
        n_jobs=n_jobs,
        theta=theta,
        initialization=initialization,
    )
    n = V.shape[0]
    if n < 4:
        raise MLearnerError(f"the embedding needs at least 4 units, got {n}")
    D = effect_distances(V, kernel_power=s["kernel_power"])
    kernel_power = s.pop("kernel_power")
    emb, info = tsne_on_distances(D, **s)
    Y = np.array(emb, dtype=np.float64)
    return Y, {"path": "exact", "n_units": n, **kernel_info(kernel_power), **info}
