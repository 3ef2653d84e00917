"""Reliability with real processes: a run killed by SIGKILL resumes to the same result, results do
not depend on Spark partitions or Dask workers, and MLflow going away mid-run loses nothing.

Each test runs the installed ``mlearner`` command several times on a small simulated data set, so
the module is marked slow (``make test-slow``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

pytestmark = [pytest.mark.slow, pytest.mark.spark, pytest.mark.dask]

ROOT = Path(__file__).resolve().parents[2]
FAST = [
    "--set", "embed.n_iter=400",
    "--set", "subgroups.n_bootstrap=100",
    "--set", "profile.cv_folds=5",
    "--set", "cluster.k_max=3",
    "--set", "calibration.mode=fixed",
    "--set", "calibration.threshold=0.01",
]
VOLATILE = {"run_id", "mlflow_run_id", "mlflow_model_uri", "mlflow_model_id", "created",
            "timings", "seconds", "seconds_fit", "seconds_place", "compute"}


def _exe() -> str:
    exe = shutil.which("mlearner", path=str(Path(sys.executable).parent))
    assert exe is not None, "the mlearner console script is not installed in this environment"
    return exe


def mlearner(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([_exe(), *args], capture_output=True, text=True, timeout=900, cwd=ROOT)
    if check:
        assert done.returncode == 0, done.stderr[-4000:]
    return done


def stable(doc: Any) -> Any:
    """The result without what legitimately differs between runs (ids, times, compute shape)."""
    if isinstance(doc, dict):
        return {k: stable(v) for k, v in doc.items() if k not in VOLATILE}
    if isinstance(doc, list):
        return [stable(v) for v in doc]
    return doc


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "sim.parquet"
    mlearner("simulate", "--scenario", "simple-all", "--n", "800", "--seed", "5",
             "--noise-sd", "0.5", "--output", str(path))
    return path


def run_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["run", "--config", "conf/simulated.yaml", "--set", f"data.source={data}",
            "--output", str(out), *FAST, *extra]


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("uninterrupted")
    mlearner(*run_args(data, out, "--set", "tracking.enabled=false"))
    return json.loads((out / "result.json").read_text())


@pytest.mark.parametrize("kill_after", ["effects", "embed", "profile"])
def test_sigkill_mid_run_then_rerun_gives_the_same_result(data, reference, tmp_path, kill_after):
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [_exe(), *run_args(data, out, "--set", "tracking.enabled=false")],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    marker = out / "_manifests" / f"{kill_after}.json"
    deadline = time.monotonic() + 600
    while not marker.exists():
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.2)
    time.sleep(1.0)  # into the next stage
    os.killpg(proc.pid, signal.SIGKILL)  # the run, its Spark JVM and its Dask workers
    proc.wait()
    assert not (out / "result.json").exists()
    mlearner(*run_args(data, out, "--set", "tracking.enabled=false"))
    resumed = json.loads((out / "result.json").read_text())
    assert stable(resumed) == stable(reference)
    leftovers = [p.name for p in out.rglob("*") if ".tmp" in p.name or p.name.startswith("_tmp")]
    assert leftovers == []


def test_result_is_identical_across_spark_partitions_and_dask_workers(data, reference, tmp_path):
    out = tmp_path / "other_shape"
    mlearner(*run_args(
        data, out, "--set", "tracking.enabled=false",
        "--set", "compute.spark.partitions=8",
        "--set", "compute.dask.n_workers=1",
    ))
    other = json.loads((out / "result.json").read_text())
    assert stable(other) == stable(reference)
    assert reference["declared"] is True  # the comparison is about a real finding


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(tmp: Path, port: int) -> subprocess.Popen:
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("mlflow")), "server", "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp / 'server.db'}",
         "--artifacts-destination", str(tmp / "server_artifacts")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return server
        except OSError:
            pass
        assert server.poll() is None, "mlflow server exited"
        assert time.monotonic() < deadline, "mlflow server did not come up in 120 s"
        time.sleep(0.5)


def _stop(server: subprocess.Popen) -> None:
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def test_mlflow_lost_mid_run_keeps_outputs_and_logs_later(data, tmp_path):
    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    server = _start_server(tmp_path, port)
    out = tmp_path / "run"
    args = run_args(data, out, "--set", f"tracking.uri={uri}",
                    "--set", "calibration.mode=null", "--set", "calibration.n_replicates=40")
    try:
        proc = subprocess.Popen([_exe(), *args], cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        marker = out / "_manifests" / "profile.json"
        deadline = time.monotonic() + 600
        while not marker.exists():
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline
            time.sleep(0.2)
        _stop(server)  # the tracking server dies while calibration runs
        _, err = proc.communicate(timeout=900)
        assert proc.returncode != 0
        assert "mlearner report --output" in err and str(out) in err
        result = json.loads((out / "result.json").read_text())
        assert result["mlflow_run_id"] is None
        assert (out / "report.html").exists() and (out / "effects").is_dir()
        # the server is back: only the report stage reruns, and logs the run
        server = _start_server(tmp_path, port)
        done = mlearner(*args)
        assert "stage validate: started" not in done.stderr
        assert "stage report: started" in done.stderr
        logged = json.loads((out / "result.json").read_text())
        run = MlflowClient(uri).get_run(logged["mlflow_run_id"])
        assert run.data.tags["mlearner.declared"] == str(logged["declared"]).lower()
        assert stable({**logged, "calibration": None}) == stable({**result, "calibration": None})
        _check_logged_run(uri, logged, data, out, tmp_path)
    finally:
        _stop(server)


def _check_logged_run(uri: str, result: dict, data: Path, out: Path, tmp: Path) -> None:
    """`mlearner run` against a real server: run, children, params, metrics, tags, artifacts, and
    the subgroup model scoring new units into the run's subgroups."""
    import mlflow
    import numpy as np
    import pandas as pd

    client = MlflowClient(uri)
    run_id = result["mlflow_run_id"]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["embed.n_iter"] == "400"
    assert run.data.metrics["p_leaf"] == pytest.approx(result["p_leaf"])
    assert run.data.tags["mlearner.chosen_k"] == str(result["chosen"]["k"])
    children = client.search_runs([run.info.experiment_id],
                                  f"tags.mlflow.parentRunId = '{run_id}'")
    names = {c.info.run_name for c in children}
    assert {"K=2", "K=3", "stage effects", "stage report"} <= names
    arts: set[str] = set()
    todo = [None]
    while todo:
        for f in client.list_artifacts(run_id, todo.pop()):
            (todo.append(f.path) if f.is_dir else arts.add(f.path))
    for name in ("result.json", "report.html", "config.yaml", "subgroups/subgroups.csv",
                 "figures/embedding_clusters.png", "figures/profile_tree.png",
                 "figures/subgroup_effects.png", "figures/p_leaf_by_k.png",
                 "figures/null_calibration.png"):
        assert name in arts, (name, sorted(arts))
    # the logged model assigns the analysed units to the subgroups of the run
    units = pd.read_parquet(data)
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model(f"runs:/{run_id}/subgroup_model")
    scored = model.predict(units[[f"X{i}" for i in range(1, 11)]])
    sizes = scored["subgroup"].value_counts().sort_index()
    expected = pd.Series({int(g["leaf"]): int(g["n"]) for g in result["subgroups"]}).sort_index()
    assert np.array_equal(sizes.index.to_numpy(), expected.index.to_numpy())
    assert sizes.to_numpy().tolist() == expected.to_numpy().tolist()
    units.head(50).to_parquet(tmp / "new.parquet")
    done = mlearner("score", "--model-uri", f"runs:/{run_id}/subgroup_model", "--input",
                    str(tmp / "new.parquet"), "--output", str(tmp / "scored.parquet"),
                    "--tracking-uri", uri)
    assert done.returncode == 0
    got = pd.read_parquet(tmp / "scored.parquet")
    assert got["subgroup"].tolist() == scored["subgroup"].head(50).tolist()
    assert (out / "result.json").exists()
