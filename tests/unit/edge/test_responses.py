"""The edge's own replies: the in-flight-cap 503 names the request's id like the app does."""

from __future__ import annotations

import json
import re
from typing import Any

from bluegreen.edge.responses import overloaded


async def _shed(headers: list[tuple[bytes, bytes]]) -> tuple[dict[bytes, bytes], dict[str, Any]]:
    sent: list[Any] = []

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    await overloaded({"type": "http", "headers": headers}, receive, send)
    start, body = sent
    assert start["status"] == 503
    response_headers = dict(start["headers"])
    assert int(response_headers[b"content-length"]) == len(body["body"])
    return response_headers, json.loads(body["body"])


async def test_the_in_flight_cap_503_echoes_the_client_id() -> None:
    headers, body = await _shed([(b"host", b"x"), (b"x-request-id", b"shed-1")])
    assert headers[b"x-request-id"] == b"shed-1"
    assert body == {"status_code": 503, "error": "overloaded",
                    "detail": "too many requests in flight on this worker; retry",
                    "request_id": "shed-1"}  # fmt: skip
    assert headers[b"retry-after"] == b"5"


async def test_the_in_flight_cap_503_makes_an_id_when_none_is_safe() -> None:
    for sent in ([], [(b"x-request-id", b"a b")]):
        headers, body = await _shed(sent)
        assert re.fullmatch(rb"[0-9a-f]{32}", headers[b"x-request-id"])
        assert body["request_id"] == headers[b"x-request-id"].decode()
