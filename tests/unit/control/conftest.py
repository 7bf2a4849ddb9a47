"""Controller fixtures: a SlotManager over FakeLoader, a FakeRegistry, deadline-bound calls."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from bluegreen.control.admin_actions import AdminActions
from bluegreen.control.calls import RegistryCalls
from bluegreen.control.controller import Controller
from tests.fakes import FakeRegistry
from tests.unit.helpers import ManagerFactory

ControllerFactory = Callable[..., Controller]


@pytest.fixture
def registry(name: str) -> FakeRegistry:
    return FakeRegistry(name)


@pytest.fixture
async def control(make: ManagerFactory, registry: FakeRegistry) -> AsyncIterator[ControllerFactory]:
    """Build Controllers (one per simulated process) over the same registry."""
    made: list[RegistryCalls] = []

    def factory(*, timeout_s: float = 5.0, history_max: int = 100, **config: Any) -> Controller:
        calls = RegistryCalls(timeout_s)
        made.append(calls)
        return Controller(
            registry,  # type: ignore[arg-type]
            make(**config),
            calls,
            poll_interval_s=100.0,
            control_interval_s=0.0,
            backoff_base_s=0.01,
            backoff_max_s=0.05,
            history_max=history_max,
        )

    yield factory
    registry.release.set()
    for calls in made:
        calls.shutdown()


def admin_of(controller: Controller) -> AdminActions:
    return AdminActions(controller)


def live_version(controller: Controller) -> int | None:
    live = controller.manager.live
    return live.version if live else None
