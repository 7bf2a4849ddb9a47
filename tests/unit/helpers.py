"""Small helpers shared by unit tests (no fakes here: those live in tests/fakes.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from prometheus_client import REGISTRY

from bluegreen.serving.lifecycle import SlotManager
from bluegreen.serving.model_handle import ModelRef

ManagerFactory = Callable[..., SlotManager]


def metric(name: str, **labels: str) -> float:
    """Current value of one sample in the global registry (0 when never observed)."""
    value = REGISTRY.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def eventually(condition: Callable[[], bool], within_s: float = 3.0) -> None:
    """Let the event loop run until `condition()` holds; fail after `within_s` seconds."""
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


def ref(version: int, name: str = "m") -> ModelRef:
    return ModelRef(name, version, f"models:/{name}/{version}")
