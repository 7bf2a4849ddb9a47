"""Registry calls with a deadline, on threads that a hung call cannot hold up.

A blocking MLflow call can hang for good: a DNS lookup that never answers, a server that
trickles one byte at a time past every socket timeout. The caller stops waiting at the
deadline and raises `RegistryDeadlineExceeded`; the thread is abandoned, and the pool it sat
in is replaced, so the next call gets fresh threads instead of queueing behind the stuck one
(as the load path abandons a stuck load thread). Abandoned threads are daemons and end when
their call does; past `max_abandoned` still running, calls fail at once instead of adding
threads without bound.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from bluegreen import metrics
from bluegreen.logging import event
from bluegreen.registry import RegistryDeadlineExceeded, RegistryUnavailable
from bluegreen.threads import DaemonExecutor

log = logging.getLogger("bluegreen.control")
T = TypeVar("T")


class RegistryCalls:
    def __init__(self, timeout_s: float, *, threads: int = 2, max_abandoned: int = 16) -> None:
        self.timeout_s = timeout_s
        self._threads = threads
        self._max_abandoned = max_abandoned
        self._executor = DaemonExecutor(threads, "registry")
        self._lock = threading.Lock()
        self._abandoned = 0

    @property
    def abandoned(self) -> int:
        """Calls past their deadline whose thread is still running."""
        return self._abandoned

    async def __call__(self, fn: Callable[..., T], *args: Any) -> T:
        if self._abandoned >= self._max_abandoned:
            raise RegistryUnavailable(
                f"{self._abandoned} registry calls are still stuck past their deadline"
            )
        state = {"abandoned": False}

        def run() -> T:
            try:
                return fn(*args)
            finally:
                with self._lock:
                    if state["abandoned"]:
                        self._abandoned -= 1

        future = self._executor.submit(run)
        try:
            async with asyncio.timeout(self.timeout_s):
                return await asyncio.wrap_future(future)
        except TimeoutError:
            with self._lock:
                # Done in the same instant, or still queued (cancelled: it never runs): nothing
                # is stuck. Otherwise its thread is abandoned.
                if not (future.done() or future.cancel()):
                    state["abandoned"] = True
                    self._abandoned += 1
                    self._replace_pool()
            name = getattr(fn, "__name__", "call")
            metrics.REGISTRY_DEADLINES.labels(name).inc()
            event(log, "registry.deadline", logging.WARNING, call=name,
                  timeout_s=self.timeout_s, abandoned=self._abandoned)  # fmt: skip
            raise RegistryDeadlineExceeded(
                f"registry call {name} exceeded its {self.timeout_s:g}s deadline"
            ) from None

    def _replace_pool(self) -> None:
        old, self._executor = self._executor, DaemonExecutor(self._threads, "registry")
        # The old pool's other threads finish what was queued there, then exit.
        old.shutdown(wait=False)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
