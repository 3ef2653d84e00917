"""A config cannot make a run write its MLflow store outside the output folder unless it says so."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlearner_dist.config import load_config
from mlearner_dist.exceptions import ConfigError
from mlearner_dist.pipeline import check_tracking_location, local_store_path, run_pipeline


def test_local_store_paths_are_recognised():
    assert local_store_path("sqlite:////abs/m.db") == Path("/abs/m.db")
    assert local_store_path("sqlite:///rel.db") == Path("rel.db")
    assert local_store_path("file:///abs/mlruns") == Path("/abs/mlruns")
    assert local_store_path("some/dir") == Path("some/dir")
    for remote in ("http://127.0.0.1:5000", "https://x", "databricks", "databricks-uc"):
        assert local_store_path(remote) is None


@pytest.mark.parametrize(
    "uri, ok",
    [
        ("", True),
        ("sqlite:///{out}/sub/m.db", True),
        ("http://127.0.0.1:5000", True),
        ("sqlite:///{tmp}/elsewhere.db", False),
        ("file://{tmp}/mlruns", False),
        ("{out}/../escape", False),
    ],
)
def test_store_outside_the_output_folder_is_refused(tmp_path, uri, ok):
    out = tmp_path / "out"
    out.mkdir()
    cfg = load_config([], [f"tracking.uri={uri.format(out=out, tmp=tmp_path)}"])
    if ok:
        check_tracking_location(cfg, out)
    else:
        with pytest.raises(ConfigError, match="outside the output folder"):
            check_tracking_location(cfg, out)
    allowed = load_config(
        [],
        [f"tracking.uri={uri.format(out=out, tmp=tmp_path)}", "tracking.allow_outside_output=true"],
    )
    check_tracking_location(allowed, out)


def test_run_stops_before_any_stage(tmp_path):
    out = tmp_path / "out"
    cfg = load_config(
        [Path(__file__).resolve().parents[2] / "conf" / "jobs_ii.yaml"],
        [f"tracking.uri=sqlite:///{tmp_path}/shared.db"],
    )
    with pytest.raises(ConfigError, match="allow_outside_output"):
        run_pipeline(cfg, out)
    assert not (tmp_path / "shared.db").exists()
    assert not any(p.name != "_manifests" for p in out.iterdir())


def test_an_output_path_that_cannot_be_written_stops_with_our_error(tmp_path):
    from mlearner_dist.exceptions import StageError

    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    cfg = load_config([], ["tracking.enabled=false"])
    with pytest.raises(StageError, match="choose another --output"):
        run_pipeline(cfg, blocker / "out")
    with pytest.raises(StageError, match="choose another --output"):
        run_pipeline(cfg, blocker)
