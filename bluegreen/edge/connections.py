"""The open connections of one worker, and which of them can be let go when it is full."""

from __future__ import annotations

from collections import OrderedDict
from typing import Protocol


class Evictable(Protocol):
    @property
    def busy(self) -> bool:
        """A request is in flight on this connection."""

    def evict(self) -> None:
        """Close now: the worker is at its connection cap and this one is the least recently
        active without a request in flight."""


class ConnectionTable:
    """Counts open connections against a cap. At the cap, a new connection evicts the one that
    began its last request (or was accepted) the longest ago among those with no request in
    flight, as HAProxy and nginx let idle connections go: a flood of idle sockets costs other
    idle sockets their place, never a request in flight or a new client.

    The order is kept by request starts only (one `move_to_end` per request), not by request
    ends, so that the request path pays one dict operation; a connection found busy while
    looking for a victim moves to the end, so each eviction skips it at most once."""

    def __init__(self, cap: int) -> None:
        if cap < 1:
            raise ValueError(f"connection cap must be >= 1, got {cap}")
        self.cap = cap
        self._open: OrderedDict[Evictable, None] = OrderedDict()  # least recently active first

    def __len__(self) -> int:
        return len(self._open)

    def admit(self, conn: Evictable) -> bool:
        """A new connection. False: every open connection has a request in flight, and `conn`
        must be closed."""
        if len(self._open) >= self.cap:
            victim = self._victim()
            if victim is None:
                return False
            # Forgotten now, not at its connection_lost: a burst of accepts in one loop
            # iteration would otherwise evict one victim per accept twice over.
            del self._open[victim]
            victim.evict()
        self._open[conn] = None
        return True

    def _victim(self) -> Evictable | None:
        for _ in range(len(self._open)):
            oldest = next(iter(self._open))
            if not oldest.busy:
                return oldest
            self._open.move_to_end(oldest)
        return None

    def request_began(self, conn: Evictable) -> None:
        """`conn` is the most recently active connection now."""
        if conn in self._open:
            self._open.move_to_end(conn)

    def discard(self, conn: Evictable) -> None:
        """`conn` is closed (idempotent)."""
        self._open.pop(conn, None)
