"""MLflow tracking against real stores: a local SQLite store and a real `mlflow server`.

One SQLite store is shared by the module (creating its tables takes several seconds); each test
uses its own experiment.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import ClassVar

import cloudpickle
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from mlearner_dist import plots
from mlearner_dist.backends.mlflow_tracking import (
    MlflowTracker,
    check_tracking_reachable,
    list_runs,
    log_analysis,
    score_with_model_uri,
    spark_score,
)
from mlearner_dist.config import config_from_dict
from mlearner_dist.exceptions import InputValidationError, TrackingError
from mlearner_dist.report import write_report
from mlearner_dist.scoring import score_frame
from mlearner_dist.tracking import Tracker

# the test double below travels inside the pickled pyfunc model (also to Spark's Python workers)
cloudpickle.register_pickle_by_value(sys.modules[__name__])


class QuadrantTree:
    """Test double of a fitted profile tree: splits on x1 at 0, then on x2 at 0 when x1 > 0."""

    covariates = ("x1", "x2")
    rules: ClassVar[dict[int, str]] = {
        1: "x1 <= 0",
        2: "x1 > 0 and x2 <= 0",
        3: "x1 > 0 and x2 > 0",
    }
    sizes: ClassVar[dict[int, int]] = {1: 500, 2: 250, 3: 250}

    def leaf_of(self, X: pd.DataFrame) -> np.ndarray:
        x1, x2 = X["x1"].to_numpy(), X["x2"].to_numpy()
        return np.where(x1 <= 0, 1, np.where(x2 <= 0, 2, 3))


class UnnamedQuadrantTree(QuadrantTree):
    """The same tree without covariate names: the model then reads the example's columns."""

    covariates = None


def _covariates(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n)})


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """One SQLite tracking store for the module."""
    folder = tmp_path_factory.mktemp("mlflow_store")
    return f"sqlite:///{folder / 'mlflow.db'}"


def _artifacts(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    found = set()
    for info in client.list_artifacts(run_id, path):
        if info.is_dir:
            found |= _artifacts(client, run_id, info.path)
        else:
            found.add(info.path)
    return found


def test_tracker_records_params_metrics_tags_artifacts_inputs_and_children(store, tmp_path):
    tracker = MlflowTracker(store, "tracker")
    run_id = tracker.start_run("unit", tags={"team": "causal"})
    assert tracker.run_id == run_id
    params = {"grid": {f"p{i:03d}": i for i in range(250)}, "note": "x" * 7000, "ks": [2, 3]}
    tracker.log_params(params)  # 252 params: three batches
    tracker.log_metrics({f"m{i}": float(i) for i in range(1200)} | {"nan": float("nan")}, step=2)
    tracker.set_tags({"mlearner.stage": "report"})
    (tmp_path / "note.txt").write_text("hello")
    tracker.log_artifact(tmp_path / "note.txt", "notes")
    tracker.log_dict({"a": {"b": np.int64(3)}}, "config.yaml")
    tracker.log_table(pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}), "tables/t.csv")
    tracker.log_input("/data/units.parquet", 1010, "abcd1234")
    with tracker.child("stage embed", {"mlearner.stage": "embed"}) as child_ok:
        assert tracker.run_id == child_ok
        tracker.log_metrics({"seconds": 3.5})
    with pytest.raises(RuntimeError, match="boom"), tracker.child("stage cluster") as child_bad:
        raise RuntimeError("boom")
    assert tracker.run_id == run_id
    tracker.end_run()
    assert tracker.run_id is None

    client = MlflowClient(store)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert len(run.data.params) == 252
    assert run.data.params["grid.p249"] == "249"
    assert run.data.params["ks"] == "[2, 3]"
    assert len(run.data.params["note"]) == 6000 and "truncated 7000" in run.data.params["note"]
    assert len(run.data.metrics) == 1200 and run.data.metrics["m1199"] == 1199.0
    assert [m.step for m in client.get_metric_history(run_id, "m7")] == [2]
    assert run.data.tags["team"] == "causal"
    assert run.data.tags["mlearner.stage"] == "report"
    assert run.data.tags["mlearner.data_source"] == "/data/units.parquet"
    assert _artifacts(client, run_id) == {"notes/note.txt", "config.yaml", "tables/t.csv"}
    local = client.download_artifacts(run_id, "config.yaml", str(tmp_path / "dl"))
    assert Path(local).read_text() == "a:\n  b: 3\n"
    inputs = run.inputs.dataset_inputs
    assert len(inputs) == 1 and json.loads(inputs[0].dataset.profile) == {"num_rows": 1010}
    ok, bad = client.get_run(child_ok), client.get_run(child_bad)
    assert ok.data.tags["mlflow.parentRunId"] == run_id == bad.data.tags["mlflow.parentRunId"]
    assert (ok.info.status, bad.info.status) == ("FINISHED", "FAILED")
    assert ok.data.metrics == {"seconds": 3.5}


