"""A Dask worker killed (SIGKILL) in the middle of the embed stage is survived (real processes)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlearner_dist.backends.dask_cluster import get_client
from mlearner_dist.backends.dask_embedding import dask_embed

pytestmark = [pytest.mark.dask, pytest.mark.slow]

N, PARTS = 600_000, 24
EMBED = dict(
    effects=["indirect", "total"],
    exact_max_n=1000,
    n_landmarks=300,
    grid_size=2000,
    n_iter=250,
    n_jobs=1,
    block_size=20_000,
    random_state=3,
)


def _effects(folder: Path) -> Path:
    rng = np.random.default_rng(8)
    group = rng.random(N) < 0.3
    indirect = 5.0 * group + rng.normal(size=N)
    frame = pd.DataFrame(
        {
            "unit_id": np.arange(N, dtype=np.int64),
            "indirect": indirect,
            "direct": rng.normal(size=N),
        }
    )
    frame["total"] = frame["indirect"] + frame["direct"]
    folder.mkdir()
    for i, rows in enumerate(np.array_split(np.arange(N), PARTS)):
        frame.iloc[rows].to_parquet(folder / f"part-{i:03d}.parquet", index=False)
    return folder


def _read(folder: Path) -> pd.DataFrame:
    return pd.read_parquet(folder).sort_values("unit_id").reset_index(drop=True)


def test_embed_survives_a_worker_killed_mid_stage(tmp_path):
    src = _effects(tmp_path / "effects")
    client, close = get_client(None, n_workers=2, threads_per_worker=1, memory_limit="3GiB")
    try:
        dask_embed(src, tmp_path / "calm", client, **EMBED)
        pids = client.run(os.getpid)
        killed: dict[str, object] = {}

        def killer() -> None:
            # wait until a worker is running tasks of the stage, then SIGKILL its process
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not killed:
                busy = [w for w, tasks in client.processing().items() if tasks]
                if busy:
                    killed["address"] = busy[0]
                    killed["tasks"] = len(client.processing()[busy[0]])
                    os.kill(pids[busy[0]], signal.SIGKILL)
                    return
                time.sleep(0.02)

        thread = threading.Thread(target=killer, daemon=True)
        thread.start()
        dask_embed(src, tmp_path / "killed", client, **EMBED)
        thread.join(timeout=5)
        assert killed.get("address"), "no worker was busy: the stage finished before the kill"
        assert pids[killed["address"]] not in client.run(os.getpid).values()
    finally:
        close()
    calm, after = _read(tmp_path / "calm"), _read(tmp_path / "killed")
    assert len(after) == N
    pd.testing.assert_frame_equal(calm, after, check_exact=True)
    assert not list(tmp_path.glob("killed*/_tmp*")) and not list(tmp_path.glob("*.tmp*"))
