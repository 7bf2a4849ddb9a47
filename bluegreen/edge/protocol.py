"""uvicorn's httptools protocol with bounds on the request head and on connections.

`python -m bluegreen serve` runs uvicorn with `http="bluegreen.edge.protocol:EdgeProtocol"`.
On top of the stock protocol:

- **Head size.** The request line and headers may take `BLUEGREEN_MAX_HEADER_BYTES`; a larger
  head gets 431 and the connection is closed. Raw bytes are counted while a head is incomplete,
  so a huge header is refused after about the limit (httptools joins the chunks of one header
  by concatenation: unbounded, that costs the event loop quadratic time); a complete head that
  came in a larger chunk is measured from what httptools parsed.
- **Head deadline.** A connection must complete a request head within
  `BLUEGREEN_HEADER_TIMEOUT_S` of its accept, or of the first byte of a later request on it;
  else it is closed (408 when part of a head had arrived). Idle keep-alive between requests
  stays uvicorn's keep-alive timeout.
- **Requests in flight, not connections.** uvicorn's `limit_concurrency` counts open
  connections, so idle sockets made every route answer 503. Here it caps requests in flight per
  worker, and the probe routes are exempt. Open connections have their own cap
  (`BLUEGREEN_MAX_CONNECTIONS`, kept below the open-file limit): at the cap a new connection
  evicts the least recently active one without a request in flight
  (`connections.ConnectionTable`).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from asyncio import TimerHandle
from typing import Any

import attrs
import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from bluegreen import metrics
from bluegreen.edge.connections import ConnectionTable
from bluegreen.edge.fd_limit import connection_cap, open_files_limit
from bluegreen.edge.responses import overloaded, raw_error
from bluegreen.logging import event
from bluegreen.settings import Settings

log = logging.getLogger("bluegreen.edge")

# Health, readiness and scrapes must answer while the worker sheds load: an orchestrator that
# sees them fail restarts or unlists a worker that is merely busy.
PROBE_PATHS = frozenset({b"/healthz", b"/readyz", b"/metrics"})
# After a refusal the client may still be sending; reading (and dropping) for a moment lets it
# read the response instead of a reset from closing a socket with unread input.
LINGER_S = 2.0


@attrs.frozen(kw_only=True)
class EdgeLimits:
    """The bounds of one worker's connections (from Settings, see `WorkerEdge.from_settings`)."""

    max_header_bytes: int
    header_timeout_s: float
    max_connections: int
    max_in_flight: int | None
    """Requests in flight per worker (uvicorn's `limit_concurrency`); None: no cap."""
    linger_s: float = LINGER_S


class WorkerEdge:
    """What the connections of one worker share: the limits and the connection table."""

    def __init__(self, limits: EdgeLimits) -> None:
        self.limits = limits
        self.table = ConnectionTable(limits.max_connections)

    @classmethod
    def from_settings(cls, settings: Settings, max_in_flight: int | None) -> WorkerEdge:
        fds = open_files_limit()
        cap = connection_cap(settings.edge.max_connections, fds)
        if cap < settings.edge.max_connections:
            event(log, "edge.connection_cap_lowered", logging.WARNING,
                  requested=settings.edge.max_connections, cap=cap,
                  open_files_limit=fds)  # fmt: skip
        return cls(
            EdgeLimits(
                max_header_bytes=settings.edge.max_header_bytes,
                header_timeout_s=settings.edge.header_timeout_s,
                max_connections=cap,
                max_in_flight=max_in_flight,
            )
        )


_EDGES: weakref.WeakKeyDictionary[ServerState, WorkerEdge] = weakref.WeakKeyDictionary()


def _edge_of(server_state: ServerState, config: Config) -> WorkerEdge:
    edge = _EDGES.get(server_state)
    if edge is None:
        # The CLI validated the settings before uvicorn started; this reads the same env.
        edge = WorkerEdge.from_settings(Settings.from_env(), config.limit_concurrency)
        _EDGES[server_state] = edge
    return edge


class _HeadTooLarge(Exception):
    """Raised from a parser callback: stops httptools before it parses the body."""


# Called directly, not through super(): these run once or more per request.
_on_message_begin = HttpToolsProtocol.on_message_begin
_on_headers_complete = HttpToolsProtocol.on_headers_complete
_on_message_complete = HttpToolsProtocol.on_message_complete


