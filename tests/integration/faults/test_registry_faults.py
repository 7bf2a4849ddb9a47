"""Matrix rows 1-2: the registry is unreachable (at start, or while serving).

The registry "host" is a TCP proxy on a fixed port in front of the session's mlflow server:
`down()` gives connection refused at that address, `up()` brings the same address back. This is
what restarting an MlflowServer on the same port does to the app, at a fraction of the start-up
cost (about 90 s per mlflow server on this shared machine)."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.integration.conftest import AppFactory
from tests.support.faults import Load, TcpProxy, metric, served_version, wait_until
from tests.support.models import TestRegistry
from tests.support.servers import MlflowServer

pytestmark = pytest.mark.integration


@pytest.mark.timeout(180)
def test_registry_unreachable_at_start_then_serves_when_it_returns(
    registry: TestRegistry, start_app: AppFactory, mlflow_server: MlflowServer
) -> None:
    proxy = TcpProxy(mlflow_server.port)  # fixed port, nothing listening yet
    app = start_app(tracking_uri=proxy.url, ready=False)
    try:
        assert httpx.get(f"{app.url}/healthz", timeout=5).status_code == 200

        def not_ready_for_registry() -> httpx.Response | None:
            r = httpx.get(f"{app.url}/readyz", timeout=5)
            return r if r.status_code == 503 and "registry" in r.json().get("reason", "") else None

        ready = wait_until(not_ready_for_registry, timeout=30, what="readyz names the registry")
        assert ready.headers.get("retry-after")
        # A generic reason: the error text (the registry's address) is for admins only.
        assert ready.json() == {"status": "not_ready", "reason": "registry unreachable"}
        response = httpx.post(f"{app.url}/predict", json={"text": "최고"}, timeout=5)
        assert response.status_code == 503
        assert response.headers.get("retry-after")
        assert response.json()["error"] == "no_model"
        assert metric(app.url, "bluegreen_registry_polls_total", result="error") >= 1

        v1 = registry.register()
        proxy.up()
        started = time.monotonic()
        wait_until(lambda: served_version(app.url) == v1, timeout=30, what="serves v1")
        recovered_s = time.monotonic() - started
        assert httpx.get(f"{app.url}/readyz", timeout=5).status_code == 200
        # Bounded by the backoff cap (BLUEGREEN_REGISTRY_BACKOFF_MAX_S=3 in AppServer) + a load.
        assert recovered_s < 20, recovered_s
    finally:
        proxy.down()


@pytest.mark.timeout(180)
def test_registry_down_while_serving_then_recovers_without_admin(
    registry: TestRegistry, start_app: AppFactory, mlflow_server: MlflowServer
) -> None:
    proxy = TcpProxy(mlflow_server.port)
    proxy.up()
    try:
        v1 = registry.register()
        app = start_app(tracking_uri=proxy.url)  # no admin token: recovery must be automatic
        errors_before = metric(app.url, "bluegreen_registry_polls_total", result="error")
        with Load(app.url, clients=3) as load:
            time.sleep(1)
            proxy.down()
            wait_until(
                lambda: metric(app.url, "bluegreen_registry_polls_total", result="error")
                >= errors_before + 2,
                timeout=30, what="poll errors counted",
            )  # fmt: skip
            assert httpx.get(f"{app.url}/readyz", timeout=5).status_code == 200
            time.sleep(2)
            proxy.up()
            v2 = registry.register()
            wait_until(lambda: served_version(app.url) == v2, timeout=30, what="serves v2")
            time.sleep(1)
        report = load.stop()
        assert report.total > 50, report.summary()
        assert not report.failures, report.summary()
        assert report.versions() <= {v1, v2}
        assert metric(app.url, "bluegreen_registry_last_success_timestamp_seconds") > 0
        events = [e["event"] for e in app.log_events()]
        assert "registry.poll.failed" in events
    finally:
        proxy.down()
