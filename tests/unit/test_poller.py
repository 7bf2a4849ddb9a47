"""Controller (policy): reconcile with the registry, skip rejects, back off, admin actions."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from bluegreen.poller import (
    Controller,
    NoCandidate,
    NoPreviousVersion,
    ReconcileStatus,
    VersionNotFound,
    VersionRejected,
    backoff_delay,
)
from bluegreen.registry import RegistryUnavailable
from bluegreen.serving.canary import CanaryPolicy
from bluegreen.serving.lifecycle import TransientLoadError
from bluegreen.serving.slot import SlotState
from tests.fakes import BrokenModel, FakeLoader, FakeRegistry
from tests.unit.helpers import ManagerFactory, eventually, metric

NEVER = CanaryPolicy(min_requests=10**9, min_seconds=10**6, max_seconds=10**7)
REJECTED = "bluegreen.rejected"
PROMOTED_BY = "bluegreen.promoted_by"


@pytest.fixture
def registry(name: str) -> FakeRegistry:
    return FakeRegistry(name)


@pytest.fixture
def registry_pool() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(2, "test-registry")
    yield pool
    pool.shutdown(wait=False, cancel_futures=True)


ControllerFactory = Callable[..., Controller]


@pytest.fixture
def control(
    make: ManagerFactory, registry: FakeRegistry, registry_pool: ThreadPoolExecutor
) -> ControllerFactory:
    def factory(**config: Any) -> Controller:
        manager = make(**config)
        controller = Controller(
            registry,  # type: ignore[arg-type]
            manager,
            registry_pool,
            poll_interval_s=100.0,
            control_interval_s=0.0,
            backoff_base_s=0.01,
            backoff_max_s=0.05,
        )
        manager.set_listener(controller)
        return controller

    return factory


def live_version(controller: Controller) -> int | None:
    live = controller.manager.live
    return live.version if live else None


# --- reconcile --------------------------------------------------------------------------------
async def test_reconcile_deploys_the_alias_target(
    control: ControllerFactory, registry: FakeRegistry, loader: FakeLoader
) -> None:
    controller = control()
    registry.add(1)
    ok = metric("bluegreen_registry_polls_total", result="ok")
    result = await controller.reconcile()
    assert result.status is ReconcileStatus.DEPLOYED
    assert result.version == 1
    assert result.source == "alias:production"
    assert live_version(controller) == 1
    assert loader.loaded == [1]
    assert controller.last_poll_ok is not None
    assert controller.last_error is None
    assert controller.last_result == result
    assert metric("bluegreen_registry_polls_total", result="ok") >= ok + 1

    again = await controller.reconcile()
    assert again.status is ReconcileStatus.UNCHANGED
    assert loader.loaded == [1]

    registry.add(2)
    result = await controller.reconcile()
    assert (result.status, result.version, live_version(controller)) == (
        ReconcileStatus.DEPLOYED,
        2,
        2,
    )


async def test_reconcile_without_target(control: ControllerFactory) -> None:
    controller = control()
    result = await controller.reconcile()
    assert result.status is ReconcileStatus.NO_TARGET
    assert controller.manager.live is None
    assert result.as_dict()["status"] == "no_target"


async def test_skips_a_version_tagged_rejected(
    control: ControllerFactory, registry: FakeRegistry, loader: FakeLoader
) -> None:
    controller = control()
    registry.add(1)
    await controller.reconcile()
    registry.add(2)
    registry.versions[2][REJECTED] = "smoke: nan (another worker)"
    result = await controller.reconcile()
    assert result.status is ReconcileStatus.SKIPPED_REJECTED
    assert result.version == 2
    assert "another worker" in result.detail
    assert loader.loaded == [1]
    assert live_version(controller) == 1


async def test_skips_a_version_in_the_local_memo(
    control: ControllerFactory, registry: FakeRegistry, loader: FakeLoader
) -> None:
    controller = control()
    registry.add(1)
    await controller.reconcile()
    registry.add(2)
    controller.rejected[2] = "load: corrupt (tagging failed)"
    result = await controller.reconcile()
    assert result.status is ReconcileStatus.SKIPPED_REJECTED
    assert loader.loaded == [1]


async def test_registry_down_raises_and_counts_a_poll_error(
    control: ControllerFactory, registry: FakeRegistry
) -> None:
    controller = control()
    registry.add(1)
    await controller.reconcile()
    registry.down = True
    errors = metric("bluegreen_registry_polls_total", result="error")
    with pytest.raises(RegistryUnavailable):
        await controller.reconcile()
    with pytest.raises(RegistryUnavailable):
        await controller.control_check()
    assert metric("bluegreen_registry_polls_total", result="error") == errors + 2
    assert controller.last_error == "connection refused"
    assert live_version(controller) == 1  # the live slot is untouched


async def test_transient_load_failure_is_reported_as_registry_unavailable(
    control: ControllerFactory, registry: FakeRegistry, loader: FakeLoader
) -> None:
    controller = control()
    loader.failures[1] = TransientLoadError("artifact store down")
    registry.add(1)
    with pytest.raises(RegistryUnavailable, match="artifact store down"):
        await controller.reconcile()
    assert REJECTED not in registry.versions[1]
    assert 1 not in controller.rejected


async def test_rejection_tags_the_version_and_restores_the_alias(
    control: ControllerFactory, registry: FakeRegistry, loader: FakeLoader
) -> None:
    controller = control()
    registry.add(1)
    await controller.reconcile()
    registry.add(2)
    loader.factories[2] = lambda: BrokenModel("nan")
    result = await controller.reconcile()
    assert result.status is ReconcileStatus.FAILED
    assert registry.versions[2][REJECTED].startswith("smoke: ")
    assert controller.rejected[2].startswith("smoke: ")
    assert registry.alias == 1  # the alias names a servable version again
    assert live_version(controller) == 1

    registry.alias = 2  # someone points it back: the version is not loaded again
    skipped = await controller.reconcile()
    assert skipped.status is ReconcileStatus.SKIPPED_REJECTED
    assert loader.loaded == [1, 2]


async def test_rejection_of_the_first_version_leaves_the_alias(
    control: ControllerFactory, registry: FakeRegistry, loader: FakeLoader
) -> None:
    controller = control()
    registry.add(1)
    loader.failures[1] = ValueError("corrupt")
    result = await controller.reconcile()
    assert result.status is ReconcileStatus.FAILED
    assert registry.versions[1][REJECTED] == "load: ValueError: corrupt"
    assert registry.alias == 1  # nothing servable to point it at


async def test_rejection_is_remembered_when_the_registry_cannot_be_tagged(
    control: ControllerFactory, registry: FakeRegistry
) -> None:
    controller = control()
    registry.add(1)
    await controller.reconcile()
    registry.add(2)
    ref = controller._ref(registry.get(2))
    registry.down = True
    await controller.on_rejected(ref, "nan", "smoke")  # must not raise
    assert controller.rejected[2] == "smoke: nan"
    registry.down = False
    assert REJECTED not in registry.versions[2]
    assert (await controller.reconcile()).status is ReconcileStatus.SKIPPED_REJECTED


async def test_control_check_only_reconciles_on_change(
    control: ControllerFactory, registry: FakeRegistry, loader: FakeLoader
) -> None:
    controller = control()
    registry.add(1)
    first = await controller.control_check()  # nothing live yet: full reconcile
    assert first is not None
    assert first.status is ReconcileStatus.DEPLOYED
    assert await controller.control_check() is None
    registry.add(2)
    moved = await controller.control_check()
    assert moved is not None
    assert moved.version == 2
    assert live_version(controller) == 2
    registry.add(3)
    controller.rejected[3] = "smoke: bad"
    assert await controller.control_check() is None
    assert loader.loaded == [1, 2]


async def test_fleet_canary_percent_is_applied(
    control: ControllerFactory, registry: FakeRegistry
) -> None:
    controller = control(canary_policy=NEVER)
    registry.add(1)
    registry.canary_percent = 25
    await controller.reconcile()
    assert controller.manager.canary_percent == 25
    registry.add(2)
    result = await controller.reconcile()
    assert result.status is ReconcileStatus.DEPLOYED
    cand = controller.manager.candidate
    assert cand is not None
    assert cand.version == 2
    assert controller.manager.router.snapshot.canary_share == pytest.approx(0.25)


async def test_vetted_version_is_promoted_without_a_canary(
    control: ControllerFactory, registry: FakeRegistry
) -> None:
    controller = control(canary_percent=20, canary_policy=NEVER)
    registry.add(1)
    await controller.reconcile()
    registry.add(2)
    registry.versions[2][PROMOTED_BY] = "admin: pinned"
    await controller.reconcile()
    assert controller.manager.candidate is None
    assert live_version(controller) == 2


async def test_alias_moved_back_to_live_ends_the_local_canary(
    control: ControllerFactory, registry: FakeRegistry
) -> None:
    controller = control(canary_percent=20, canary_policy=NEVER)
    registry.add(1)
    await controller.reconcile()
    registry.add(2)
    await controller.reconcile()
    assert controller.manager.candidate is not None
    registry.alias = 1
    await controller.reconcile()
    assert controller.manager.candidate is None
    assert live_version(controller) == 1


# --- backoff ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("failures", "nominal"), [(0, 1), (1, 1), (2, 2), (3, 4), (5, 16)])
def test_backoff_grows_exponentially_within_jitter_bounds(failures: int, nominal: float) -> None:
    rng = random.Random(42)
    delays = [backoff_delay(failures, 1.0, 60.0, rng) for _ in range(2000)]
    assert all(0.5 * nominal <= d < 1.5 * nominal for d in delays)
    # The jitter really spreads the delays over the whole band.
    assert min(delays) < 0.55 * nominal
    assert max(delays) > 1.45 * nominal


def test_backoff_is_capped() -> None:
    rng = random.Random(1)
    delays = [backoff_delay(n, 1.0, 60.0, rng) for n in (7, 10, 50, 1000) for _ in range(500)]
    assert all(30.0 <= d < 90.0 for d in delays)
    assert backoff_delay(1000, 1.0, 60.0, random.Random(0)) < 90.0


def test_backoff_means_double_per_failure() -> None:
    rng = random.Random(3)

    def mean(n: int) -> float:
        return sum(backoff_delay(n, 0.5, 1000.0, rng) for _ in range(4000)) / 4000

    for n in (1, 2, 3, 4):
        assert mean(n + 1) / mean(n) == pytest.approx(2.0, rel=0.1)


# --- the loop ---------------------------------------------------------------------------------
@contextlib.asynccontextmanager
async def running(controller: Controller) -> AsyncIterator[None]:
    """The controller's loop as a task for the block; cancelled (and proven stopped) after."""
    task = asyncio.create_task(controller.run())
    try:
        yield
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_run_loop_deploys_and_wake_reconciles_at_once(
    control: ControllerFactory, registry: FakeRegistry
) -> None:
    controller = control()
    registry.add(1)
    async with running(controller):
        await eventually(lambda: live_version(controller) == 1)
        registry.add(2)
        controller.wake()
        await eventually(lambda: live_version(controller) == 2)