def test_tracker_rejects_misuse(store):
    tracker = MlflowTracker(store, "misuse")
    assert isinstance(tracker, Tracker)
    with pytest.raises(TrackingError, match="no MLflow run is open"):
        tracker.log_metrics({"a": 1.0})
    tracker.start_run("first")
    with pytest.raises(TrackingError, match="is still open"):
        tracker.start_run("second")
    with pytest.raises(TrackingError, match=r"must end in \.csv, \.json or \.parquet"):
        tracker.log_table(pd.DataFrame({"a": [1]}), "t.xlsx")
    with pytest.raises(TrackingError, match="status must be one of"):
        tracker.end_run("DONE")
    tracker.end_run("KILLED")
    with pytest.raises(TrackingError, match="experiment must be a non-empty name"):
        MlflowTracker(store, "")


def test_log_analysis_records_the_result_model_and_lists_the_run(store, tmp_path, real_result):
    result = real_result  # a real pipeline output (tests/fixtures/result_mediated.json)
    cfg = config_from_dict(result["config"])
    out = tmp_path / "run"
    out.mkdir()
    plots.save_figure(plots.plot_subgroup_forest(result["subgroups"]), out / "figures" / "f.png")
    write_report(result, out)
    (out / "result.json").write_text(json.dumps(result))
    (out / "profiles.json").write_text(json.dumps({"configurations": result["configurations"]}))
    example = _covariates(8, seed=1)
    run_id = log_analysis(store, cfg, result, out, tree=UnnamedQuadrantTree(), example=example)

    client = MlflowClient(store)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.info.experiment_id == client.get_experiment_by_name("mlearner").experiment_id
    m = run.data.metrics
    tested = [c for c in result["configurations"] if c["selected_for_test"]]
    for c in tested:
        assert m[f"p_m.k{c['k']}.tree{c['tree_id']}"] == pytest.approx(c["p_m"])
        assert m[f"p_y.k{c['k']}.tree{c['tree_id']}"] == pytest.approx(c["p_y"])
    calib = result["calibration"]
    assert (m["declared"], m["threshold"]) == (1.0, result["threshold"])
    assert m["mc_pvalue"] == pytest.approx(calib["mc_pvalue"])
    assert m["indirect.ci_low"] == pytest.approx(result["average_effects"]["indirect"]["ci_low"])
    wcss = result["clustering"]["wcss"]
    assert m["wcss.k3"] == pytest.approx(wcss["3"])
    tags = run.data.tags
    assert tags["mlearner.chosen_k"] == str(result["chosen"]["k"])
    assert tags["mlearner.declared"] == "true"
    assert tags["mlearner.calibration_mode"] == "null"
    assert tags["mlearner.output_dir"] == str(out.resolve())
    assert run.data.params["embed.perplexity"] == str(cfg.embed.perplexity)
    arts = _artifacts(client, run_id)
    for name in (
        "figures/f.png",
        "report.html",
        "result.json",
        "profiles.json",
        "config.yaml",
        "calibration/null_p_leaf.csv",
        "subgroups/subgroups.csv",
        "subgroups/subgroups.json",
    ):
        assert name in arts, name
    null = pd.read_csv(
        client.download_artifacts(run_id, "calibration/null_p_leaf.csv", str(tmp_path / "dl"))
    )
    assert len(null) == calib["n_replicates"] == len(calib["null_p_leaf"])
    assert null["p_leaf"].iloc[0] == pytest.approx(calib["null_p_leaf"][0])
    children = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run_id}'")
    names = sorted(c.info.run_name for c in children)
    assert names == sorted([f"K={k}" for k in wcss] + [f"stage {s}" for s in result["timings"]])
    k3 = next(c for c in children if c.info.run_name == "K=3")
    want = {"wcss": pytest.approx(wcss["3"])}
    for c in tested:
        if c["k"] == 3:
            want[f"p_y.tree{c['tree_id']}"] = pytest.approx(c["p_y"])
            want[f"p_m.tree{c['tree_id']}"] = pytest.approx(c["p_m"])
    assert k3.data.metrics == want  # trees not selected for testing: no p-values

    runs = list_runs(store, "mlearner")
    assert runs["run_id"].tolist() == [run_id]  # children are not listed
    row = runs.iloc[0]
    want_row = (result["chosen"]["k"], True, float(result["row_account"]["n_used"]))
    assert (row["chosen_k"], row["declared"], row["n_used"]) == want_row
    assert row["data_source"] == result["config"]["data"]["source"]
    assert row["status"] == "FINISHED"
    assert list_runs(store, "no such experiment").empty

    # the pyfunc model, reloaded, scores exactly like the in-memory tree
    model_uri = tags["mlearner.model_uri"]  # MLflow 3: models:/<model_id>
    assert model_uri == f"models:/{tags['mlearner.model_id']}"
    new = _covariates(300, seed=2).assign(unit=np.arange(300))
    mlflow.set_tracking_uri(store)
    loaded = mlflow.pyfunc.load_model(model_uri)
    expected = score_frame(QuadrantTree(), new)
    pd.testing.assert_frame_equal(loaded.predict(new), expected[["subgroup", "rule"]])
    assert set(expected["subgroup"]) == {1, 2, 3}

    new.to_parquet(tmp_path / "new.parquet")
    n = score_with_model_uri(
        model_uri, tmp_path / "new.parquet", tmp_path / "scored.parquet", tracking_uri=store
    )
    scored = pd.read_parquet(tmp_path / "scored.parquet")
    assert n == 300
    pd.testing.assert_frame_equal(scored, expected)
    new.drop(columns="x2").to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(InputValidationError, match="column 'x2'"):
        score_with_model_uri(
            model_uri, tmp_path / "bad.parquet", tmp_path / "o.parquet", tracking_uri=store
        )
    with pytest.raises(InputValidationError, match="does not exist"):
        score_with_model_uri(
            model_uri, tmp_path / "nope.parquet", tmp_path / "o.parquet", tracking_uri=store
        )
    with pytest.raises(TrackingError, match="could not load model"):
        score_with_model_uri(
            f"runs:/{'0' * 32}/subgroup_model",
            tmp_path / "new.parquet",
            tmp_path / "o.parquet",
            tracking_uri=store,
        )


