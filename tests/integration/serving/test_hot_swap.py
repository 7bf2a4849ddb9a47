"""The serving core against a real mlflow server and the real app under uvicorn."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.integration.conftest import AppFactory
from tests.support.faults import metric
from tests.support.models import TestRegistry
from tests.support.servers import AppServer

pytestmark = pytest.mark.integration
ADMIN = {"Authorization": "Bearer test-token"}


def predict(app: AppServer, text: str = "정말 최고의 영화") -> httpx.Response:
    return httpx.post(f"{app.url}/predict", json={"text": text}, timeout=10)


def test_serves_v1_then_swaps_to_v2_without_restart(
    registry: TestRegistry, start_app: AppFactory
) -> None:
    v1 = registry.register()
    app = start_app(env={"BLUEGREEN_ADMIN_TOKEN": "test-token"})
    first = predict(app)
    assert first.status_code == 200
    assert first.json()["model_version"] == v1
    assert first.headers["x-model-version"] == str(v1)
    assert first.json()["sentiment"] == "긍정"
    swaps_before = metric(app.url, "model_hot_swap_total")

    v2 = registry.register()
    reload = httpx.post(f"{app.url}/admin/reload", headers=ADMIN, timeout=60)
    assert reload.status_code == 200, reload.text
    assert reload.json()["version"] == v2

    after = predict(app)
    assert after.json()["model_version"] == v2
    assert after.json()["model_slot"] != first.json()["model_slot"]
    assert metric(app.url, "model_hot_swap_total") == swaps_before + 1
    assert metric(app.url, "model_version_info", version=str(v2)) == 1
    assert metric(app.url, "model_version_info", version=str(v1)) == 0
    events = [e["event"] for e in app.log_events()]
    for expected in ("model.load.start", "model.load.end", "model.smoke.passed",
                     "model.promoted", "slot.drained", "model.freed"):  # fmt: skip
        assert expected in events
    freed = [e for e in app.log_events() if e["event"] == "model.freed"]
    assert freed
    assert freed[-1]["version"] == v1
    assert freed[-1]["unreachable"] is True


@pytest.mark.parametrize("kind", ["corrupt", "missing", "nan", "raise", "swapped"])
def test_bad_version_is_rejected_and_live_keeps_serving(
    registry: TestRegistry, start_app: AppFactory, kind: str
) -> None:
    v1 = registry.register()
    # No control checks: the admin reload below must be the one that meets the bad version.
    app = start_app(
        env={"BLUEGREEN_ADMIN_TOKEN": "test-token", "BLUEGREEN_CONTROL_INTERVAL_S": "0"}
    )
    failures_before = metric(app.url, "bluegreen_model_load_failures_total")
    if kind == "corrupt":
        bad = registry.register_corrupt()
    elif kind == "missing":
        bad = registry.register_missing()
    else:
        bad = registry.register(kind)
    reload = httpx.post(f"{app.url}/admin/reload", headers=ADMIN, timeout=60)
    assert reload.status_code == 200
    assert reload.json()["status"] == "failed"
    for _ in range(20):
        response = predict(app)
        assert response.status_code == 200
        assert response.json()["model_version"] == v1
    assert metric(app.url, "bluegreen_model_load_failures_total") == failures_before + 1
    assert metric(app.url, "bluegreen_model_last_failure_timestamp_seconds") > 0
    tags = registry.tags(bad)
    assert "bluegreen.rejected" in tags
    # The alias is pointed back at the version that serves, so fresh workers can start.
    assert registry.alias_version() == v1
    # Not retried in a loop: a second reconcile skips it without loading.
    loads = metric(app.url, "model_load_total")
    httpx.post(f"{app.url}/admin/reload", headers=ADMIN, timeout=60)
    assert metric(app.url, "model_load_total") == loads
    assert httpx.get(f"{app.url}/readyz").status_code == 200


def test_registry_down_keeps_serving(
    tmp_path: object, start_app: AppFactory, model_name: str
) -> None:
    from pathlib import Path

    from tests.support.servers import MlflowServer

    server = MlflowServer(Path(str(tmp_path)) / "own-mlflow")
    server.start()
    try:
        TestRegistry(server.url, model_name).register()
        app = start_app(tracking_uri=server.url)
        server.stop()
        errors_before = metric(app.url, "bluegreen_registry_polls_total", result="error")
        for _ in range(30):
            assert predict(app).status_code == 200
        import time

        time.sleep(3)
        assert metric(app.url, "bluegreen_registry_polls_total", result="error") > errors_before
        assert httpx.get(f"{app.url}/readyz").status_code == 200
        assert predict(app).status_code == 200
    finally:
        server.stop()


def test_log_lines_are_json(registry: TestRegistry, start_app: AppFactory) -> None:
    registry.register()
    app = start_app()
    predict(app)
    lines = [line for line in app.log_text().splitlines() if line.strip()]
    non_json = [line for line in lines if not re.match(r"^\{.*\}$", line)]
    assert not non_json, non_json[:5]
