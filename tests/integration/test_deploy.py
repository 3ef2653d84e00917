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


def _build_wheel(dest: Path) -> Path:
    """The wheel the bundle's artifact builds (`python -m pip wheel --no-deps -w dist .`)."""
    base = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dest), str(ROOT)]
    done = subprocess.run(
        [*base[:5], "--no-build-isolation", *base[5:]], capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0:  # no setuptools in the environment: build with isolation
        done = subprocess.run(base, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    shutil.rmtree(ROOT / "build", ignore_errors=True)
    wheels = list(dest.glob("*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def bundle_copy(tmp_path_factory) -> tuple[Path, Path]:
    """The bundle's files copied to a fresh folder, with the wheel built where the artifact puts it.

    Returns the copy's root and the wheel (``<root>/dist/mlearner_dist-*.whl``).
    """
    root = tmp_path_factory.mktemp("bundle")
    shutil.copy(ROOT / "databricks.yml", root / "databricks.yml")
    shutil.copytree(ROOT / "resources", root / "resources")
    bundle = yaml.safe_load((ROOT / "databricks.yml").read_text())
    artifact = bundle["artifacts"]["default"]
    assert artifact["type"] == "whl" and artifact["path"] == "."
    assert artifact["build"].split()[-3:] == ["-w", "dist", "."], artifact["build"]
    return root, _build_wheel(root / "dist")


def _wheel_entry_points(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/entry_points.txt"))
        parser = configparser.ConfigParser()
        parser.read_string(z.read(name).decode())
    return set(parser["console_scripts"])


def _bundle_files(root: Path = ROOT) -> list[tuple[Path, dict]]:
    """databricks.yml and every file its ``include`` globs name, parsed."""
    bundle = yaml.safe_load((root / "databricks.yml").read_text())
    files = [(root / "databricks.yml", bundle)]
    for pattern in bundle.get("include", []):
        files += [(path, yaml.safe_load(path.read_text())) for path in sorted(root.glob(pattern))]
    return files


def _jobs(root: Path = ROOT) -> list[tuple[str, str, Path, dict]]:
    """Every job of the bundle as (target or "*" for all targets, key, defining file, definition).

    Jobs under a target's ``resources`` that only override a job of an included file (no tasks)
    are left out: they are checked with the job they override.
    """
    out: list[tuple[str, str, Path, dict]] = []
    for path, doc in _bundle_files(root):
        for key, job in (doc.get("resources") or {}).get("jobs", {}).items():
            out.append(("*", key, path, job))
        for target, spec in (doc.get("targets") or {}).items():
            for key, job in ((spec or {}).get("resources") or {}).get("jobs", {}).items():
                if "tasks" in job:
                    out.append((target, key, path, job))
    return out


def _library_paths(job: dict) -> list[str]:
    """Local library paths of a job: task ``libraries`` and environment ``dependencies``."""
    paths = [
        lib["whl"] for task in job["tasks"] for lib in task.get("libraries", []) if "whl" in lib
    ]
    for env in job.get("environments", []):
        paths += [d for d in env["spec"].get("dependencies", []) if d.startswith(".")]
    return paths


def test_bundle_structure_is_valid():
    bundle = yaml.safe_load((ROOT / "databricks.yml").read_text())
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
    assert {"dev", "prod", "serverless"} <= set(bundle["targets"])
    assert bundle["targets"]["dev"]["mode"] == "development"
    assert bundle["targets"]["prod"]["mode"] == "production"
    for var in bundle["variables"].values():
        assert set(var) <= {"description", "default", "lookup", "type"}
    variables = set(bundle["variables"])
    for path, _ in _bundle_files():
        for ref in re.findall(r"\$\{var\.([a-z_]+)\}", path.read_text()):
            assert ref in variables, f"${{var.{ref}}} in {path.name} is not declared"
    jobs = _jobs()
    assert {(t, k) for t, k, _, _ in jobs} == {
        ("*", "mlearner"),
        ("serverless", "mlearner_serverless"),
    }
    for _, _, _, job in jobs:
        params = {p["name"] for p in job["parameters"]}
        assert params == {"config", "platform_config", "output"}, "job-level parameters kept"
        keys = [t["task_key"] for t in job["tasks"]]
        assert keys == STAGE_ORDER, "tasks run the stages in pipeline order"
        clusters = {c["job_cluster_key"] for c in job.get("job_clusters", [])}
        environments = {e["environment_key"] for e in job.get("environments", [])}
        for task in job["tasks"]:
            # exactly one kind of compute per task: a job cluster or a serverless environment
            assert ("job_cluster_key" in task) != ("environment_key" in task), task["task_key"]
            assert task.get("job_cluster_key", next(iter(clusters), None)) in clusters | {None}
            if "environment_key" in task:
                assert task["environment_key"] in environments
            for dep in task.get("depends_on", []):
                assert dep["task_key"] in keys[: keys.index(task["task_key"])]
            for ref in re.findall(
                r"\{\{job\.parameters\.([a-z_]+)\}\}",
                " ".join(task["python_wheel_task"]["parameters"]),
            ):
                assert ref in params


def test_every_bundle_job_parses_with_databricks_bundles():
    """The jobs, with every target's overrides, are valid `databricks.bundles.jobs.Job`s.

    ``Job.from_dict`` rejects unknown fields and invalid enum values (access modes, pause status).
    """
    from databricks.bundles.jobs import Job

    jobs = _jobs()
    bundle = yaml.safe_load((ROOT / "databricks.yml").read_text())
    for target, spec in bundle["targets"].items():
        for key, override in ((spec or {}).get("resources") or {}).get("jobs", {}).items():
            if "tasks" not in override:
                base = next(j for t, k, _, j in jobs if k == key and t == "*")
                jobs.append((target, key, ROOT / "databricks.yml", {**base, **override}))
    assert jobs
    for target, key, path, job in jobs:
        parsed = Job.from_dict(job)
        assert parsed.name, (target, key, path.name)
        assert len(parsed.tasks) == len(STAGE_ORDER)


def test_bundle_uses_current_access_mode_names_and_prod_only_schedule():
    from databricks.bundles.jobs import DataSecurityMode

    legacy = {"SINGLE_USER", "USER_ISOLATION", "NONE"} | {
        m.value for m in DataSecurityMode if m.value.startswith("LEGACY_")
    }
    for _, key, _, job in _jobs():
        assert "schedule" not in job, f"job {key}: the schedule belongs to the prod target only"
        for cluster in job.get("job_clusters", []):
            mode = cluster["new_cluster"]["data_security_mode"]
            assert mode not in legacy, f"{key}: {mode} is a legacy access-mode name"
            assert mode.startswith("DATA_SECURITY_MODE_")
            assert cluster["new_cluster"].get("kind") == "CLASSIC_PREVIEW", "the new names need it"
    bundle = yaml.safe_load((ROOT / "databricks.yml").read_text())
    for name, spec in bundle["targets"].items():
        text = yaml.safe_dump(spec)
        if name == "prod":
            schedule = spec["resources"]["jobs"]["mlearner"]["schedule"]
            assert schedule["pause_status"] == "UNPAUSED"
            assert {"quartz_cron_expression", "timezone_id"} <= set(schedule)
        else:
            assert "schedule:" not in text and "pause_status" not in text, name


def test_every_library_glob_resolves_to_the_built_wheel(bundle_copy):
    """Library paths resolve relative to the file that defines them (as the Databricks CLI does)."""
    root, wheel = bundle_copy
    checked = 0
    for target, key, path, job in _jobs(root):
        for lib in _library_paths(job):
            matches = sorted((path.parent / lib).parent.resolve().glob(Path(lib).name))
            assert matches == [wheel.resolve()], (
                f"{path.relative_to(root)} job {key} ({target}): library {lib!r} matches "
                f"{matches}, not the wheel the bundle builds ({wheel.relative_to(root)})"
            )
            checked += 1
    assert checked >= len(STAGE_ORDER) + 1  # every classic task, and the serverless environment


def test_serverless_job_runs_dask_in_the_driver():
    """Serverless has no init scripts: no Dask on the workers, so every task asks for local Dask."""
    from mlearner_dist.config import load_config

    (job,) = [j for _, k, _, j in _jobs() if k == "mlearner_serverless"]
    assert "job_clusters" not in job and "init_scripts" not in yaml.safe_dump(job)
    for task in job["tasks"]:
        args = task["python_wheel_task"]["parameters"]
        sets = [args[i + 1] for i, a in enumerate(args) if a == "--set"]
        assert "compute.dask.scheduler_address=" in sets, task["task_key"]
        cfg = load_config([ROOT / "conf" / "databricks.yaml"], sets)
        assert cfg.compute.dask.scheduler_address == ""


# Databricks Runtime (LTS) -> Apache Spark, from the runtime release notes; serverless
# environment versions -> the Spark of their Databricks Connect.
_RUNTIME_SPARK = {"15.4": "3.5", "16.4": "3.5", "17.3": "4.0"}
_SERVERLESS_SPARK = {"3": "3.5", "4": "4.0"}


def _toml():
    try:
        import tomllib
    except ImportError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    return tomllib


def _pyspark_requirement():
    from packaging.requirements import Requirement

    project = _toml().loads((ROOT / "pyproject.toml").read_text())["project"]
    (spec,) = project["optional-dependencies"]["spark"]
    return Requirement(spec)


def test_runtime_spark_versions_are_supported_by_the_pyspark_range():
    """The bundle's runtimes run a Spark our pyspark range accepts; its lower bound is theirs."""
    from packaging.version import Version

    req = _pyspark_requirement()
    assert req.name == "pyspark"
    sparks = []
    for _, key, _, job in _jobs():
        for cluster in job.get("job_clusters", []):
            runtime = cluster["new_cluster"]["spark_version"]
            m = re.fullmatch(r"(\d+\.\d+)\.x-scala(2\.1[23])", runtime)
            assert m, f"{key}: {runtime!r} is not a runtime version string"
            assert m.group(1) in _RUNTIME_SPARK, f"{key}: runtime {runtime} unknown to this test"
            sparks.append(_RUNTIME_SPARK[m.group(1)])
        for env in job.get("environments", []):
            sparks.append(_SERVERLESS_SPARK[str(env["spec"]["environment_version"])])
    assert sparks
    lower = min(Version(s) for s in sparks)
    for spark in sparks:
        assert req.specifier.contains(f"{spark}.0"), f"Spark {spark} is outside {req}"
    # the lower bound is the oldest Spark of the bundle: `make test-oldest` tests exactly it
    bounds = [Version(s.version) for s in req.specifier if s.operator == ">="]
    assert bounds == [lower], (bounds, lower)


def test_pyspark_in_use_and_constraints_are_in_the_supported_range():
    import pyspark

    req = _pyspark_requirement()
    assert req.specifier.contains(pyspark.__version__), pyspark.__version__
    pins = _constraints()
    assert req.specifier.contains(pins["pyspark"])


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = version
    return pins


def test_constraints_pin_every_requirement_inside_its_range():
    """constraints.txt (the tested set) satisfies every range of pyproject.toml it pins."""
    from packaging.requirements import Requirement

    project = _toml().loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = _constraints()
    specs = list(project["dependencies"])
    for extra in ("spark", "test", "delta", "connect"):
        specs += project["optional-dependencies"][extra]
    for spec in specs:
        req = Requirement(spec)
        name = req.name.lower().replace("_", "-")
        if name == "mlearner-dist":
            continue
        assert name in pins, f"{name} is not pinned in constraints.txt"
        assert req.specifier.contains(pins[name]), f"constraints.txt {name}=={pins[name]} vs {req}"
        assert "==" not in str(req.specifier), f"{spec}: a range, not a pin, in pyproject.toml"


def test_init_script_pins_the_tested_dask():
    text = (ROOT / "resources" / "init" / "dask_databricks.sh").read_text()
    pins = _constraints()
    found = dict(re.findall(r'"([a-z-]+)(?:\[[a-z]+\])?==([\w.]+)"', text))
    assert {"dask", "distributed", "dask-databricks"} <= set(found)
    for name in ("dask", "distributed"):
        assert found[name] == pins[name], f"init script {name}=={found[name]}, tested {pins[name]}"
    (job,) = [j for t, k, _, j in _jobs() if k == "mlearner"]
    (cluster,) = job["job_clusters"]
    (script,) = cluster["new_cluster"]["init_scripts"]
    assert script["workspace"]["destination"].endswith("/resources/init/dask_databricks.sh")


def test_bundle_tasks_name_wheel_entry_points_and_valid_cli_parameters(bundle_copy):
    from mlearner_dist.cli import build_parser

    entry_points = _wheel_entry_points(bundle_copy[1])
    parser = build_parser()
    for _, _, _, job in _jobs():
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
