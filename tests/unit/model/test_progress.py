"""The training progress log: stage, share of the run, ETA."""

from __future__ import annotations

import logging
import time

import pytest

from bluegreen.model.progress import Progress


def test_estimated_stage_then_exact_stage(caplog: pytest.LogCaptureFixture) -> None:
    progress = Progress([("features", 100.0), ("charcnn", 300.0)], every=60.0)
    assert progress.line() == "train progress: starting"
    with caplog.at_level(logging.INFO, logger="bluegreen.model.progress"):
        with progress.stage("features"):
            line = progress.line()
            assert "stage features (1/2)" in line
            assert "eta ~" in line  # no own progress: estimated from the expected durations
        with progress.stage("charcnn"):
            progress.report(0.25, 90.0)
            line = progress.line()
    assert "stage charcnn (2/2) 25%" in line
    assert line.endswith("eta 90 s")  # the last stage's own ETA, exact
    assert any("stage features done" in r.getMessage() for r in caplog.records)


def test_heartbeat_thread_logs_and_stops(caplog: pytest.LogCaptureFixture) -> None:
    with (
        caplog.at_level(logging.INFO, logger="bluegreen.model.progress"),
        Progress([("members", 10.0)], every=0.01) as progress,
        progress.stage("members"),
    ):
        time.sleep(0.1)
    beats = [r for r in caplog.records if "stage members (1/1)" in r.getMessage()]
    assert len(beats) >= 2
