"""Deployment: spark-submit on every stage job, the Databricks bundle, and a real Dask cluster."""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
STAGE_ORDER = ["validate", "effects", "embed", "cluster", "profile", "calibrate", "report"]
FAST = [
    "--set",
    "embed.n_iter=300",
    "--set",
    "calibration.mode=fixed",
    "--set",
    "subgroups.n_bootstrap=100",
    "--set",
    "profile.cv_folds=3",
    "--set",
    "cluster.k_max=3",
    "--set",
    "compute.spark.master=local[2]",
    "--set",
    "compute.spark.driver_memory=1g",
]


def _simulate(path: Path, n: int = 600) -> None:
    done = subprocess.run(
        [
            str(BIN / "mlearner"),
            "simulate",
            "--scenario",
            "simple-all",
            "--n",
            str(n),
            "--seed",
            "5",
            "--noise-sd",
            "0.5",
            "--output",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]


# --- spark-submit --------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.spark
def test_spark_submit_runs_each_stage_job_in_order(tmp_path):
    spark_submit = BIN / "spark-submit"
    assert spark_submit.exists(), "pyspark's spark-submit is installed with the spark extra"
    data = tmp_path / "sim.parquet"
    _simulate(data)
    out = tmp_path / "out"
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    for stage in STAGE_ORDER:
        cmd = [
            str(spark_submit),
            "--master",
            "local[2]",
            str(ROOT / "jobs" / f"{stage}.py"),
            "--config",
            str(ROOT / "conf" / "simulated.yaml"),
            "--set",
            f"data.source={data}",
            "--output",
            str(out),
            *FAST,
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
        assert done.returncode == 0, f"{stage}: {done.stderr[-3000:]}"
        assert (out / "_manifests" / f"{stage}.json").exists(), stage
    result = json.loads((out / "result.json").read_text())
    assert result["row_account"]["n_used"] == 600
    assert len(pd.read_parquet(out / "effects")) == 600


# --- the Databricks bundle -------------------------------------------------------------------


def _wheel_entry_points(tmp_path: Path) -> set[str]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:  # no setuptools in the environment: build with isolation
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                "-q",
                "-w",
                str(tmp_path),
                str(ROOT),
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
    assert done.returncode == 0, done.stderr[-2000:]
    shutil.rmtree(ROOT / "build", ignore_errors=True)
    wheel = next(tmp_path.glob("mlearner_dist-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/entry_points.txt"))
        parser = configparser.ConfigParser()
        parser.read_string(z.read(name).decode())
    return set(parser["console_scripts"])


def _load_bundle() -> tuple[dict, dict]:
    bundle = yaml.safe_load((ROOT / "databricks.yml").read_text())
    resources: dict = {}
    for pattern in bundle.get("include", []):
        for path in sorted(ROOT.glob(pattern)):
            doc = yaml.safe_load(path.read_text())
            for kind, items in doc["resources"].items():
                resources.setdefault(kind, {}).update(items)
    return bundle, resources


def test_bundle_structure_is_valid():
    bundle, resources = _load_bundle()
    assert set(bundle) <= {
        "bundle",
        "include",
        "variables",
        "artifacts",
        "targets",
        "resources",
        "workspace",
        "sync",
        "permissions",
        "run_as",
        "experimental",
    }
    assert bundle["bundle"]["name"]
    assert {"dev", "prod"} <= set(bundle["targets"])
    assert bundle["targets"]["dev"]["mode"] == "development"
    assert bundle["targets"]["prod"]["mode"] == "production"
    for var in bundle["variables"].values():
        assert set(var) <= {"description", "default", "lookup", "type"}
    variables = set(bundle["variables"])
    text = (ROOT / "resources" / "mlearner_job.yml").read_text()
    for ref in re.findall(r"\$\{var\.([a-z_]+)\}", text):
        assert ref in variables, f"${{var.{ref}}} is not declared in databricks.yml"
    jobs = resources["jobs"]
    assert jobs, "the bundle defines at least one job"
    for job in jobs.values():
        assert set(job["schedule"]) >= {"quartz_cron_expression", "timezone_id"}
        params = {p["name"] for p in job["parameters"]}
        clusters = {c["job_cluster_key"] for c in job["job_clusters"]}
        keys = [t["task_key"] for t in job["tasks"]]
        assert len(keys) == len(set(keys))
        assert keys == STAGE_ORDER, "tasks run the stages in pipeline order"
        for task in job["tasks"]:
            assert task["job_cluster_key"] in clusters
            for dep in task.get("depends_on", []):
                assert dep["task_key"] in keys[: keys.index(task["task_key"])]
            for ref in re.findall(
                r"\{\{job\.parameters\.([a-z_]+)\}\}",
                " ".join(task["python_wheel_task"]["parameters"]),
            ):
                assert ref in params


def test_bundle_tasks_name_wheel_entry_points_and_valid_cli_parameters(tmp_path):
    from mlearner_dist.cli import build_parser

    entry_points = _wheel_entry_points(tmp_path)
    _, resources = _load_bundle()
    parser = build_parser()
    for job in resources["jobs"].values():
        for task in job["tasks"]:
            wheel_task = task["python_wheel_task"]
            assert wheel_task["package_name"] == "mlearner_dist"
            assert wheel_task["entry_point"] in entry_points
            stage = wheel_task["entry_point"].removeprefix("mlearner-")
            args = [
                re.sub(r"\{\{job\.parameters\.([a-z_]+)\}\}", r"/x/\1", a)
                for a in wheel_task["parameters"]
            ]
            parsed = parser.parse_args([stage, *args])
            assert parsed.command == stage and parsed.output == "/x/output"
    assert {"mlearner", "mlearner-run"} <= entry_points


def test_shipped_cluster_configs_load():
    from mlearner_dist.config import load_config

    cfg = load_config([ROOT / "conf" / "databricks.yaml", ROOT / "conf" / "jobs_ii.yaml"])
    assert cfg.tracking.uri == "databricks"
    cfg = load_config([ROOT / "conf" / "spark_cluster.yaml"])
    assert cfg.compute.spark.master == "yarn"
    text = (ROOT / "conf" / "spark_cluster.yaml").read_text()
    assert "--archives" in text and shlex.split("jobs/run_all.py")


# --- a real multi-process Dask cluster --------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # ~200 s: two full pipeline runs and a separate Dask cluster
@pytest.mark.dask
@pytest.mark.spark
def test_dask_stages_on_a_separate_scheduler_and_workers(tmp_path):
    data = tmp_path / "sim.parquet"
    _simulate(data, n=800)
    base = [
        "--config",
        str(ROOT / "conf" / "simulated.yaml"),
        "--set",
        f"data.source={data}",
        *FAST,
        "--set",
        "tracking.enabled=false",
        "--set",
        "embed.exact_max_n=300",
        "--set",
        "embed.n_landmarks=200",
        "--set",
        "embed.grid_size=500",
    ]
    local = tmp_path / "local"
    done = subprocess.run(
        [str(BIN / "mlearner"), "run", *base, "--output", str(local)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]

    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler = subprocess.Popen(
        [
            str(BIN / "dask"),
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-dashboard",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    workers = [
        subprocess.Popen(
            [
                str(BIN / "dask"),
                "worker",
                address,
                "--nthreads",
                "1",
                "--nworkers",
                "1",
                "--memory-limit",
                "2GiB",
                "--no-dashboard",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(2)
    ]
    try:
        from distributed import Client

        deadline = time.time() + 60
        with Client(address, timeout=30) as client:
            while len(client.scheduler_info()["workers"]) < 2 and time.time() < deadline:
                time.sleep(0.5)
            assert len(client.scheduler_info()["workers"]) == 2
        remote = tmp_path / "remote"
        done = subprocess.run(
            [
                str(BIN / "mlearner"),
                "run",
                *base,
                "--set",
                f"compute.dask.scheduler_address={address}",
                "--output",
                str(remote),
            ],
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert done.returncode == 0, done.stderr[-3000:]
    finally:
        for p in [*workers, scheduler]:
            p.terminate()
        for p in [*workers, scheduler]:
            p.wait(timeout=30)
    for name in ("embedding", "clusters"):
        a = pd.read_parquet(local / name).sort_values("unit_id").reset_index(drop=True)
        b = pd.read_parquet(remote / name).sort_values("unit_id").reset_index(drop=True)
        pd.testing.assert_frame_equal(a, b)
    ra = json.loads((local / "result.json").read_text())
    rb = json.loads((remote / "result.json").read_text())
    assert ra["p_leaf"] == rb["p_leaf"] and ra["chosen"] == rb["chosen"]
