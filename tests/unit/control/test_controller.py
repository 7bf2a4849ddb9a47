"""Controller: reconcile with the registry, skip and repair rejects, back off, record history."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from bluegreen.control.calls import RegistryCalls
from bluegreen.control.controller import Controller, backoff_delay
from bluegreen.control.planner import ReconcileStatus
from bluegreen.registry import RegistryUnavailable
from bluegreen.serving.lifecycle import TransientLoadError
from tests.fakes import BrokenModel, FakeLoader, FakeRegistry
from tests.unit.control.conftest import ControllerFactory, live_version
from tests.unit.helpers import NEVER, eventually, lifecycle_config, metric

REJECTED = "bluegreen.rejected"
PROMOTED_BY = "bluegreen.promoted_by"


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


async def test_an_alias_on_a_version_tagged_rejected_is_repaired(
    control: ControllerFactory, registry: FakeRegistry, loader: FakeLoader
) -> None:
    controller = control()
    registry.add(1)
    await controller.reconcile()
    registry.add(2)
    registry.versions[2][REJECTED] = "smoke: nan (another worker)"
    result = await controller.reconcile()
    assert result.status is ReconcileStatus.REPAIRED
    assert result.version == 1
    assert "another worker" in result.detail
    assert loader.loaded == [1]
    assert live_version(controller) == 1
    assert registry.alias == 1  # a fresh worker now finds a servable version
    assert registry.history_versions() == [("bootstrap", 1), ("repair", 1)]


async def test_a_rejection_only_this_process_knows_is_tagged_on_repair(
    control: ControllerFactory, registry: FakeRegistry, loader: FakeLoader
) -> None:
    controller = control()
    registry.add(1)
    await controller.reconcile()
    registry.add(2)
    controller.rejected[2] = "load: corrupt (tagging failed)"
    result = await controller.reconcile()
    assert result.status is ReconcileStatus.REPAIRED
    assert loader.loaded == [1]
    assert registry.versions[2][REJECTED] == "load: corrupt (tagging failed)"
    assert 2 not in controller.rejected  # the registry holds it now
    assert registry.alias == 1


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
    assert 2 not in controller.rejected  # tagged: the registry remembers it for everyone
    assert registry.alias == 1  # the alias names a servable version again
    assert live_version(controller) == 1
    assert registry.history_versions() == [("bootstrap", 1), ("repair", 1)]

    registry.alias = 2  # someone points it back: not loaded again, and repaired again
    repaired = await controller.reconcile()
    assert repaired.status is ReconcileStatus.REPAIRED
    assert registry.alias == 1
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
    ref = controller.ref(registry.get(2))
    registry.down = True
    await controller.on_rejected(ref, "nan", "smoke")  # must not raise
    assert controller.rejected[2] == "smoke: nan"
    registry.down = False
    assert REJECTED not in registry.versions[2]
    assert (await controller.reconcile()).status is ReconcileStatus.REPAIRED
    assert registry.versions[2][REJECTED] == "smoke: nan"  # finished once it was reachable
    assert registry.alias == 1


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
    repaired = await controller.control_check()  # the alias names a rejected version
    assert repaired is not None
    assert repaired.status is ReconcileStatus.REPAIRED
    assert registry.alias == 2
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
    from bluegreen.serving.lifecycle import SlotManager

    registry = FakeRegistry()
    registry.add(1)
    executor = ThreadPoolExecutor(2)
    manager = SlotManager(lifecycle_config(canary_percent=20), FakeLoader(), executor)
    calls = RegistryCalls(5)
    controller = Controller(
        registry, manager, calls,  # type: ignore[arg-type]
        poll_interval_s=300, control_interval_s=1, backoff_base_s=1, backoff_max_s=1,
    )  # fmt: skip
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
        calls.shutdown()
        executor.shutdown()


# --- deadlines --------------------------------------------------------------------------------
async def test_a_hung_registry_fails_the_check_at_its_deadline_and_the_loop_goes_on(
    control: ControllerFactory, registry: FakeRegistry
) -> None:
    from bluegreen.registry import RegistryDeadlineExceeded

    controller = control(timeout_s=0.2)
    registry.add(1)
    await controller.reconcile()
    registry.hang.add("control_view")
    with pytest.raises(RegistryDeadlineExceeded):
        await asyncio.wait_for(controller.control_check(), 2)
    assert controller.last_error is not None
    assert "deadline" in controller.last_error
    assert live_version(controller) == 1
    registry.hang.clear()  # the registry answers again: the stuck call does not block this one
    registry.add(2)
    result = await asyncio.wait_for(controller.control_check(), 2)
    assert result is not None
    assert live_version(controller) == 2


# --- half-done rejections ---------------------------------------------------------------------
async def test_a_rejection_whose_alias_move_was_lost_is_repaired_by_a_fresh_process(
    control: ControllerFactory, registry: FakeRegistry, loader: FakeLoader
) -> None:
    first = control()
    for version in (1, 2):
        registry.add(version)
        await first.reconcile()
    registry.add(3)
    loader.factories[3] = lambda: BrokenModel("nan")
    registry.fail_alias_moves = True  # the tag is written, the alias move is lost
    await first.reconcile()
    assert registry.versions[3][REJECTED].startswith("smoke: ")
    assert registry.alias == 3
    registry.fail_alias_moves = False
    fresh = control()  # a new worker: nothing live, the alias on a rejected version
    result = await fresh.reconcile()
    assert result.status is ReconcileStatus.REPAIRED
    assert live_version(fresh) == 2
    assert registry.alias == 2
    assert registry.history_versions()[-1] == ("repair", 2)
    assert loader.loaded.count(3) == 1  # the rejected version is never loaded again


async def test_history_is_bounded(control: ControllerFactory, registry: FakeRegistry) -> None:
    controller = control(history_max=3)
    for version in range(1, 7):
        registry.add(version)
        await controller.reconcile()
    assert registry.history_versions() == [("promote", 4), ("promote", 5), ("promote", 6)]
    assert [e.version for e in controller.history] == [4, 5, 6]


async def test_the_loop_waits_while_an_admin_action_holds_it(
    control: ControllerFactory, registry: FakeRegistry
) -> None:
    controller = control()
    registry.add(1)
    async with running(controller):
        await eventually(lambda: live_version(controller) == 1)
        async with controller.hold():
            registry.add(2)
            controller.wake()
            await asyncio.sleep(0.2)
            assert live_version(controller) == 1
        await eventually(lambda: live_version(controller) == 2)  # the wake was kept


async def test_a_slow_follower_does_not_log_a_step_forward_after_a_rollback(
    control: ControllerFactory, registry: FakeRegistry
) -> None:
    controller = control()
    for version in (1, 2):
        registry.add(version)
        await controller.reconcile()
    registry.alias = 1  # the fleet moved on while this process was still loading 2
    from bluegreen.control.history import Action, Entry

    wrote = await controller.record(
        Entry(2, 1, Action.PROMOTE, "bluegreen", "followed", 0.0), only_if_alias=True
    )
    assert not wrote
    assert registry.history_versions() == [("bootstrap", 1), ("promote", 2)]


async def _loading_stuck_version_2(
    controller: Controller, registry: FakeRegistry, loader: FakeLoader
) -> None:
    """Version 1 live, then the registry names version 2, whose load never returns, and the
    running loop is inside that load."""
    registry.add(1)
    await controller.reconcile()
    loader.hangs.add(2)
    registry.add(2)
    controller.wake()
    await eventually(lambda: controller.manager.loading is not None)


async def test_a_reload_behind_a_stuck_load_answers_in_progress_within_its_wait(
    control: ControllerFactory, registry: FakeRegistry, loader: FakeLoader
) -> None:
    controller = control(load_timeout_s=30)
    try:
        async with running(controller):
            await _loading_stuck_version_2(controller, registry, loader)
            started = asyncio.get_running_loop().time()
            result = await controller.reload(0.3)
            took = asyncio.get_running_loop().time() - started
            assert result.status is ReconcileStatus.IN_PROGRESS
            assert result.version == 2
            assert "loading version 2" in result.detail
            assert 0.3 <= took < 1.5, took
            assert live_version(controller) == 1  # live keeps serving meanwhile
            loader.unblock.set()
            await eventually(lambda: live_version(controller) == 2)
    finally:
        loader.unblock.set()


async def test_a_reload_abandons_a_stuck_load_the_registry_no_longer_wants(
    control: ControllerFactory, registry: FakeRegistry, loader: FakeLoader
) -> None:
    controller = control(load_timeout_s=30)
    try:
        async with running(controller):
            await _loading_stuck_version_2(controller, registry, loader)
            registry.add(3)  # a good version: the reload must not wait out the stuck load
            result = await asyncio.wait_for(controller.reload(5.0), 3.0)
            assert result.status is ReconcileStatus.DEPLOYED, result
            assert result.version == 3
            assert live_version(controller) == 3
    finally:
        loader.unblock.set()
