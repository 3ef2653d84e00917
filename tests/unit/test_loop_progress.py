"""Progress lines on the long loops: cross-fitting folds, t-SNE iterations, projection blocks.

Each line carries a count (``done/total``) and, while running, the time left; ``--quiet``
(WARNING level and ``MLEARNER_QUIET``) silences them.
"""

from __future__ import annotations

import io
import logging
import pickle
import re

import numpy as np
import pytest

from mlearner_dist import cli
from mlearner_dist.core import landmark_embedding
from mlearner_dist.core.effects import cross_fit_effects
from mlearner_dist.core.embedding import embed_exact, fit_landmark_embedding
from mlearner_dist.core.nuisance import NuisanceSpec
from mlearner_dist.core.progress import Progress
from mlearner_dist.core.roles import Roles
from mlearner_dist.core.tsne import tsne_on_distances
from mlearner_dist.datasets import simulate

LOGGER = "mlearner_dist.core.progress"


class _FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def _lines(caplog, prefix: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(prefix)]


@pytest.fixture(scope="module")
def units():
    df = simulate("simple-all", 240, seed=2, noise_sd=0.5)
    covs = ("X1", "X2", "X3")
    return df[["unit_id", "T", "M", "Y", *covs]], Roles("unit_id", "T", "Y", ("M",), covs)


def test_cross_fitting_logs_one_line_per_fold_with_the_models_of_each_group(caplog, units):
    df, roles = units
    caplog.set_level(logging.INFO, logger=LOGGER)
    spec = NuisanceSpec(learner="linear", design="observational")
    cross_fit_effects(df, roles, spec, n_folds=3, seed=1)
    lines = _lines(caplog, "cross-fitting: ")
    folds = [m for m in lines if re.match(r"cross-fitting: \d/3 ", m)]
    assert len(folds) == 3, lines
    for k, line in enumerate(folds, start=1):
        assert line.startswith(f"cross-fitting: {k}/3 "), line
        assert re.search(rf"fold {k}/3 on \d+ units: ", line), line
        # every nuisance group, with its count of fitted models
        assert re.search(r"outcome \d+ models \(\d+\.\d s\)", line), line
        assert re.search(r"mediator 2 models \(\d+\.\d s\)", line), line
        assert re.search(r"propensity \d+ models? \(\d+\.\d s\)", line), line
    assert all("s left" in line for line in folds[:2])
    assert "s left" not in folds[2]
    assert lines[-1].startswith("cross-fitting: done after 3/3 steps")


def test_the_reference_estimator_logs_its_one_in_sample_fit(caplog, units):
    df, roles = units
    caplog.set_level(logging.INFO, logger=LOGGER)
    cross_fit_effects(
        df, roles, NuisanceSpec(learner="linear", estimator="reference"), n_folds=2, seed=1
    )
    (line,) = [m for m in _lines(caplog, "nuisance models: 1/1")]
    assert re.search(r"in-sample \(reference estimator\) on 240 units: outcome \d+ models", line)


def test_tsne_logs_every_250_iterations_with_the_kl_divergence(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    V = np.random.default_rng(0).normal(size=(60, 1))
    embed_exact(V, n_iter=750, random_state=1)
    lines = _lines(caplog, "t-SNE of 60 points: ")
    steps = [m for m in lines if re.match(r"t-SNE of 60 points: \d+/750", m)]
    assert [m.split()[4] for m in steps] == ["250/750", "500/750", "750/750"], lines
    assert all(re.search(r"KL divergence \d+\.\d{4}", m) for m in steps)
    assert "(early exaggeration)" in steps[0] and "early" not in steps[1]
    assert "s left" in steps[0]
    assert len(lines) == 5  # starting, three counts, done: a few lines per embedding


def test_tsne_counts_to_the_end_when_the_last_iterations_fall_between_lines(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    # 250 iterations: 83 exaggerated and 167 plain, no callback in either phase
    embed_exact(np.random.default_rng(0).normal(size=(40, 1)), n_iter=250, random_state=1)
    lines = _lines(caplog, "t-SNE of 40 points: ")
    steps = [m for m in lines if re.match(r"t-SNE of 40 points: \d+/250 ", m)]
    assert len(steps) == 1 and steps[0].split()[4] == "250/250", steps
    assert re.search(r"KL divergence \d+\.\d{4}$", steps[0])


def test_the_fitted_embedding_keeps_no_callback():
    # the landmark path pickles the embedding before each transform(): no callback may stay
    V = np.random.default_rng(0).normal(size=(40, 2))
    D = np.sqrt(((V[:, None, :] - V[None, :, :]) ** 2).sum(-1))
    emb, _ = tsne_on_distances(
        D, perplexity=5, n_iter=30, theta=0.5, random_state=0, n_jobs=1, initialization="random"
    )
    assert emb.gradient_descent_params["callbacks"] is None
    pickle.loads(pickle.dumps(emb))


def test_codebook_projection_logs_each_block(caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger=LOGGER)
    monkeypatch.setattr(landmark_embedding, "TRANSFORM_CHUNK", 15)
    V = np.random.default_rng(3).normal(size=(400, 1))
    model = fit_landmark_embedding(V, n_landmarks=40, grid_size=40, n_iter=60, perplexity=5)
    todo = int((model.codebook_.shape[0]) - model.landmark_vectors_.shape[0])
    n_blocks = -(-todo // 15)
    assert n_blocks >= 2
    lines = _lines(caplog, f"projecting {todo} codebook points onto ")
    steps = [m for m in lines if re.search(rf"\(blocks\): \d+/{n_blocks} ", m)]
    assert len(steps) == n_blocks, lines
    assert steps[-1].endswith(f"{todo}/{todo} points placed")


def test_quiet_silences_the_progress_lines(caplog, monkeypatch, units):
    monkeypatch.setenv("MLEARNER_QUIET", "")
    root = logging.getLogger()
    monkeypatch.setattr(root, "level", root.level)
    root.setLevel(logging.INFO)  # as a run at --log-level INFO would be
    cli._setup_logging("INFO", quiet=True, verbose=True)
    tty = _FakeTTY()
    with Progress(4, "replicates", stream=tty) as bar:
        for _ in range(4):
            bar.update()
    assert tty.getvalue() == ""  # no live line on a terminal
    df, roles = units
    cross_fit_effects(df, roles, NuisanceSpec(learner="linear"), n_folds=2, seed=1)
    embed_exact(np.random.default_rng(0).normal(size=(30, 1)), n_iter=250)
    assert [r for r in caplog.records if r.name == LOGGER] == []


def test_a_loop_inside_a_reported_loop_adds_no_lines(caplog, units):
    """Null replicates that re-run the selection report themselves, not their folds."""
    from mlearner_dist.core.calibration import progress_map

    df, roles = units
    caplog.set_level(logging.INFO, logger=LOGGER)

    def replicate(r: int) -> int:
        cross_fit_effects(df, roles, NuisanceSpec(learner="linear"), n_folds=2, seed=r)
        return r

    assert progress_map(replicate, [0, 1], desc="null replicates", every=0.5) == [0, 1]
    messages = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert messages and all(m.startswith("null replicates: ") for m in messages), messages
    assert len(messages) == 4  # starting, 1/2, 2/2, done
    # and on its own the inner loop reports again
    cross_fit_effects(df, roles, NuisanceSpec(learner="linear"), n_folds=2, seed=0)
    assert any(r.getMessage().startswith("cross-fitting: 2/2") for r in caplog.records)
