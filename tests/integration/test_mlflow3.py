"""MLflow 3 conventions: logged-model URIs, an installable model environment, dataset sources and
contexts MLflow can restore, stage runs with their real times (a real SQLite store)."""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from datetime import datetime, timedelta, timezone
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from mlearner_dist.backends.mlflow_tracking import (
    MlflowTracker,
    dataset_source,
    log_analysis,
    model_fields,
)
from mlearner_dist.core.profiles import choose_tree, fit_profile_trees
from mlearner_dist.scoring import score_frame
from mlearner_dist.stages import Manifest, write_manifest


@pytest.fixture()
def store(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def _profile_tree():
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"x1": rng.normal(size=300), "x2": rng.normal(size=300)})
    labels = (X["x1"] > 0).astype(int).to_numpy() + 2 * (X["x2"] > 0.5).astype(int).to_numpy()
    tree = choose_tree(fit_profile_trees(X, labels, cv_folds=3, random_state=0))
    return tree, X


@pytest.mark.parametrize(
    ("source", "fmt", "version", "source_type"),
    [
        ("/data/units.parquet", "parquet", None, "local"),
        ("s3://bucket/units", "parquet", None, "s3"),
        ("/Volumes/main/trial/raw/units", "parquet", None, "spark"),
        ("dbfs:/mnt/trial/units", "csv", None, "spark"),
        ("/data/units_delta", "delta", 7, "delta_table"),
        ("main.trial.units", "table", None, "spark"),
        ("jobs_ii", "builtin", None, "code"),
    ],
)
def test_dataset_inputs_use_registered_sources_and_the_training_context(
    store, source, fmt, version, source_type
):
    tracker = MlflowTracker(store, "mlearner")
    run_id = tracker.start_run("inputs")
    tracker.log_input(source, 100, "abcd", fmt=fmt, version=version)
    tracker.end_run()
    (inp,) = MlflowClient(store).get_run(run_id).inputs.dataset_inputs
    assert inp.dataset.source_type == source_type
    restored = mlflow.data.get_source(inp.dataset)  # refused for unregistered types ("table")
    assert restored._get_source_type() == source_type
    assert {t.key: t.value for t in inp.tags}["mlflow.data.context"] == "training"
    if fmt == "delta":
        assert restored.delta_table_version == 7 and restored.path == source
    assert json.loads(inp.dataset.profile) == {"num_rows": 100}
    assert dataset_source(source, fmt, version).to_json() == restored.to_json()


def test_analysis_run_stores_the_models_uri_and_stage_runs_their_real_times(store, tmp_path):
    tree, X = _profile_tree()
    out = tmp_path / "out"
    out.mkdir()
    finished = datetime(2026, 11, 30, 8, 0, 0, tzinfo=timezone.utc)
    for i, (stage, seconds) in enumerate([("validate", 12.5), ("effects", 300.0)]):
        write_manifest(
            out,
            Manifest(
                stage=stage,
                fingerprint="f",
                rows={},
                seed=0,
                seconds=seconds,
                finished=(finished + timedelta(minutes=10 * i)).isoformat(timespec="seconds"),
                extra={},
            ),
        )
    result = {
        "run_id": "a" * 32,
        "config": {"data": {"source": "/data/u", "format": "delta"}, "tracking": {}},
        "source": {"format": "delta", "path": "/data/u", "version": 4, "reader": "delta-rs"},
        "row_account": {"n_input": 300, "n_used": 300},
        "timings": {"validate": 12.5, "effects": 300.0},
    }
    run_id = log_analysis(store, None, result, out, tree=tree, example=X.head(5))
    fields = model_fields(store, run_id)
    assert fields["mlflow_model_uri"] == f"models:/{fields['mlflow_model_id']}"
    assert fields["mlflow_model_id"].startswith("m-")
    logged = mlflow.MlflowClient(store).get_logged_model(fields["mlflow_model_id"])
    assert logged.source_run_id == run_id and logged.name == "subgroup_model"

    client = MlflowClient(store)
    run = client.get_run(run_id)
    assert run.data.tags["mlearner.data_version"] == "4"
    children = {
        c.info.run_name: c
        for c in client.search_runs(
            [run.info.experiment_id], f"tags.mlflow.parentRunId = '{run_id}'"
        )
    }
    effects = children["stage effects"].info
    end = int((finished + timedelta(minutes=10)).timestamp() * 1000)
    assert (effects.start_time, effects.end_time) == (end - 300_000, end)
    validate = children["stage validate"].info
    assert validate.end_time - validate.start_time == 12_500

    mlflow.set_tracking_uri(store)
    loaded = mlflow.pyfunc.load_model(fields["mlflow_model_uri"])
    pd.testing.assert_frame_equal(
        loaded.predict(X), score_frame(tree, X)[["subgroup", "rule"]]
    )
    reqs = Path(mlflow.pyfunc.get_model_dependencies(fields["mlflow_model_uri"])).read_text()
    assert "mlearner-dist" not in reqs and "scikit-learn==" in reqs


@pytest.mark.slow  # a fresh virtual environment: ~1-3 min of pip install from the cache
def test_a_fresh_environment_from_the_models_own_requirements_scores_the_same(store, tmp_path):
    """The model's environment installs from its requirements.txt (no index serves mlearner-dist:
    the package travels with the model as code_paths) and scores like the tree in memory."""
    tree, X = _profile_tree()
    tracker = MlflowTracker(store, "mlearner")
    tracker.start_run("model")
    uri = tracker.log_subgroup_model(tree, X.head(5))
    tracker.end_run()
    mlflow.set_tracking_uri(store)
    logged = MlflowClient(store).get_logged_model(uri.removeprefix("models:/"))
    model_dir = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=logged.artifact_location, dst_path=str(tmp_path / "model")
        )
    )
    assert (model_dir / "code" / "mlearner_dist" / "scoring.py").is_file()
    env_dir = tmp_path / "env"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    done = subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "-r", str(model_dir / "requirements.txt")],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    X.to_parquet(tmp_path / "new.parquet")
    script = (
        "import sys, mlflow, pandas as pd\n"
        "m = mlflow.pyfunc.load_model(sys.argv[1])\n"
        "m.predict(pd.read_parquet(sys.argv[2])).to_parquet(sys.argv[3])\n"
    )
    done = subprocess.run(
        [str(py), "-c", script, str(model_dir), str(tmp_path / "new.parquet"),
         str(tmp_path / "scored.parquet")],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,  # not the checkout: mlearner_dist comes from the model's code/ folder
    )
    assert done.returncode == 0, done.stderr[-3000:]
    got = pd.read_parquet(tmp_path / "scored.parquet")
    pd.testing.assert_frame_equal(got, score_frame(tree, X)[["subgroup", "rule"]])
    assert sys.executable != str(py)
