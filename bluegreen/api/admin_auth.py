"""Who may call /admin/*: the bearer-token guard, the per-peer throttle of failed attempts, and
the actor a caller names for the audit log.

The token is compared in constant time; a peer that fails too often within a window gets 429
(before its token is looked at) until the window has passed, so guessing is slow and every
failure leaves one log line, not an unbounded flood.
"""

from __future__ import annotations

import collections
import hmac
import logging
import re
import time
from typing import Any

import attrs
from cachetools import LRUCache
from litestar.connection import ASGIConnection
from litestar.exceptions import (
    HTTPException,
    NotAuthorizedException,
    PermissionDeniedException,
    ValidationException,
)
from litestar.handlers.base import BaseRouteHandler

from bluegreen import metrics
from bluegreen.logging import event

log = logging.getLogger("bluegreen.admin")
ACTOR_HEADER = "x-admin-actor"
ACTOR_RE = re.compile(r"[A-Za-z0-9._@+-]{1,64}")
"""What an operator may call itself: an account or e-mail name, no spaces or controls."""
MAX_TRACKED_PEERS = 10_000


class TooManyAuthFailures(HTTPException):
    status_code = 429


@attrs.define
class FailureThrottle:
    """Sliding window of failed attempts per peer. Memory is bounded: at most
    `MAX_TRACKED_PEERS` peers (least recently failing dropped first), `max_failures` stamps each."""

    max_failures: int
    window_s: float
    _failures: LRUCache[str, collections.deque[float]] = attrs.field(
        init=False, factory=lambda: LRUCache(maxsize=MAX_TRACKED_PEERS)
    )

    def retry_after(self, peer: str, now: float) -> float | None:
        """Seconds until `peer` may try again, or None when it may now."""
        stamps = self._failures.get(peer)
        if stamps is None or len(stamps) < self.max_failures:
            return None
        wait = stamps[0] + self.window_s - now
        return wait if wait > 0 else None

    def record(self, peer: str, now: float) -> int:
        """Count one failure; returns the failures of `peer` within the window."""
        stamps = self._failures.get(peer)
        if stamps is None:
            stamps = collections.deque(maxlen=self.max_failures)
            self._failures[peer] = stamps
        while stamps and stamps[0] <= now - self.window_s:
            stamps.popleft()
        stamps.append(now)
        return len(stamps)


def peer_of(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """The address the connection came from (a trusted proxy's forwarded one, see
    BLUEGREEN_TRUSTED_PROXIES); never a header a client wrote itself."""
    return connection.client.host if connection.client else "unknown"


def actor_of(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """The operator named in X-Admin-Actor, validated so that it cannot forge log structure."""
    actor = connection.headers.get(ACTOR_HEADER)
    if actor is None:
        return "admin"
    if not ACTOR_RE.fullmatch(actor):
        raise ValidationException(
            "X-Admin-Actor must be 1-64 characters of A-Z a-z 0-9 . _ @ + -",
            extra=[{"message": "invalid X-Admin-Actor", "key": ACTOR_HEADER}],
        )
    return actor


def require_admin(connection: ASGIConnection[Any, Any, Any, Any], __: BaseRouteHandler) -> None:
    state = connection.app.state
    token: str | None = state.runtime.settings.admin.token
    if not token:
        raise PermissionDeniedException("admin API disabled: BLUEGREEN_ADMIN_TOKEN is not set")
    throttle: FailureThrottle = state.admin_throttle
    peer = peer_of(connection)
    now = time.monotonic()
    wait = throttle.retry_after(peer, now)
    if wait is not None:
        metrics.ADMIN_AUTH_FAILURES.labels("throttled").inc()
        raise TooManyAuthFailures(
            detail="too many failed admin logins from this address",
            headers={"Retry-After": str(max(1, round(wait)))},
        )
    header = connection.headers.get("authorization", "")
    scheme, _, presented = header.partition(" ")
    # compare_digest on bytes: constant time whatever the presented value is.
    if scheme.lower() == "bearer" and hmac.compare_digest(
        presented.strip().encode("utf-8", "surrogatepass"), token.encode("utf-8")
    ):
        actor_of(connection)  # a bad actor name is refused before the action, not after
        return
    reason = "missing" if not header else "invalid"
    failures = throttle.record(peer, now)
    metrics.ADMIN_AUTH_FAILURES.labels(reason).inc()
    event(log, "admin.auth_failed", logging.WARNING, peer=peer, reason=reason,
          path=connection.scope.get("path"), failures_in_window=failures,
          throttled=failures >= throttle.max_failures)  # fmt: skip
    raise NotAuthorizedException(
        "missing or invalid bearer token", headers={"WWW-Authenticate": "Bearer"}
    )
