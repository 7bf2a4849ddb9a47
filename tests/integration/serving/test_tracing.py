"""Tracing end to end: the real server exports over OTLP/HTTP, configured only by the standard
`OTEL_*` variables, to a real OTLP receiver; request and swap spans arrive, linked."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from tests.integration.conftest import AppFactory
from tests.support.models import TestRegistry
from tests.support.otlp import OtlpReceiver, ReceivedSpan
from tests.support.servers import free_port

pytestmark = pytest.mark.integration
ADMIN = {"Authorization": "Bearer test-token"}
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN_ID = "00f067aa0ba902b7"
SERVICE = "bluegreen-under-test"


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    server = OtlpReceiver()
    server.start()
    yield server
    server.stop()


def tracing_env(receiver: OtlpReceiver, schedule_delay_ms: int) -> dict[str, str]:
    return {
        "BLUEGREEN_TRACING": "true",
        "BLUEGREEN_ADMIN_TOKEN": "test-token",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_SERVICE_NAME": SERVICE,
        "OTEL_BSP_SCHEDULE_DELAY": str(schedule_delay_ms),
    }


def child_of(child: ReceivedSpan, parent: ReceivedSpan) -> bool:
    return child.trace_id == parent.trace_id and child.parent_span_id == parent.span_id


def test_request_refusal_and_swap_spans_reach_an_otlp_receiver(
    registry: TestRegistry, start_app: AppFactory, receiver: OtlpReceiver
) -> None:
    v1 = registry.register()
    app = start_app(env=tracing_env(receiver, 100))
    # Refused by the router before any handler: still one server span, with its status.
    refusals = [("GET", "/v2/no-such-route", 404), ("DELETE", "/v2", 405)]
    traceparent = f"00-{TRACE_ID}-{PARENT_SPAN_ID}-01"
    for method, path, status in refusals:
        headers = {"traceparent": traceparent, "X-Request-ID": f"no-{status}"}
        refused = httpx.request(method, f"{app.url}{path}", headers=headers, timeout=10)
        assert refused.status_code == status
    receiver.wait_for(lambda r: len(r.named("GET")) + len(r.named("DELETE")) == len(refusals))
    for method, path, status in refusals:
        (span,) = receiver.named(method)
        assert span.kind == "SERVER"
        assert (span.trace_id, span.parent_span_id) == (TRACE_ID, PARENT_SPAN_ID)
        assert span.attributes["http.response.status_code"] == status
        assert span.attributes["url.path"] == path
        assert span.attributes["bluegreen.request_id"] == f"no-{status}"
        assert "http.route" not in span.attributes
        assert span.status != "ERROR"

    response = httpx.post(
        f"{app.url}/predict",
        json={"text": "정말 최고의 영화"},
        headers={"traceparent": f"00-{TRACE_ID}-{PARENT_SPAN_ID}-01"},
        timeout=10,
    )
    assert response.status_code == 200

    receiver.wait_for(lambda r: any(s.trace_id == TRACE_ID for s in r.named("slot")))
    (server,) = [s for s in receiver.named("POST /predict") if s.trace_id == TRACE_ID]
    assert server.kind == "SERVER"
    assert server.parent_span_id == PARENT_SPAN_ID
    assert server.service_name == SERVICE
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["http.route"] == "/predict"
    assert server.attributes["bluegreen.request_id"] == response.headers["X-Request-ID"]
    (predict,) = [s for s in receiver.named("predict") if child_of(s, server)]
    (slot,) = [s for s in receiver.named("slot") if child_of(s, predict)]
    for span in (predict, slot):
        assert span.attributes["bluegreen.model.version"] == v1
        assert span.attributes["bluegreen.slot"] == response.json()["model_slot"]

    v2 = registry.register()
    reload = httpx.post(f"{app.url}/admin/reload", headers=ADMIN, timeout=60)
    assert reload.status_code == 200, reload.text
    assert reload.json()["version"] == v2
    receiver.wait_for(lambda r: any(s.attributes.get("bluegreen.model.version") == v1
                                    for s in r.named("free")))  # fmt: skip

    (deploy,) = [
        s for s in receiver.named("deploy") if s.attributes["bluegreen.model.version"] == v2
    ]
    assert deploy.attributes["bluegreen.outcome"] == "promoted"
    steps = {}
    for name in ("load", "smoke", "promote"):
        (steps[name],) = [s for s in receiver.named(name) if child_of(s, deploy)]
        assert steps[name].attributes["bluegreen.model.version"] == v2
    for name in ("drain", "free"):
        (steps[name],) = [s for s in receiver.named(name) if child_of(s, steps["promote"])]
        assert steps[name].attributes["bluegreen.model.version"] == v1
        assert steps[name].attributes["bluegreen.slot"] == response.json()["model_slot"]
    assert all(s.status != "ERROR" for s in (deploy, *steps.values()))


def test_spans_still_buffered_at_shutdown_are_exported(
    registry: TestRegistry, start_app: AppFactory, receiver: OtlpReceiver
) -> None:
    registry.register()
    # An export interval far beyond the test: only the flush at stop can deliver these.
    app = start_app(env=tracing_env(receiver, 600_000))
    assert httpx.post(f"{app.url}/predict", json={"text": "최고"}, timeout=10).status_code == 200
    assert receiver.named("POST /predict") == []

    assert app.stop() == 0

    assert len(receiver.named("POST /predict")) == 1
    assert receiver.named("deploy")  # the first version's load, from start-up


def test_a_collector_that_is_down_costs_requests_nothing(
    registry: TestRegistry, start_app: AppFactory
) -> None:
    registry.register()
    nobody = f"http://127.0.0.1:{free_port()}"  # nothing listens: every export is refused
    env = {"BLUEGREEN_TRACING": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": nobody,
           "OTEL_BSP_SCHEDULE_DELAY": "50", "OTEL_EXPORTER_OTLP_TIMEOUT": "2"}  # fmt: skip
    app = start_app(env=env)
    for _ in range(50):
        response = httpx.post(f"{app.url}/predict", json={"text": "최고"}, timeout=10)
        assert response.status_code == 200

    started = time.monotonic()
    assert app.stop() == 0
    # the flush at stop gives up within the exporter's timeout, well inside a deploy's grace
    assert time.monotonic() - started < 15