async def test_run_loop_backs_off_and_recovers(
    control: ControllerFactory, registry: FakeRegistry
) -> None:
    controller = control()
    registry.add(1)
    registry.down = True
    async with running(controller):
        await eventually(lambda: registry.calls >= 3)
        assert controller.last_error is not None
        assert controller.manager.live is None
        registry.down = False
        await eventually(lambda: live_version(controller) == 1)
        assert controller.last_error is None


async def test_run_loop_waits_for_the_ready_gate(
    control: ControllerFactory, registry: FakeRegistry
) -> None:
    controller = control()
    registry.add(1)
    controller.ready_gate.clear()
    async with running(controller):
        await asyncio.sleep(0.05)
        assert registry.calls == 0
        controller.ready_gate.set()
        await eventually(lambda: live_version(controller) == 1)


# --- admin actions ----------------------------------------------------------------------------
async def test_promote_without_candidate_is_no_candidate(
    control: ControllerFactory, registry: FakeRegistry
) -> None:
    controller = control()
    registry.add(1)
    await controller.reconcile()
    with pytest.raises(NoCandidate) as info:
        await controller.promote(None, "ops@test")
    assert info.value.status_code == 409


async def test_promote_the_candidate_moves_the_alias(
    control: ControllerFactory, registry: FakeRegistry
) -> None:
    controller = control(canary_percent=10, canary_policy=NEVER)
    registry.add(1)
    await controller.reconcile()
    registry.versions[2] = {}  # registered but the alias stays on 1 until...
    registry.alias = 2
    await controller.reconcile()
    assert controller.manager.candidate is not None
    result = await controller.promote(None, "ops@test")
    assert result == {"version": 2, "alias_error": None}
    assert live_version(controller) == 2
    assert registry.alias == 2
    assert registry.versions[2][PROMOTED_BY].startswith("ops@test")