def test_check_tracking_reachable_fails_fast_with_clear_messages(tmp_path, monkeypatch):
    start = time.monotonic()
    with pytest.raises(TrackingError, match=r"'http://127\.0\.0\.1:9' cannot be reached"):
        check_tracking_reachable("http://127.0.0.1:9", timeout=3)
    assert time.monotonic() - start < 5
    with pytest.raises(TrackingError, match=r"tracking\.enabled: false"):
        check_tracking_reachable("http://127.0.0.1:9", timeout=3)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    with pytest.raises(TrackingError, match="MLFLOW_ALLOW_FILE_STORE=true"):
        check_tracking_reachable(str(tmp_path / "mlruns"))
    (tmp_path / "junk.db").write_text("this is not a database" * 100)
    with pytest.raises(TrackingError, match="not a readable SQLite database"):
        check_tracking_reachable(f"sqlite:///{tmp_path / 'junk.db'}")
    with pytest.raises(TrackingError, match="non-empty string"):
        check_tracking_reachable("")
    check_tracking_reachable(f"sqlite:///{tmp_path / 'new' / 'mlflow.db'}")  # creatable: fine
    assert (tmp_path / "new").is_dir()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # about 45 s here: the server creates its database and starts uvicorn
def test_real_mlflow_server_round_trip(tmp_path):
    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(
        [
            str(mlflow_bin),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'server.db'}",
            "--artifacts-destination",
            str(tmp_path / "server_artifacts"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "mlflow server did not come up in 90 s"
            time.sleep(0.5)
        check_tracking_reachable(uri)
        tracker = MlflowTracker(uri, "served")
        run_id = tracker.start_run("over http")
        tracker.log_params({"embed": {"perplexity": 30}})
        tracker.log_metrics({"p_leaf": 0.001})
        tracker.log_table(pd.DataFrame({"leaf": [1, 2], "n": [10, 20]}), "subgroups/s.csv")
        with tracker.child("stage report", {"mlearner.stage": "report"}) as child:
            tracker.log_metrics({"seconds": 1.0})
        tracker.end_run()

        client = MlflowClient(uri)
        run = client.get_run(run_id)
        assert run.data.params == {"embed.perplexity": "30"}
        assert run.data.metrics == {"p_leaf": 0.001}
        assert client.get_run(child).data.tags["mlflow.parentRunId"] == run_id
        local = client.download_artifacts(run_id, "subgroups/s.csv", str(tmp_path / "dl"))
        assert pd.read_csv(local)["n"].tolist() == [10, 20]
        assert list(tmp_path.joinpath("server_artifacts").rglob("s.csv")), "stored by the server"
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


@pytest.mark.slow  # about 35 s here (Spark Python workers load the pyfunc model)
@pytest.mark.spark
def test_spark_score_matches_in_memory_scoring(spark, store):
    tracker = MlflowTracker(store, "spark-scoring")
    tracker.start_run("model only")
    model_uri = tracker.log_subgroup_model(QuadrantTree(), _covariates(5, seed=3))
    tracker.end_run()
    frame = _covariates(200, seed=4).assign(unit=np.arange(200))
    sdf = spark.createDataFrame(frame).repartition(3)
    scored = spark_score(spark, model_uri, sdf, tracking_uri=store)
    assert scored.columns == ["x1", "x2", "unit", "subgroup", "rule"]
    got = scored.toPandas().sort_values("unit").reset_index(drop=True)
    expected = score_frame(QuadrantTree(), frame)
    assert got["subgroup"].tolist() == expected["subgroup"].tolist()
    assert got["rule"].tolist() == expected["rule"].tolist()
    with pytest.raises(InputValidationError, match="column 'x2'"):
        spark_score(spark, model_uri, sdf.drop("x2"), tracking_uri=store)
