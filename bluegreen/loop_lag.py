"""Event-loop lag: how late the loop wakes for a timer is how long no request could be served.

Sampled coarsely all the time (a histogram for dashboards) and finely while a swap window is
open, so the longest stall a swap causes is measured, not guessed.
"""

from __future__ import annotations

import asyncio
import logging
import time

from bluegreen import metrics
from bluegreen.logging import event

log = logging.getLogger("bluegreen.loop")

IDLE_INTERVAL_S = 0.1
FINE_INTERVAL_S = 0.002
STALL_S = 0.005
"""A stall this long during a swap is logged (DEBUG), to find what caused it."""


class LoopLagProbe:
    def __init__(
        self, idle_interval_s: float = IDLE_INTERVAL_S, fine_interval_s: float = FINE_INTERVAL_S
    ) -> None:
        self._idle = idle_interval_s
        self._fine = fine_interval_s
        self._windows = 0
        self._max: float | None = None
        self._wake = asyncio.Event()

    def open_window(self) -> None:
        if self._windows == 0:
            self._max = 0.0
        self._windows += 1
        self._wake.set()  # switch to fine sampling now, not after an idle interval

    def close_window(self) -> float | None:
        if self._windows == 0:
            return None
        self._windows -= 1
        return self._max

    async def run(self) -> None:
        # perf_counter, not loop.time(): uvloop's clock has millisecond steps
        while True:
            interval = self._fine if self._windows else self._idle
            started = time.perf_counter()
            self._wake.clear()
            try:
                async with asyncio.timeout(interval):
                    await self._wake.wait()
                continue  # woken early: restart at the fine interval
            except TimeoutError:
                pass
            lag = max(0.0, time.perf_counter() - started - interval)
            metrics.EVENT_LOOP_LAG.observe(lag)
            if self._windows and self._max is not None:
                self._max = max(self._max, lag)
                if lag >= STALL_S:
                    event(log, "loop.stall", logging.DEBUG, lag_ms=round(lag * 1000, 2))
