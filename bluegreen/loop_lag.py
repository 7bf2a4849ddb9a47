"""Event-loop lag: how late the loop wakes for a timer is how long no request could be served.

Sampled coarsely all the time (a histogram for dashboards) and finely while a swap window is
open, so the longest stall a swap causes is measured, not guessed.

Timer lateness has two causes. Either something in this process held the loop (a blocking
call, or another thread holding the GIL), or the loop thread was ready to run and waited for a
CPU that other processes had. Inside a window each sample is split by the loop thread's own
run-queue wait (``/proc/thread-self/schedstat``, Linux): what remains is the process's own
stall, the part a swap can cause; the rest is the host's CPU queueing, which steady state has
too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time

import attrs

from bluegreen import metrics
from bluegreen.logging import event

log = logging.getLogger("bluegreen.loop")

IDLE_INTERVAL_S = 0.1
FINE_INTERVAL_S = 0.002
STALL_S = 0.005
"""A stall this long during a swap is logged (DEBUG), to find what caused it."""


@attrs.frozen
class WindowLag:
    max_s: float
    """The longest timer lateness in the window."""
    max_own_s: float | None
    """The longest lateness less the loop thread's run-queue wait in the same sample: None
    where the kernel does not report that wait."""


class _RunQueueWait:
    """The calling thread's cumulative run-queue wait, in seconds (schedstat's 2nd field)."""

    def __init__(self) -> None:
        try:
            self._fd: int | None = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
        except OSError:
            self._fd = None

    @property
    def available(self) -> bool:
        return self._fd is not None

    def seconds(self) -> float | None:
        if self._fd is None:
            return None
        try:
            return int(os.pread(self._fd, 128, 0).split()[1]) / 1e9
        except (OSError, IndexError, ValueError):
            return None

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


class LoopLagProbe:
    def __init__(
        self, idle_interval_s: float = IDLE_INTERVAL_S, fine_interval_s: float = FINE_INTERVAL_S
    ) -> None:
        self._idle = idle_interval_s
        self._fine = fine_interval_s
        self._windows = 0
        self._max: float | None = None
        self._max_own: float | None = None
        self._wake = asyncio.Event()

    def open_window(self) -> None:
        if self._windows == 0:
            self._max = 0.0
            self._max_own = 0.0
        self._windows += 1
        self._wake.set()  # switch to fine sampling now, not after an idle interval

    def close_window(self) -> WindowLag | None:
        if self._windows == 0:
            return None
        self._windows -= 1
        if self._max is None:
            return None
        return WindowLag(self._max, self._max_own)

    async def run(self) -> None:
        waits = _RunQueueWait()  # opened here: "thread-self" is the loop's thread
        try:
            await self._sample(waits)
        finally:
            waits.close()

    async def _sample(self, waits: _RunQueueWait) -> None:
        # perf_counter, not loop.time(): uvloop's clock has millisecond steps
        while True:
            interval = self._fine if self._windows else self._idle
            started = time.perf_counter()
            queued_before = waits.seconds() if self._windows else None
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
                queued_after = waits.seconds()
                own = None
                if queued_before is not None and queued_after is not None:
                    own = max(0.0, lag - (queued_after - queued_before))
                    if self._max_own is not None:
                        self._max_own = max(self._max_own, own)
                elif not waits.available:
                    self._max_own = None
                # else: a sample that began before the window opened (its timer and the
                # window's wake-up fell due together), with no wait to subtract
                if lag >= STALL_S:
                    event(log, "loop.stall", logging.DEBUG, lag_ms=round(lag * 1000, 2),
                          own_ms=None if own is None else round(own * 1000, 2))  # fmt: skip