async def test_pin_unknown_version_is_not_found(
    control: ControllerFactory, registry: FakeRegistry
) -> None:
    controller = control()
    registry.add(1)
    await controller.reconcile()
    with pytest.raises(VersionNotFound) as info:
        await controller.promote(99, "ops@test")
    assert info.value.status_code == 404
    assert live_version(controller) == 1


async def test_pin_rejected_version_is_refused(
    control: ControllerFactory, registry: FakeRegistry, loader: FakeLoader
) -> None:
    controller = control()
    registry.add(1)
    await controller.reconcile()
    registry.add(2, alias=False)
    registry.versions[2][REJECTED] = "smoke: nan"
    with pytest.raises(VersionRejected, match="smoke: nan") as info:
        await controller.promote(2, "ops@test")
    assert info.value.status_code == 422
    assert loader.loaded == [1]


async def test_pin_version_that_fails_smoke_is_refused(
    control: ControllerFactory, registry: FakeRegistry, loader: FakeLoader
) -> None:
    controller = control()
    registry.add(1)
    await controller.reconcile()
    registry.add(2, alias=False)
    loader.factories[2] = lambda: BrokenModel("raise")
    with pytest.raises(VersionRejected, match="failed smoke"):
        await controller.promote(2, "ops@test")
    assert live_version(controller) == 1
    assert registry.alias == 1


