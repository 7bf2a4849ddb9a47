"""Request IDs through the real app: taken from the client or made, echoed on every response
(success, the app's errors, the router's 404/405), named in error bodies and log lines."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from bluegreen.api.request_id import (
    MAX_LENGTH,
    RequestIdMiddleware,
    client_request_id,
    current_request_id,
)
from bluegreen.logging import JsonFormatter
from tests.fakes import FakeLoader, FakeRegistry, SwitchableModel
from tests.unit.api.conftest import ClientFactory

MADE = re.compile(r"[0-9a-f]{32}")


class Lines(logging.Handler):
    """The JSON lines the app's formatter writes, parsed."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.events: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.events.append(json.loads(self.format(record)))

    def named(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == name]


@pytest.fixture
def lines() -> Iterator[Lines]:
    handler = Lines()
    # on the package's logger: configure_logging may replace the root's handlers
    logger = logging.getLogger("bluegreen")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def test_a_request_without_an_id_gets_a_new_one(client: TestClient[Any]) -> None:
    first = client.post("/predict", json={"text": "최고"})
    second = client.post("/predict", json={"text": "최고"})
    assert first.status_code == second.status_code == 200
    assert MADE.fullmatch(first.headers["x-request-id"])
    assert MADE.fullmatch(second.headers["x-request-id"])
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


@pytest.mark.parametrize(
    "sent",
    ["user-7", "0f8fad5b-d9cb-469f-a165-70867728950e", "Root=1-ab;Parent=c", "x" * MAX_LENGTH],
)
def test_a_safe_client_id_is_echoed(client: TestClient[Any], sent: str) -> None:
    response = client.post("/predict", json={"text": "최고"}, headers={"X-Request-ID": sent})
    assert response.status_code == 200
    assert response.headers["x-request-id"] == sent


@pytest.mark.parametrize(
    "sent",
    [b"", b"x" * (MAX_LENGTH + 1), b"two words", b'a"b', b"a'b", b"a\\b", "id-é".encode()],
    ids=["empty", "too-long", "space", "double-quote", "quote", "backslash", "non-ascii"],
)
def test_an_unsafe_client_id_is_replaced_by_a_new_one(client: TestClient[Any], sent: bytes) -> None:
    response = client.post("/predict", json={"text": "최고"}, headers=[(b"X-Request-ID", sent)])
    assert response.status_code == 200
    assert MADE.fullmatch(response.headers["x-request-id"])


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("POST", "/predict", {"json": {"text": ""}}, 400),
        ("POST", "/predict", {"content": b"{", "headers": {"Content-Type": "application/json"}},
         400),
        ("GET", "/no-such-route", {}, 404),
        ("GET", "/predict", {}, 405),
        ("POST", "/predict", {"json": {"text": "x" * 5000}}, 413),
        ("POST", "/predict", {"content": b"hi", "headers": {"Content-Type": "text/plain"}}, 415),
    ],
    ids=["400-invalid", "400-json", "404-router", "405-router", "413", "415"],
)  # fmt: skip
def test_errors_name_the_id_in_the_header_and_the_body(
    client: TestClient[Any], method: str, path: str, kwargs: dict[str, Any], status: int
) -> None:
    headers = {**kwargs.get("headers", {}), "X-Request-ID": f"err-{status}"}
    rest = {k: v for k, v in kwargs.items() if k != "headers"}
    response = client.request(method, path, headers=headers, **rest)
    assert response.status_code == status
    assert response.headers["x-request-id"] == f"err-{status}"
    assert response.json()["request_id"] == f"err-{status}"


def test_a_made_id_is_the_one_in_the_error_body(client: TestClient[Any]) -> None:
    response = client.get("/no-such-route")
    assert response.status_code == 404
    assert MADE.fullmatch(response.json()["request_id"])
    assert response.json()["request_id"] == response.headers["x-request-id"]


