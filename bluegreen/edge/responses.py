"""Responses the edge writes itself, in the app's error shape (`ErrorBody`):
`{"status_code": ..., "error": ..., "detail": ...}`, always with `Connection: close`.

Only the in-flight-cap 503 names a request id: a 431 or 408 answers a head that was too large
or late, and nothing read from such a head is trusted."""

from __future__ import annotations

import json
from typing import cast

from uvicorn._types import ASGIReceiveCallable, ASGISendCallable, HTTPScope, Scope
from uvicorn.protocols.http.httptools_impl import STATUS_LINE

from bluegreen.api.errors import RETRY_AFTER_S
from bluegreen.api.request_id import HEADER as REQUEST_ID_HEADER
from bluegreen.api.request_id import from_headers


def _body(status: int, error: str, detail: str, request_id: str | None = None) -> bytes:
    body = {"status_code": status, "error": error, "detail": detail}
    if request_id is not None:
        body["request_id"] = request_id
    return json.dumps(body).encode()


def raw_error(
    status: int, error: str, detail: str, default_headers: list[tuple[bytes, bytes]]
) -> bytes:
    """A whole HTTP/1.1 response, for a connection the app never saw a request on."""
    body = _body(status, error, detail)
    content = [STATUS_LINE[status]]
    for name, value in default_headers:
        content += [name, b": ", value, b"\r\n"]
    content += [
        b"content-type: application/json\r\n",
        b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
        b"connection: close\r\n\r\n",
        body,
    ]
    return b"".join(content)


_OVERLOADED = "too many requests in flight on this worker; retry"


async def overloaded(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
    """The ASGI app a request gets when the worker is at its in-flight cap (uvicorn's own
    `service_unavailable` is plain text without Retry-After). The app never sees the request,
    so the request's id is taken (or made) here."""
    request_id = from_headers(cast("HTTPScope", scope)["headers"])[0]
    body = _body(503, "overloaded", _OVERLOADED, request_id)
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode("ascii")),
                (b"retry-after", RETRY_AFTER_S.encode("ascii")),
                (REQUEST_ID_HEADER, request_id.encode("ascii")),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})
