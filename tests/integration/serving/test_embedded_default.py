"""The README's first command: no MLFLOW_TRACKING_URI, an empty project-local registry, and
the server trains, registers and serves a real model by itself."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.servers import Process, free_port, wait_http

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_first_start_bootstraps_and_serves(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("BLUEGREEN_", "MLFLOW_", "PROMETHEUS_"))}  # fmt: skip
    env["BLUEGREEN_PORT"] = str(port)
    # A user's working directory: it must stay clean (no ./mlruns).
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    env["BLUEGREEN_STATE_DIR"] = str(workdir / ".bluegreen")
    app = Process([sys.executable, "-m", "bluegreen", "serve"], env, tmp_path / "app.log", workdir)
    app.start()
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/healthz", timeout=120, proc=app.proc)
        not_ready = httpx.get(f"{url}/readyz")
        if not_ready.status_code == 503:
            assert not_ready.json()["reason"]
        wait_http(f"{url}/readyz", timeout=600, proc=app.proc)
        positive = httpx.post(f"{url}/predict", json={"text": "정말 재미있고 감동적인 최고의 영화"})
        negative = httpx.post(f"{url}/predict", json={"text": "시간 낭비 돈 낭비 최악의 영화"})
        assert positive.status_code == negative.status_code == 200
        assert positive.json()["sentiment"] == "긍정"
        assert negative.json()["sentiment"] == "부정"
        assert positive.json()["model_version"] == 1
        # Registry and artifacts live under the state dir, not in the working directory.
        assert (workdir / ".bluegreen" / "mlflow.db").exists()
        assert sorted(p.name for p in workdir.iterdir()) == [".bluegreen"]
        events = [e["event"] for e in app.log_events()]
        assert "bootstrap.train.end" in events
        non_json = [line for line in app.log_text().splitlines() if not line.startswith("{")]
        assert not non_json, non_json[:5]
    finally:
        app.stop()
