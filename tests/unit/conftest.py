"""Unit-test fixtures: SlotManagers over FakeLoader and a real (small) thread pool."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from bluegreen.serving.lifecycle import SlotManager
from tests.fakes import FakeLoader, RecordingListener
from tests.unit.helpers import ManagerFactory, lifecycle_config


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(2, "test-load")
    yield pool
    pool.shutdown(wait=False, cancel_futures=True)


@pytest.fixture
def loader() -> FakeLoader:
    return FakeLoader()


@pytest.fixture
def listener() -> RecordingListener:
    return RecordingListener()


@pytest.fixture
def name() -> str:
    """A model name of its own, so each test reads only its own metric samples."""
    return f"m-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def make(
    executor: ThreadPoolExecutor, loader: FakeLoader, listener: RecordingListener, name: str
) -> AsyncIterator[ManagerFactory]:
    """Build SlotManagers (fast drains and canary checks by default); closed after the test."""
    made: list[SlotManager] = []

    def factory(**config: Any) -> SlotManager:
        config.setdefault("drain_timeout_s", 5.0)
        config.setdefault("canary_check_interval_s", 0.01)
        manager = SlotManager(lifecycle_config(model_name=name, **config), loader, executor)
        listener.watch(manager)
        made.append(manager)
        return manager

    yield factory
    for manager in made:
        await manager.close()
