"""Small helpers shared by unit tests (no fakes here: those live in tests/fakes.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import attrs
from prometheus_client import REGISTRY

from bluegreen.serving.lifecycle import LifecycleConfig, SlotManager
from bluegreen.serving.model_handle import ModelRef
from bluegreen.settings import CanarySettings, LifecycleSettings

ManagerFactory = Callable[..., SlotManager]

NEVER = CanarySettings(min_requests=10**9, min_seconds=10**6, max_seconds=10**7)
"""Canary bounds no test lives long enough to meet: the candidate stays a candidate."""


def lifecycle_config(
    *,
    canary_percent: float | None = None,
    canary_policy: CanarySettings | None = None,
    model_name: str | None = None,
    canary_check_interval_s: float = 0.5,
    canary_key: bytes | None = None,
    **lifecycle: Any,
) -> LifecycleConfig:
    """A LifecycleConfig from the flat names tests speak (`canary_percent=20`,
    `drain_timeout_s=5`, a `canary_policy` for the judge's bounds), over the settings'
    defaults."""
    canary = canary_policy or CanarySettings()
    if canary_percent is not None:
        canary = attrs.evolve(canary, percent=canary_percent)
    extra: dict[str, Any] = {}
    if model_name is not None:
        extra["model_name"] = model_name
    if canary_key is not None:
        extra["canary_key"] = canary_key
    return LifecycleConfig(
        lifecycle=LifecycleSettings(**lifecycle), canary=canary,
        canary_check_interval_s=canary_check_interval_s, **extra,
    )  # fmt: skip


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
