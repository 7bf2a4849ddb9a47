"""The HTTP edge of a real `python -m bluegreen serve`: idle sockets, a huge header, a slow
head, a spoofed X-Forwarded-For and request ids, each against a serving app with a registered
model."""

from __future__ import annotations

import contextlib
import json
import re
import resource
import selectors
import socket
import statistics
import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.support.faults import metric
from tests.support.models import TestRegistry
from tests.support.servers import AppServer, MlflowServer

pytestmark = pytest.mark.integration

HEAD_DEADLINE_S = 3.0
TOKEN = "edge-admin-token"
IDLE_SOCKETS = 1500  # above uvicorn's limit_concurrency here (1280): stock uvicorn 503s


@pytest.fixture(scope="module")
def app(
    tmp_path_factory: pytest.TempPathFactory, mlflow_server: MlflowServer
) -> Iterator[AppServer]:
    name = f"edge-{uuid.uuid4().hex[:8]}"
    TestRegistry(mlflow_server.url, name).register()
    server = AppServer(
        tmp_path_factory.mktemp("edge-app"),
        mlflow_server.url,
        env={
            "BLUEGREEN_MODEL_NAME": name,
            "BLUEGREEN_ADMIN_TOKEN": TOKEN,
            "BLUEGREEN_HEADER_TIMEOUT_S": str(HEAD_DEADLINE_S),
        },
    )
    try:
        server.start()
        yield server
    finally:
        server.stop()


def predict(client: httpx.Client) -> httpx.Response:
    return client.post("/predict", json={"text": "정말 최고의 영화"})


def raw_connect(app: AppServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", app.port), timeout=10)


def read_until_eof(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
    return data


def test_idle_sockets_starve_nothing_and_are_closed_at_the_head_deadline(app: AppServer) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < IDLE_SOCKETS + 500:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, IDLE_SOCKETS + 1000), hard))
    closed_before = metric(app.url, "bluegreen_http_connections_closed_total",
                           reason="header_timeout")  # fmt: skip
    idle: list[socket.socket] = []
    try:
        opened_at = time.monotonic()
        for _ in range(IDLE_SOCKETS):
            idle.append(raw_connect(app))
        with httpx.Client(base_url=app.url, timeout=10) as client:
            for _ in range(3):  # every probe and a prediction, while every idle socket is open
                assert client.get("/healthz").status_code == 200
                assert client.get("/readyz").status_code == 200
                assert predict(client).status_code == 200
        probed_at = time.monotonic()
        for sock in idle:  # ...as each one proves: none has seen EOF yet
            sock.setblocking(False)
            with pytest.raises(BlockingIOError):
                sock.recv(1)
        assert probed_at - opened_at < HEAD_DEADLINE_S

        selector = selectors.DefaultSelector()
        for sock in idle:
            selector.register(sock, selectors.EVENT_READ)
        eof: dict[socket.socket, float] = {}
        deadline = opened_at + HEAD_DEADLINE_S + 15
        while len(eof) < len(idle) and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=0.5):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                assert sock.recv(1) == b""  # closed without a byte: no request was begun
                eof[sock] = time.monotonic()
                selector.unregister(sock)
        selector.close()
        assert len(eof) == len(idle), f"{len(idle) - len(eof)} idle sockets still open"
        assert min(eof.values()) - opened_at >= HEAD_DEADLINE_S - 0.5
    finally:
        for sock in idle:
            sock.close()
    closed = metric(app.url, "bluegreen_http_connections_closed_total", reason="header_timeout")
    assert closed - closed_before >= IDLE_SOCKETS


