"""What the sync and async transports share: defaults, the request they build from a `Call`,
and how a failed connection is reported."""

from __future__ import annotations

from typing import Any

import httpx

from bluegreen.client.calls import Call, Endpoint
from bluegreen.client.errors import Unreachable

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT_S = 30.0
DEFAULT_DEPLOY_TIMEOUT_S = 600.0
"""Promote, rollback, reload and reject wait for a version to load and pass its smoke test,
which the server bounds by BLUEGREEN_LOAD_TIMEOUT_S (300 s by default) plus the smoke."""


def request_options(
    endpoint: Endpoint, call: Call[Any], request_id: str | None, deploy_timeout: float
) -> dict[str, Any]:
    """Keyword arguments of `httpx.Client.build_request` for `call` (path relative to the
    client's base URL)."""
    options: dict[str, Any] = {
        "method": call.method,
        "url": call.path,
        "headers": endpoint.headers(call, request_id),
        "content": call.body,
    }
    if call.slow:
        options["timeout"] = httpx.Timeout(deploy_timeout, connect=DEFAULT_TIMEOUT_S)
    return options


def unreachable(base_url: httpx.URL, call: Call[Any], exc: httpx.TransportError) -> Unreachable:
    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "failed"
    return Unreachable(
        f"{call.method} {base_url.join(call.path)} {kind}: {exc or type(exc).__name__}"
    )
