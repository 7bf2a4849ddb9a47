"""Stopping without refusing a request: SIGTERM takes the worker out of rotation before it stops.

On SIGTERM uvicorn closes its listening socket at once. A load balancer that finds its
backends by health checks (HAProxy, a cloud balancer; not Kubernetes, which drops a stopping
pod from its endpoints by itself) still sends requests there until its checks fail, and those
are refused or reset. With `BLUEGREEN_SHUTDOWN_DELAY_S` above 0, a SIGTERM first only marks the
worker as stopping:

- `/readyz` answers 503 (`shutting down`), so the balancer's checks take it out;
- every response carries `Connection: close`, so a keep-alive client opens its next
  connection through the balancer, to another backend, instead of finding this one closed
  under a request it is sending;
- requests are still served.

When the delay is over, uvicorn's own handler runs as if the signal had just come: the
listener closes and in-flight requests drain (`BLUEGREEN_DRAIN_TIMEOUT_S`). A second SIGTERM,
or SIGINT (Ctrl-C, which is never delayed), stops at once.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from bluegreen.logging import event

log = logging.getLogger("bluegreen.edge")

Handler = Callable[[int, FrameType | None], Any]


class Stopping:
    """Whether this worker is on its way out; read by `/readyz` and by `CloseWhileStopping`."""

    def __init__(self) -> None:
        self.since: float | None = None
        """`time.monotonic()` of the SIGTERM, None while the worker is not stopping."""

    @property
    def active(self) -> bool:
        return self.since is not None


class ShutdownDelay:
    """Installs a SIGTERM handler that marks `stopping`, then hands the signal on after
    `delay_s` to the handler it replaced (uvicorn's, which starts the graceful shutdown)."""

    def __init__(self, delay_s: float, stopping: Stopping) -> None:
        self.delay_s = delay_s
        self.stopping = stopping
        self._previous: Handler | int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None

    def install(self) -> bool:
        """In the app's start-up, inside uvicorn's own signal capture. Only the main thread
        can set signal handlers: elsewhere (an in-process test client) nothing is installed,
        and with no delay there is nothing to install."""
        if self.delay_s <= 0 or threading.current_thread() is not threading.main_thread():
            return False
        self._loop = asyncio.get_running_loop()
        self._previous = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, self._on_sigterm)
        return True

    def uninstall(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._previous is not None and signal.getsignal(signal.SIGTERM) == self._on_sigterm:
            signal.signal(signal.SIGTERM, self._previous)

    def _on_sigterm(self, sig: int, frame: FrameType | None) -> None:
        # A signal handler runs between two bytecodes of the main thread, which is the loop's:
        # no logging here (it may be inside a log call), only a flag and a callback.
        if self.stopping.active:
            self._forward(sig)  # a second SIGTERM: the operator means now
            return
        self.stopping.since = time.monotonic()
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._delay, sig)

    def _delay(self, sig: int) -> None:
        event(log, "shutdown.delayed", delay_s=self.delay_s)
        assert self._loop is not None
        self._timer = self._loop.call_later(self.delay_s, self._forward, sig)

    def _forward(self, sig: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        previous = self._previous
        if callable(previous):
            event(log, "shutdown.started", waited_s=round(self._waited(), 3))
            previous(sig, None)
            return
        # Not under uvicorn (the default or an ignored disposition): restore it and resend.
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
        signal.raise_signal(sig)

    def _waited(self) -> float:
        since = self.stopping.since
        return time.monotonic() - since if since is not None else 0.0


class CloseWhileStopping:
    """ASGI middleware: while the worker is stopping, every response says `Connection: close`
    (uvicorn then closes the connection once the response is sent). Costs one attribute
    read per request otherwise."""

    def __init__(self, app: ASGIApp, stopping: Stopping) -> None:
        self.app = app
        self.stopping = stopping

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or not self.stopping.active:
            await self.app(scope, receive, send)
            return

        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v) for k, v in message.get("headers", ()) if k.lower() != b"connection"
                ]
                headers.append((b"connection", b"close"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_closing)
