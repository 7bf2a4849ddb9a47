"""LoopLagProbe: a window's longest stall, split into the process's own and CPU queueing."""

from __future__ import annotations

import asyncio
import time

import pytest

from bluegreen import loop_lag
from bluegreen.loop_lag import LoopLagProbe


async def _window(probe: LoopLagProbe, block_s: float) -> loop_lag.WindowLag:
    task = asyncio.create_task(probe.run())
    try:
        probe.open_window()
        await asyncio.sleep(0.02)
        time.sleep(block_s)  # noqa: ASYNC251 - the loop held on purpose: the process's own stall
        await asyncio.sleep(0.02)
        lag = probe.close_window()
        assert lag is not None
        return lag
    finally:
        task.cancel()


async def test_a_blocked_loop_is_the_process_own_stall() -> None:
    lag = await _window(LoopLagProbe(), 0.03)
    assert lag.max_s >= 0.025
    assert lag.max_own_s is not None
    assert lag.max_own_s >= 0.025


async def test_run_queue_wait_is_not_counted_as_the_process_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # as if the loop thread had waited for a CPU through the whole stall
    clock = iter(range(1000))
    monkeypatch.setattr(loop_lag._RunQueueWait, "seconds", lambda self: next(clock) * 0.05)
    lag = await _window(LoopLagProbe(), 0.03)
    assert lag.max_s >= 0.025
    assert lag.max_own_s == 0.0


async def test_no_window_no_figure() -> None:
    assert LoopLagProbe().close_window() is None


async def test_without_schedstat_the_own_share_is_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    def unavailable(self: loop_lag._RunQueueWait) -> None:
        self._fd = None

    monkeypatch.setattr(loop_lag._RunQueueWait, "__init__", unavailable)
    lag = await _window(LoopLagProbe(), 0.01)
    assert lag.max_s >= 0.008
    assert lag.max_own_s is None