class EdgeProtocol(HttpToolsProtocol):
    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        edge: WorkerEdge | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.edge = edge or _edge_of(server_state, config)
        self.limits = self.edge.limits
        # Read on every request: plain attributes of this object are the cheapest lookups.
        self._table = self.edge.table
        self._max_head = self.limits.max_header_bytes
        self._max_in_flight = self.limits.max_in_flight
        # uvicorn's own check counts open connections; on_headers_complete caps requests.
        self.limit_concurrency = None
        self._awaiting_head = True  # the next bytes belong to a request head
        self._head_begun = False  # the parser has seen the first byte of that head
        self._head_raw = 0  # bytes of the chunks received while the head was awaited
        self._head_bounded = True  # ...and they hold all of the head's bytes received so far
        self._head_too_large = False
        self._head_timer: TimerHandle | None = None
        self._linger_timer: TimerHandle | None = None
        self._refused = False

    # --- connection ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if not self._table.admit(self):
            metrics.HTTP_CONNECTIONS_CLOSED.labels("refused").inc()
            transport.close()
            return
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._table.discard(self)
        self._cancel_head_timer()
        if self._linger_timer is not None:
            self._linger_timer.cancel()
            self._linger_timer = None
        super().connection_lost(exc)

    def evict(self) -> None:
        metrics.HTTP_CONNECTIONS_CLOSED.labels("evicted").inc()
        self._cancel_head_timer()
        self.transport.close()

    def handle_websocket_upgrade(self) -> None:
        # The connection leaves this protocol, and its connection_lost with it.
        self._table.discard(self)
        self._cancel_head_timer()
        super().handle_websocket_upgrade()

    # --- bytes in ----------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        self._unset_keepalive_if_required()
        if self._awaiting_head:
            if not self._head_begun:
                self._head_bounded = True
            self._head_raw += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self._head_too_large:
                self._refuse_head()
            else:
                msg = "Invalid HTTP request received."
                self.logger.warning(msg)
                self.send_400_response(msg)
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if not self._awaiting_head or self.transport.is_closing():
            return
        # Still inside a head: every byte counted since it began was a head byte (a head
        # that completed reset the count, so none counted means none of this head arrived).
        if self._head_raw > self._max_head:
            self._refuse_head()
        elif self._head_timer is None and (self._head_raw or self._head_begun):
            self._arm_head_timer()

    def on_message_begin(self) -> None:
        self._awaiting_head = True
        self._head_begun = True
        _on_message_begin(self)

    def on_headers_complete(self) -> None:
        # The head lies within the bytes counted since it was awaited; only when those are
        # over the limit (a head and its body in one chunk), or miss some of it (a head that
        # began in the chunk that ended the previous request), is the parsed head measured.
        if self._head_raw > self._max_head or not self._head_bounded:
            size = len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers)
            if size > self._max_head:
                self._head_too_large = True
                raise _HeadTooLarge
        self._awaiting_head = self._head_begun = self._head_bounded = False
        self._head_raw = 0
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        self._table.request_began(self)
        cap = self._max_in_flight
        if cap is None or len(self.tasks) < cap or self._is_probe():
            _on_headers_complete(self)
            return
        metrics.REQUESTS_SHED.labels("in_flight_cap").inc()
        self.app = overloaded  # for this request only: uvicorn takes the app from here
        try:
            super().on_headers_complete()
        finally:
            self.app = self.config.loaded_app

    def _is_probe(self) -> bool:
        return httptools.parse_url(self.url).path in PROBE_PATHS

    def on_message_complete(self) -> None:
        self._awaiting_head = True
        _on_message_complete(self)

    @property
    def busy(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    # --- refusals ----------------------------------------------------------------------------
    def _arm_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self.limits.header_timeout_s, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or self._refused:
            return
        metrics.HTTP_CONNECTIONS_CLOSED.labels("header_timeout").inc()
        if self.busy:
            # A pipelined head stalled behind a request in flight: end after that response.
            self.cycle.keep_alive = False
            return
        if self._head_raw == 0 and not self._head_begun:
            self.transport.close()  # nothing sent at all: nobody to tell
            return
        detail = f"request head not received within {self.limits.header_timeout_s:g}s"
        self._reply_and_close(408, "request_timeout", detail)

    def _refuse_head(self) -> None:
        metrics.HTTP_CONNECTIONS_CLOSED.labels("header_too_large").inc()
        detail = f"request line and headers exceed {self.limits.max_header_bytes} bytes"
        self._reply_and_close(431, "headers_too_large", detail)

    def _reply_and_close(self, status: int, error: str, detail: str) -> None:
        self._refused = True
        self._cancel_head_timer()
        if self.busy:
            # A pipelined head behind a request in flight: that response goes out whole, then
            # the connection closes; there is no place on it for a second reply.
            self.cycle.keep_alive = False
            self.flow.pause_reading()
            return
        self.transport.write(raw_error(status, error, detail, self.server_state.default_headers))
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self.transport.write_eof()
        self.flow.resume_reading()  # keep draining, see LINGER_S
        self._linger_timer = self.loop.call_later(self.limits.linger_s, self.transport.close)
