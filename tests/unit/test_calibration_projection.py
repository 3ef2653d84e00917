"""Issue 16: the projected calibration time is stated before the null replicates start."""

from __future__ import annotations

import logging

import pytest

from mlearner_dist.core.calibration import null_calibration, project_calibration_seconds


def test_projection_is_rounds_of_parallel_replicates() -> None:
    assert project_calibration_seconds(19, 2.0, 1) == pytest.approx(38.0)
    assert project_calibration_seconds(19, 2.0, 2) == pytest.approx(20.0)  # ceil(19 / 2) = 10
    assert project_calibration_seconds(99, 1.5, 4) == pytest.approx(37.5)
    assert project_calibration_seconds(5, 3.0, 0) == pytest.approx(15.0)  # at least one worker


def test_projection_is_logged_before_the_first_replicate(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[int] = []

    def null_p_leaf(r: int) -> float:
        # the projection must already be in the log when the first replicate runs
        assert any("projected 8 s" in rec.getMessage() for rec in caplog.records)
        seen.append(r)
        return (r + 1) / 10

    with caplog.at_level(logging.INFO, logger="mlearner_dist.core.calibration"):
        doc = null_calibration(null_p_leaf, 4, 0.05, 0.01, seconds_per_replicate=2.0)
    assert seen == [0, 1, 2, 3]
    assert doc["projected_seconds"] == pytest.approx(8.0)
    assert "projected_seconds" not in null_calibration(lambda r: 0.5, 2, 0.05, 0.01)