def test_probes_and_503_carry_the_id(api: ClientFactory, registry: FakeRegistry) -> None:
    registry.versions.clear()
    registry.alias = None
    with api(ready=False) as client:
        assert (
            client.get("/healthz", headers={"X-Request-ID": "probe-1"}).headers["x-request-id"]
            == "probe-1"
        )
        response = client.post("/predict", json={"text": "최고"}, headers={"X-Request-ID": "n-1"})
        assert response.status_code == 503
        assert response.headers["x-request-id"] == "n-1"
        assert response.json()["request_id"] == "n-1"


def test_the_request_log_line_names_the_id_version_and_slot(
    api: ClientFactory, lines: Lines
) -> None:
    with api(request_log_sample=1.0) as client:
        client.post("/predict", json={"text": "최고"}, headers={"X-Request-ID": "log-1"})
        client.post("/predict/batch", json={"texts": ["최고", "별로"]})
    single, batch = lines.named("request")
    assert single["request_id"] == "log-1"
    assert (single["version"], single["slot"]) == (1, "blue")
    assert MADE.fullmatch(batch["request_id"])
    # lines logged outside any request (start-up, the poller) name none
    assert "request_id" not in lines.named("app.started")[0]


@pytest.mark.parametrize("texts", [["최고"], ["최고", "별로"]], ids=["inline", "executor"])
def test_a_model_failure_names_the_id_in_the_body_and_the_error_log(
    api: ClientFactory, loader: FakeLoader, lines: Lines, texts: list[str]
) -> None:
    model = SwitchableModel()
    loader.factories[1] = lambda: model
    with api() as client:
        model.failing = True
        response = client.post(
            "/predict/batch", json={"texts": texts}, headers={"X-Request-ID": "boom-1"}
        )
    assert response.status_code == 500
    assert response.json()["request_id"] == "boom-1"
    assert response.headers["x-request-id"] == "boom-1"
    [failed] = lines.named("predict.failed")
    assert failed["request_id"] == "boom-1"


async def _seen(scope: Any, receive: Any, send: Any) -> None:
    """A small ASGI app answering with the ids it sees in its context."""
    await asyncio.sleep(0.01)  # interleave with the other requests in flight
    body = json.dumps([current_request_id(), client_request_id()]).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


async def _call(app: Any, headers: list[tuple[bytes, bytes]]) -> tuple[dict[bytes, bytes], Any]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": "http", "headers": headers}, receive, send)
    return dict(sent[0]["headers"]), json.loads(sent[1]["body"])


async def test_only_a_client_sent_id_is_a_client_key_and_each_request_sees_its_own() -> None:
    app = RequestIdMiddleware(_seen)
    (h1, seen1), (h2, seen2), (h3, seen3) = await asyncio.gather(
        _call(app, [(b"x-request-id", b"alice")]),
        _call(app, []),
        _call(app, [(b"x-request-id", b"bad id")]),
    )
    assert seen1 == ["alice", "alice"]
    assert h1[b"x-request-id"] == b"alice"
    # made here: the request has an id, but it is no canary key
    assert seen2[1] is None
    assert MADE.fullmatch(seen2[0])
    assert h2[b"x-request-id"] == seen2[0].encode()
    assert seen3[1] is None
    assert MADE.fullmatch(seen3[0])
    assert h3[b"x-request-id"] == seen3[0].encode()
    assert current_request_id() is None  # reset after each request


def test_the_schema_documents_the_header_and_the_error_field(client: TestClient[Any]) -> None:
    schema = client.get("/schema/openapi.json").json()
    predict = schema["paths"]["/predict"]["post"]["responses"]
    assert predict["200"]["headers"]["X-Request-ID"]["required"] is True
    assert "request_id" in schema["components"]["schemas"]["ErrorBody"]["properties"]


def test_every_response_says_how_long_the_app_took(client: TestClient[Any]) -> None:
    for response in (
        client.post("/predict", json={"text": "최고"}),
        client.post("/predict", json={"text": 3}),  # the app's own 4xx
        client.get("/no-such-route"),  # the router's 404
    ):
        timing = re.fullmatch(r"app;dur=(\d+\.\d{3})", response.headers["server-timing"])
        assert timing is not None, response.headers["server-timing"]
        assert 0 < float(timing.group(1)) < 10_000
