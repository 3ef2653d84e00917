"""MLearner follows the scikit-learn estimator contract, and its defaults are conf/base.yaml's."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from mlearner_dist.config import Config, estimator_params, load_config
from mlearner_dist.core.estimator import MLearner
from mlearner_dist.core.nuisance import NuisanceSpec
from mlearner_dist.exceptions import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def _same(a, b) -> bool:
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        return bool(np.isclose(float(a), float(b), rtol=1e-12, atol=0))
    if a is None or b is None:
        return a == b or (a in ({}, None) and b in ({}, None))
    return a == b


def test_defaults_equal_base_yaml():
    base = estimator_params(load_config([ROOT / "conf" / "base.yaml"]))
    assert base == estimator_params(Config()) or all(
        _same(base[k], estimator_params(Config())[k]) for k in base
    )
    params = MLearner().get_params()
    in_memory_only = {"model_outcome", "model_mediator", "model_propensity"}
    assert all(params.pop(k) is None for k in in_memory_only)
    assert set(params) == set(base), set(params) ^ set(base)
    wrong = {k: (params[k], base[k]) for k in base if not _same(params[k], base[k])}
    assert not wrong, f"MLearner defaults differ from conf/base.yaml: {wrong}"


def test_nuisance_spec_row_budget_default_is_base_yaml():
    base = load_config([ROOT / "conf" / "base.yaml"])
    assert NuisanceSpec().row_budget == base.effects.row_budget


def _embedding_functions():
    from mlearner_dist.core import embedding

    yield "embed", embedding.embed
    yield "embed_exact", embedding.embed_exact
    yield "fit_landmark_embedding", embedding.fit_landmark_embedding
    yield "LandmarkEmbedding", embedding.LandmarkEmbedding.__init__
    yield "dask_embed", None  # imported in the test (needs dask)


#: The conf/base.yaml ``embed:`` keys each signature must take, with the same default.
_EMBED_KEYS = ("exact_max_n", "n_landmarks", "perplexity", "n_iter", "kernel_power", "grid_size")
_PINNED = {
    "embed": {*_EMBED_KEYS, "n_jobs"},
    "embed_exact": {"perplexity", "n_iter", "kernel_power", "n_jobs"},
    "fit_landmark_embedding": {*_EMBED_KEYS[1:], "n_jobs"},
    # block_size here is the rows of one distance block, not embed.block_size (units per block)
    "LandmarkEmbedding": {*_EMBED_KEYS[1:], "n_jobs"},
    "dask_embed": {"scaling", *_EMBED_KEYS, "block_size", "n_jobs"},
}


@pytest.mark.parametrize(("name", "fn"), list(_embedding_functions()))
def test_embedding_defaults_equal_base_yaml(name, fn):
    if fn is None:
        pytest.importorskip("dask")
        from mlearner_dist.backends.dask_embedding import dask_embed as fn
    base = load_config([ROOT / "conf" / "base.yaml"]).embed
    defaults = {
        k: p.default
        for k, p in inspect.signature(fn).parameters.items()
        if k in _PINNED[name] and p.default is not inspect.Parameter.empty
    }
    assert set(defaults) == _PINNED[name], _PINNED[name] - set(defaults)
    wrong = {
        k: (v, getattr(base, k)) for k, v in defaults.items() if not _same(v, getattr(base, k))
    }
    assert not wrong, f"{name} defaults differ from conf/base.yaml's embed section: {wrong}"


def test_get_set_params_and_clone():
    m = MLearner(n_replicates=39, k_values=(2, 3))
    assert m.get_params()["n_replicates"] == 39
    m2 = clone(m)
    assert m2 is not m and m2.get_params() == m.get_params()
    assert m.set_params(alpha=0.1) is m and m.alpha == 0.1
    with pytest.raises(ValueError, match="Invalid parameter"):
        m.set_params(not_a_parameter=1)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"calibration": "bootstrap"}, "calibration='bootstrap'"),
        ({"alpha": 1.5}, "alpha=1.5"),
        ({"n_replicates": 0}, "n_replicates=0"),
        ({"k_values": (1, 2)}, "k_values"),
        ({"n_folds": 1}, "n_folds=1"),
        ({"design": "quasi"}, "design='quasi'"),
    ],
)
def test_bad_parameters_fail_before_any_work(params, match, monkeypatch):
    import mlearner_dist.core.estimator as est

    def boom(*a, **k):  # the selection must not start
        raise AssertionError("work started before the parameters were checked")

    monkeypatch.setattr(est, "cross_fit_effects", boom)
    X = pd.DataFrame({"x": np.arange(40.0)})
    with pytest.raises(ConfigError, match=match):
        MLearner(**params).fit(X, treatment=np.arange(40) % 2, outcome=np.arange(40.0))


def test_nuisance_learners_as_estimator_objects():
    from sklearn.linear_model import LinearRegression, LogisticRegression

    from mlearner_dist.datasets import simulate

    frame = simulate("simple-all", 400, seed=2, noise_sd=0.1)
    covs = [f"X{i}" for i in range(1, 11)]
    model = MLearner(
        model_outcome=LinearRegression(),
        model_mediator="linear",
        model_propensity=LogisticRegression(max_iter=200),
        calibration="fixed",
        k_values=(2,),
        n_iter=250,
        cv_folds=3,
        n_bootstrap=50,
        sensitivity=False,
    )
    twin = clone(model)
    assert isinstance(twin.model_outcome, LinearRegression) and twin.model_outcome is not (
        model.model_outcome
    )
    model.fit(frame[covs], treatment=frame["T"], mediator=frame["M"], outcome=frame["Y"])
    choice = model.selection_.diagnostics
    assert "LinearRegression" in str(choice)
    assert np.isfinite(model.p_leaf_)