def test_a_huge_header_gets_431_at_once_and_predictions_keep_their_latency(
    app: AppServer,
) -> None:
    header = b"GET /predict HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 2**20 + b"\r\n\r\n"
    with httpx.Client(base_url=app.url, timeout=10) as client:
        for _ in range(5):
            predict(client)
        baseline = []
        for _ in range(30):
            started = time.perf_counter()
            assert predict(client).status_code == 200
            baseline.append(time.perf_counter() - started)

        answers: list[tuple[float, bytes]] = []
        stop = threading.Event()

        def attack() -> None:
            while not stop.is_set():
                started = time.perf_counter()
                with raw_connect(app) as sock:
                    with contextlib.suppress(OSError):  # the server may stop reading first
                        sock.sendall(header)
                    answers.append((time.perf_counter() - started, read_until_eof(sock, 10)))
                stop.wait(0.02)  # shares the GIL with the measuring client: leave it room

        attacker = threading.Thread(target=attack, daemon=True)
        attacker.start()
        during = []
        try:
            while len(during) < 30 or not answers:
                started = time.perf_counter()
                assert predict(client).status_code == 200
                during.append(time.perf_counter() - started)
        finally:
            stop.set()
            attacker.join(30)
    assert answers
    elapsed_s = [elapsed for elapsed, _ in answers]
    assert statistics.median(elapsed_s) < 1.0
    assert max(elapsed_s) < 5.0
    for _, response in answers:
        status_line, _, rest = response.partition(b"\r\n")
        assert status_line == b"HTTP/1.1 431 Request Header Fields Too Large"
        assert b"connection: close" in rest
        body = json.loads(rest.partition(b"\r\n\r\n")[2])
        assert body["status_code"] == 431
        assert body["error"] == "headers_too_large"
    base, load = statistics.median(baseline), statistics.median(during)
    # Generous: the attacker and the server share two loaded cores with this client.
    assert load < max(3 * base, base + 0.05), (base, load)


def test_a_slow_head_is_closed_at_the_deadline(app: AppServer) -> None:
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"s" * 64
    with raw_connect(app) as sock:
        sock.settimeout(0.5)
        started = time.monotonic()
        response = b""
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            for byte in head:  # a byte every half second: never a whole head
                sock.sendall(bytes([byte]))
                try:
                    response = sock.recv(65536)
                except TimeoutError:
                    continue
                break
            response += read_until_eof(sock, 5)
        elapsed = time.monotonic() - started
    assert HEAD_DEADLINE_S - 0.3 <= elapsed <= HEAD_DEADLINE_S + 3
    assert response.startswith(b"HTTP/1.1 408 ")
    assert json.loads(response.partition(b"\r\n\r\n")[2])["error"] == "request_timeout"


def test_x_forwarded_for_from_an_untrusted_peer_does_not_change_the_client(
    app: AppServer,
) -> None:
    spoofed = "203.0.113.9"
    response = httpx.post(
        f"{app.url}/admin/reload",
        headers={"Authorization": f"Bearer {TOKEN}", "X-Forwarded-For": spoofed},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    audits = [e for e in app.log_events() if e.get("event") == "admin.action"]
    assert audits
    line = json.dumps(audits[-1])
    assert spoofed not in line  # the peer is the TCP peer (this test, on loopback)
    assert "127.0.0.1" in line


def test_the_request_id_reaches_the_response_the_error_body_and_the_audit_log(
    app: AppServer,
) -> None:
    with httpx.Client(base_url=app.url, timeout=60) as client:
        ok = client.post("/predict", json={"text": "정말 최고의 영화"},
                         headers={"X-Request-ID": "edge-rid-1"})  # fmt: skip
        assert ok.status_code == 200
        assert ok.headers["x-request-id"] == "edge-rid-1"
        missing = client.get("/no-such-route")
        assert missing.status_code == 404
        assert re.fullmatch(r"[0-9a-f]{32}", missing.headers["x-request-id"])
        assert missing.json()["request_id"] == missing.headers["x-request-id"]
        reload = client.post(
            "/admin/reload",
            headers={"Authorization": f"Bearer {TOKEN}", "X-Request-ID": "edge-rid-2"},
        )
        assert reload.status_code == 200, reload.text
    deadline = time.monotonic() + 10
    while not any(e.get("event") == "admin.action" and e.get("request_id") == "edge-rid-2"
                  for e in app.log_events()):  # fmt: skip
        assert time.monotonic() < deadline, "no admin.action line names the request's id"
        time.sleep(0.1)
