"""Responses the edge writes itself, in the app's error shape (`ErrorBody`):
`{"status_code": ..., "error": ..., "detail": ...}`, always with `Connection: close`."""

from __future__ import annotations

import json

from uvicorn._types import ASGIReceiveCallable, ASGISendCallable, Scope
from uvicorn.protocols.http.httptools_impl import STATUS_LINE

from bluegreen.api.errors import RETRY_AFTER_S


def _body(status: int, error: str, detail: str) -> bytes:
    return json.dumps({"status_code": status, "error": error, "detail": detail}).encode()


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


_OVERLOADED = _body(503, "overloaded", "too many requests in flight on this worker; retry")


async def overloaded(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
    """The ASGI app a request gets when the worker is at its in-flight cap (uvicorn's own
    `service_unavailable` is plain text without Retry-After)."""
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(_OVERLOADED)).encode("ascii")),
                (b"retry-after", RETRY_AFTER_S.encode("ascii")),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": _OVERLOADED, "more_body": False})
