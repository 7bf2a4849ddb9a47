"""Request IDs: every request has one, every response and log line names it.

The id is the client's `X-Request-ID` when it is a safe token (1..`MAX_LENGTH` printable ASCII
characters without spaces, quotes or backslashes), else one made here. An unsafe id is replaced,
not refused, as proxies do: the request itself is fine, and the id it gets back says which one
the logs know it by. A client-sent id is also the canary's stickiness key (`client_request_id`);
a made one is not, so a client that sends none is assigned per request, as before.

`RequestIdMiddleware` wraps the whole app, outside Litestar's router (see `bluegreen.app`), so
the router's own 404 and 405 answers carry the header too. The id lives in a contextvar for the
request's task: `bluegreen.logging` adds it to every line logged while the request is handled,
and error bodies include it.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Awaitable, Iterable
from contextvars import ContextVar

from litestar.datastructures import ResponseHeader
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

HEADER = b"x-request-id"
TIMING = b"server-timing"
MAX_LENGTH = 128
OPENAPI_HEADER = ResponseHeader(
    name="X-Request-ID",
    description=f"The client's X-Request-ID when safe (1..{MAX_LENGTH} printable ASCII "
    "characters without spaces, quotes or backslashes), else one the server made",
    required=True,
    documentation_only=True,  # the middleware sets it, on every response
    value="0f8fad5bd9cb469fa16570867728950e",  # documents its type: a string
)
TIMING_OPENAPI_HEADER = ResponseHeader(
    name="Server-Timing",
    description="app;dur=<ms>: the time from the app receiving the request to its response "
    "starting (W3C Server Timing), without any queueing on the way to the app",
    required=True,
    documentation_only=True,  # the middleware sets it, on every response
    value="app;dur=0.412",
)
# 0x21..0x7E less `"`, `'` and `\`: nothing a log reader or a header could take for structure.
_SAFE = re.compile(rb"[!#-&(-\[\]-~]{1,%d}" % MAX_LENGTH)


RequestId = tuple[str, bool]
"""(the id, whether the client sent it); a plain tuple: built on every request, and a
NamedTuple costs several times as much to make."""

_CURRENT: ContextVar[RequestId | None] = ContextVar("bluegreen_request_id", default=None)


def new_request_id() -> str:
    # Not a secret, only unique: the `random` module draws without a system call, and it is
    # reseeded in a forked child, so workers do not repeat each other's ids.
    return random.randbytes(16).hex()


def from_headers(headers: Iterable[tuple[bytes, bytes]]) -> RequestId:
    """The client's id when it sent a safe one (the first, if several), else a new one."""
    for name, value in headers:
        if name == HEADER:
            if _SAFE.fullmatch(value):
                return value.decode("ascii"), True
            break
    return new_request_id(), False


def current_request_id() -> str | None:
    """The id of the request being handled in this context; None outside a request."""
    rid = _CURRENT.get()
    return None if rid is None else rid[0]


def client_request_id() -> str | None:
    """The id the client sent, if it sent a safe one; None when the id was made here."""
    rid = _CURRENT.get()
    return rid[0] if rid is not None and rid[1] else None


class RequestIdMiddleware:
    """Pure ASGI: sets the request's id for its task and echoes it on the response, with a
    `Server-Timing: app;dur=<ms>` header: the time from the app receiving the request to its
    response starting. Set here, in the one wrapper every response already passes, rather
    than in a second one: a client (or a load test) can then tell time spent in the app from
    time spent queueing on the way to it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        rid = from_headers(scope["headers"])
        echo = (HEADER, rid[0].encode("ascii"))

        # Not a coroutine function: handing back send's own awaitable saves a coroutine per
        # message.
        def send_with_id(message: Message) -> Awaitable[None]:
            if message["type"] == "http.response.start":
                took = b"app;dur=%.3f" % ((time.perf_counter() - started) * 1000)
                message["headers"] = [*message.get("headers", ()), echo, (TIMING, took)]
            return send(message)

        token = _CURRENT.set(rid)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _CURRENT.reset(token)
