"""Registry calls have a deadline, and a hung call never holds up the next ones."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from bluegreen.control.calls import RegistryCalls
from bluegreen.registry import RegistryDeadlineExceeded, RegistryUnavailable
from tests.unit.helpers import metric


async def test_a_call_that_hangs_is_abandoned_at_its_deadline() -> None:
    calls = RegistryCalls(0.2, threads=1)
    release = threading.Event()

    def get_registered_model() -> None:
        release.wait(30)

    before = metric("bluegreen_registry_deadline_exceeded_total", call="get_registered_model")
    try:
        started = time.monotonic()
        with pytest.raises(RegistryDeadlineExceeded, match=r"0\.2s deadline"):
            await calls(get_registered_model)
        assert time.monotonic() - started < 1.0
        assert calls.abandoned == 1
        after = metric("bluegreen_registry_deadline_exceeded_total", call="get_registered_model")
        assert after == before + 1
        # the stuck thread holds nothing up: the next call runs on a fresh one at once
        assert await asyncio.wait_for(calls(lambda: 42), 1) == 42
    finally:
        release.set()
    await asyncio.sleep(0.05)
    assert calls.abandoned == 0  # the stuck call ended on its own
    calls.shutdown()


async def test_errors_pass_through() -> None:
    calls = RegistryCalls(1)

    def broken() -> None:
        raise RegistryUnavailable("connection refused")

    with pytest.raises(RegistryUnavailable, match="connection refused"):
        await calls(broken)
    calls.shutdown()


async def test_too_many_stuck_calls_fail_fast() -> None:
    calls = RegistryCalls(0.05, threads=1, max_abandoned=2)
    release = threading.Event()
    try:
        for _ in range(2):
            with pytest.raises(RegistryDeadlineExceeded):
                await calls(release.wait, 30)
        started = time.monotonic()
        with pytest.raises(RegistryUnavailable, match="2 registry calls are still stuck"):
            await calls(lambda: 1)
        assert time.monotonic() - started < 0.05
    finally:
        release.set()
    calls.shutdown()