async def test_pin_an_older_version_skips_the_canary_and_moves_the_alias(
    control: ControllerFactory, registry: FakeRegistry
) -> None:
    controller = control(canary_percent=50, canary_policy=NEVER)
    registry.add(1)
    await controller.reconcile()
    registry.add(2, alias=False)
    result = await controller.promote(2, "ops@test")
    assert result == {"version": 2, "outcome": "promoted", "alias_error": None}
    assert controller.manager.candidate is None
    assert live_version(controller) == 2
    assert registry.alias == 2
    pinned_again = await controller.promote(2, "ops@test")
    assert pinned_again["outcome"] == "unchanged"


async def test_pin_forgives_a_local_memo_but_not_a_registry_tag(
    control: ControllerFactory, registry: FakeRegistry
) -> None:
    controller = control()
    registry.add(1)
    await controller.reconcile()
    registry.add(2, alias=False)
    controller.rejected[2] = "load: flaky disk"
    result = await controller.promote(2, "ops@test")
    assert result["version"] == 2
    assert 2 not in controller.rejected


async def test_alias_move_failure_is_reported_not_raised(
    control: ControllerFactory, registry: FakeRegistry
) -> None:
    controller = control(canary_percent=10, canary_policy=NEVER)
    registry.add(1)
    await controller.reconcile()
    registry.add(2)
    await controller.reconcile()
    registry.down = True
    result = await controller.promote(None, "ops@test")
    assert result["version"] == 2
    assert result["alias_error"] == "connection refused"
    assert live_version(controller) == 2


async def test_rollback_without_previous(
    control: ControllerFactory, registry: FakeRegistry
) -> None:
    controller = control()
    with pytest.raises(NoPreviousVersion) as info:
        await controller.rollback("ops@test")
    assert info.value.status_code == 409
    registry.add(1)
    await controller.reconcile()
    with pytest.raises(NoPreviousVersion):
        await controller.rollback("ops@test")


async def test_rollback_reloads_the_previous_version(
    control: ControllerFactory, registry: FakeRegistry, loader: FakeLoader, name: str
) -> None:
    controller = control()
    registry.add(1)
    await controller.reconcile()
    registry.add(2)
    await controller.reconcile()
    before = metric("bluegreen_rollbacks_total", model=name)
    result = await controller.rollback("ops@test")
    assert result == {"version": 1, "mode": "reload", "alias_error": None}
    assert live_version(controller) == 1
    assert registry.alias == 1
    assert loader.loaded == [1, 2, 1]
    assert metric("bluegreen_rollbacks_total", model=name) == before + 1


async def test_rollback_first_converges_on_a_pin_made_by_another_process(
    control: ControllerFactory, registry: FakeRegistry, loader: FakeLoader
) -> None:
    controller = control()
    registry.add(1)
    await controller.reconcile()
    registry.add(2)
    await controller.reconcile()
    # Another worker pinned v1; this one has not reconciled yet (live 2, previous 1). The
    # fleet's rollback from v1 means "back to 2", not "to this process's previous, 1".
    registry.alias = 1
    result = await controller.rollback("ops@test")
    assert result["version"] == 2
    assert live_version(controller) == 2
    assert registry.alias == 2
    assert loader.loaded == [1, 2, 1, 2]


