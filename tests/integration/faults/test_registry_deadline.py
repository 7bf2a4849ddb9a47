"""A registry that accepts connections and never answers (a hung DNS lookup or a server that
trickles bytes looks the same to the client) must not hang the admin routes or reconciling:
`/admin/*` answers 503/504 within its deadline while `/predict` keeps serving."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import httpx
import pytest

from tests.integration.conftest import AppFactory
from tests.support.faults import Load, TcpProxy, metric, served_version, wait_until
from tests.support.models import TestRegistry
from tests.support.servers import MlflowServer

pytestmark = pytest.mark.integration
TOKEN = "deadline-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
DEADLINE_S = 2.0


class StallingProxy(TcpProxy):
    """A TcpProxy that, once stalled, keeps every connection open and forwards nothing."""

    def __init__(self, target_port: int) -> None:
        super().__init__(target_port)
        self.stalled = threading.Event()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(65536):
                while self.stalled.is_set():
                    time.sleep(0.05)
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


def timed(method: str, url: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = httpx.request(method, url, headers=ADMIN, timeout=30)
    return response, time.monotonic() - started


@pytest.mark.timeout(240)
def test_a_hung_registry_answers_admin_routes_within_the_deadline_and_predict_serves(
    registry: TestRegistry, start_app: AppFactory, mlflow_server: MlflowServer
) -> None:
    proxy = StallingProxy(mlflow_server.port)
    proxy.up()
    try:
        v1 = registry.register()
        app = start_app(
            tracking_uri=proxy.url,
            env={"BLUEGREEN_ADMIN_TOKEN": TOKEN, "BLUEGREEN_REGISTRY_TIMEOUT_S": str(DEADLINE_S)},
        )
        assert served_version(app.url) == v1
        with Load(app.url, clients=3) as load:
            proxy.stalled.set()
            for method, path in [("GET", "/admin/versions"), ("POST", "/admin/rollback"),
                                 ("POST", "/admin/reload")]:  # fmt: skip
                response, took = timed(method, f"{app.url}{path}")
                assert response.status_code in {503, 504}, (path, response.text)
                body = response.json()
                assert body["error"] in {"registry_deadline_exceeded", "registry_unavailable"}
                assert response.headers.get("retry-after")
                # its own deadline, plus at most one reconcile's call it queued behind
                assert took < 2 * DEADLINE_S + 1.5, (path, took)
            slots, took = timed("GET", f"{app.url}/admin/slots")
            assert slots.status_code == 200
            assert took < 1.0, took
            wait_until(
                lambda: metric(app.url, "bluegreen_registry_deadline_exceeded_total") >= 3,
                timeout=20, what="deadlines counted",
            )  # fmt: skip
            time.sleep(DEADLINE_S * 2)  # the control loop meets the hang too, and backs off
            proxy.stalled.clear()
            v2 = registry.register()  # reconciling was never frozen: it follows at once
            wait_until(lambda: served_version(app.url) == v2, timeout=30, what="serves v2")
        report = load.stop()
        assert report.total > 50, report.summary()
        assert not report.failures, report.summary()
        versions = httpx.get(f"{app.url}/admin/versions", headers=ADMIN, timeout=10)
        assert versions.status_code == 200, versions.text
        events = [e["event"] for e in app.log_events()]
        assert "registry.deadline" in events
    finally:
        proxy.stalled.clear()
        proxy.down()