async def test_rollback_uses_local_history_while_the_registry_is_down(
    control: ControllerFactory, registry: FakeRegistry
) -> None:
    controller = control()
    registry.add(1)
    await controller.reconcile()
    registry.add(2)
    await controller.reconcile()
    registry.down = True
    result = await controller.rollback("ops@test")
    assert result["version"] == 1
    assert result["alias_error"] == "connection refused"
    assert live_version(controller) == 1


async def test_rollback_is_instant_when_the_previous_version_is_retained(
    control: ControllerFactory, registry: FakeRegistry, loader: FakeLoader
) -> None:
    controller = control(retain_previous=True)
    registry.add(1)
    await controller.reconcile()
    registry.add(2)
    await controller.reconcile()
    await eventually(lambda: controller.manager.retained() is not None)
    result = await controller.rollback("ops@test")
    assert result["mode"] == "instant"
    assert result["version"] == 1
    assert loader.loaded == [1, 2]
    assert registry.alias == 1


async def test_abort_canary(control: ControllerFactory, registry: FakeRegistry) -> None:
    controller = control(canary_percent=10, canary_policy=NEVER)
    with pytest.raises(NoCandidate):
        await controller.abort_canary("ops@test")
    registry.add(1)
    await controller.reconcile()
    registry.add(2)
    await controller.reconcile()
    cand = controller.manager.candidate
    assert cand is not None
    result = await controller.abort_canary("ops@test")
    assert result == {"aborted_version": 2}
    assert controller.manager.candidate is None
    assert cand.state is SlotState.EMPTY
    assert registry.versions[2][REJECTED] == "canary: aborted by ops@test"
    assert registry.alias == 1
    assert (await controller.reconcile()).status is ReconcileStatus.UNCHANGED


async def test_set_canary_percent_locally_and_fleet_wide(
    control: ControllerFactory, registry: FakeRegistry
) -> None:
    controller = control()
    result = await controller.set_canary_percent(30)
    assert result == {"percent": 30, "fleet_error": None}
    assert controller.manager.canary_percent == 30
    assert registry.canary_percent == 30
    registry.down = True
    result = await controller.set_canary_percent(5)
    assert result["fleet_error"] == "connection refused"
    assert controller.manager.canary_percent == 5


async def test_run_loop_stops_when_cancelled_right_after_a_wake(
    control: ControllerFactory, registry: FakeRegistry
) -> None:
    """A wake (webhook, admin reload) landing in the same loop turn as shutdown's cancel must
    not be mistaken for a normal wake-up: the loop would swallow the cancel and keep running."""
    controller = control()
    registry.add(1)
    task = asyncio.create_task(controller.run())
    await eventually(lambda: live_version(controller) == 1)
    await asyncio.sleep(0.02)  # now parked waiting for the next wake or interval
    controller.wake()
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=2)
    if not done:
        task.cancel()
        await asyncio.wait({task}, timeout=2)
    assert task in done, "run() swallowed the cancellation"
    assert task.cancelled()


async def test_candidate_vetted_elsewhere_is_promoted_on_the_next_control_check() -> None:
    """Two workers canary the same version; the first to pass tags it promoted_by. The other,
    whose own window may see little traffic, must follow at its next control check."""
    from bluegreen.serving.lifecycle import LifecycleConfig, SlotManager

    registry = FakeRegistry()
    registry.add(1)
    executor = ThreadPoolExecutor(2)
    manager = SlotManager(LifecycleConfig(canary_percent=20), FakeLoader(), executor)
    controller = Controller(
        registry, manager, executor,  # type: ignore[arg-type]
        poll_interval_s=300, control_interval_s=1, backoff_base_s=1, backoff_max_s=1,
    )  # fmt: skip
    manager.set_listener(controller)
    try:
        await controller.reconcile()
        registry.add(2)
        await controller.control_check()
        assert manager.candidate is not None
        assert manager.candidate.version == 2
        await controller.control_check()
        assert manager.candidate is not None  # not vetted yet: the canary goes on
        registry.mark_promoted(2, who="bluegreen canary", why="passed on another worker")
        result = await controller.control_check()
        assert result is not None
        assert result.detail == "vetted elsewhere"
        assert manager.live is not None
        assert manager.live.version == 2
        assert manager.candidate is None
    finally:
        await manager.close()
        executor.shutdown()
