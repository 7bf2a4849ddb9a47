"""SlotManager: load → smoke → (canary) → promote → drain → free, against FakeLoader."""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
import weakref
from typing import Any

import pytest

from bluegreen.serving.lifecycle import (
    DeployResult,
    LoadRefused,
    Outcome,
    Rejected,
    SlotManager,
    TransientLoadError,
)
from bluegreen.serving.slot import Slot, SlotState
from bluegreen.settings import CanarySettings
from tests.fakes import (
    BrokenModel,
    FakeLoader,
    KeywordModel,
    RecordingListener,
    SwitchableModel,
)
from tests.unit.helpers import ManagerFactory, eventually, metric, ref

FAST_CANARY = CanarySettings(
    min_requests=5, min_seconds=0.0, max_seconds=60.0, fast_fail_min_requests=5
)


def rejections(result: DeployResult) -> list[tuple[int, str, str]]:
    """The rejections a deploy returned (the manager returns them, it never calls out)."""
    return [(e.ref.version, e.reason, e.stage) for e in result.events if isinstance(e, Rejected)]


def model_probe(slot: Slot) -> weakref.ref[Any]:
    assert slot.model is not None
    return weakref.ref(slot.model.keepalive)


def other(manager: SlotManager, slot: Slot) -> Slot:
    return next(s for s in manager.slots if s is not slot)


def traffic(slot: Slot, n: int, *, ok: bool = True, latency_s: float = 0.001) -> None:
    for _ in range(n):
        slot.acquire()
        slot.release(latency_s, ok=ok)


# --- deploy and swap --------------------------------------------------------------------------
async def test_first_deploy_promotes(make: ManagerFactory, loader: FakeLoader, name: str) -> None:
    manager = make()
    loads = metric("model_load_total", model=name)
    result = await manager.deploy(ref(1))
    assert result.outcome is Outcome.PROMOTED
    assert result.version == 1
    live = manager.live
    assert live is not None
    assert live.state is SlotState.LIVE
    assert live.version == 1
    assert manager.router.snapshot.candidate is None
    assert other(manager, live).state is SlotState.EMPTY
    assert loader.loaded == [1]
    assert metric("model_load_total", model=name) == loads + 1
    assert metric("model_load_success_total", model=name) == 1
    assert metric("model_version_info", model=name, version="1", slot=live.name) == 1
    assert metric("model_hot_swap_total", model=name) == 0
    assert manager.previous is None


async def test_second_deploy_swaps_slots_drains_and_frees(make: ManagerFactory, name: str) -> None:
    manager = make()
    await manager.deploy(ref(1))
    old = manager.live
    assert old is not None
    probe = model_probe(old)

    result = await manager.deploy(ref(2))
    assert result.outcome is Outcome.PROMOTED
    new = manager.live
    assert new is not None
    assert new is not old
    assert new.version == 2
    assert old.state in (SlotState.DRAINING, SlotState.EMPTY)

    await eventually(lambda: old.state is SlotState.EMPTY)
    assert old.model is None
    assert probe() is None, "the old model object is still reachable"
    assert metric("bluegreen_models_freed_total", model=name) == 1
    assert metric("bluegreen_model_free_leaks_total", model=name) == 0
    assert metric("model_hot_swap_total", model=name) == 1
    assert metric("model_version_info", model=name, version="2", slot=new.name) == 1
    assert metric("model_version_info", model=name, version="1", slot=old.name) == 0
    assert manager.previous is not None
    assert manager.previous.version == 1


async def test_three_deploys_alternate_slots(make: ManagerFactory) -> None:
    manager = make()
    names = []
    for version in (1, 2, 3):
        await manager.deploy(ref(version))
        assert manager.live is not None
        names.append(manager.live.name)
    assert names[0] == names[2] != names[1]
    assert manager.live is not None
    assert manager.live.version == 3


async def test_deploying_the_live_version_is_unchanged(
    make: ManagerFactory, loader: FakeLoader
) -> None:
    manager = make()
    await manager.deploy(ref(1))
    result = await manager.deploy(ref(1))
    assert result.outcome is Outcome.UNCHANGED
    assert loader.loaded == [1]


async def test_retain_previous_keeps_it_warm_and_rollback_flips_back(
    make: ManagerFactory, loader: FakeLoader, name: str
) -> None:
    manager = make(retain_previous=True)
    await manager.deploy(ref(1))
    first = manager.live
    assert first is not None
    await manager.deploy(ref(2))
    await eventually(lambda: first.state is SlotState.RETAINED)
    assert first.version == 1
    assert first.model is not None
    assert manager.retained() is first
    assert metric("bluegreen_models_freed_total", model=name) == 0

    rolled = await manager.rollback_instant()
    assert rolled is not None
    assert rolled.version == 1
    assert manager.live is first
    assert first.state is SlotState.LIVE
    assert loader.loaded == [1, 2]  # instant: nothing reloaded
    assert metric("bluegreen_rollbacks_total", model=name) == 1
    second = other(manager, first)
    await eventually(lambda: second.state is SlotState.RETAINED)
    assert second.version == 2


async def test_rollback_instant_without_retained_returns_none(make: ManagerFactory) -> None:
    manager = make()
    await manager.deploy(ref(1))
    await manager.deploy(ref(2))
    assert await manager.rollback_instant() is None
    assert manager.live is not None
    assert manager.live.version == 2


async def test_deploying_the_retained_version_flips_without_loading(
    make: ManagerFactory, loader: FakeLoader
) -> None:
    manager = make(retain_previous=True)
    await manager.deploy(ref(1))
    await manager.deploy(ref(2))
    await eventually(lambda: manager.retained() is not None)
    result = await manager.deploy(ref(1))
    assert result.outcome is Outcome.PROMOTED
    assert manager.live is not None
    assert manager.live.version == 1
    assert loader.loaded == [1, 2]


async def test_a_new_version_evicts_the_retained_one(make: ManagerFactory, name: str) -> None:
    manager = make(retain_previous=True)
    await manager.deploy(ref(1))
    await manager.deploy(ref(2))
    await eventually(lambda: manager.retained() is not None)
    retained = manager.retained()
    assert retained is not None
    probe = model_probe(retained)
    await manager.deploy(ref(3))
    assert manager.live is retained  # the retained slot was freed and reused
    assert manager.live.version == 3
    assert probe() is None
    assert metric("bluegreen_models_freed_total", model=name) == 1


# --- failures ---------------------------------------------------------------------------------
async def test_load_exception_rejects_and_keeps_live(
    make: ManagerFactory, loader: FakeLoader, listener: RecordingListener, name: str
) -> None:
    manager = make()
    await manager.deploy(ref(1))
    live = manager.live
    loader.failures[2] = OSError("artifact is corrupt")
    before = metric("bluegreen_model_load_failures_total", model=name, reason="load_error")

    result = await manager.deploy(ref(2))
    assert result.outcome is Outcome.REJECTED
    assert result.stage == "load"
    assert "OSError: artifact is corrupt" in result.reason
    assert manager.live is live
    assert live is not None
    assert live.version == 1
    idle = other(manager, live)
    assert idle.state is SlotState.EMPTY
    assert idle.model is None
    assert idle.last_failure is not None
    assert "version 2 load" in idle.last_failure
    assert manager.last_failure == idle.last_failure
    assert rejections(result) == [(2, result.reason, "load")]
    assert listener.rejected == []  # returned with the result, not queued
    after = metric("bluegreen_model_load_failures_total", model=name, reason="load_error")
    assert after == before + 1
    assert metric("model_load_success_total", model=name) == 1


async def test_first_load_failure_leaves_nothing_live(
    make: ManagerFactory, loader: FakeLoader, listener: RecordingListener
) -> None:
    manager = make()
    loader.failures[1] = ValueError("bad pickle")
    result = await manager.deploy(ref(1))
    assert result.outcome is Outcome.REJECTED
    assert manager.live is None
    assert all(s.state is SlotState.EMPTY for s in manager.slots)
    assert [r[2] for r in rejections(result)] == ["load"]


async def test_transient_load_error_is_not_a_rejection(
    make: ManagerFactory, loader: FakeLoader, listener: RecordingListener
) -> None:
    manager = make()
    await manager.deploy(ref(1))
    loader.failures[2] = TransientLoadError("registry unreachable")
    result = await manager.deploy(ref(2))
    assert result.outcome is Outcome.TRANSIENT
    assert result.events == ()
    assert listener.rejected == []
    assert manager.live is not None
    assert manager.live.version == 1
    assert all(s.state in (SlotState.LIVE, SlotState.EMPTY) for s in manager.slots)


async def test_load_timeout_is_transient_and_aborts_the_loader(
    make: ManagerFactory, loader: FakeLoader, listener: RecordingListener, name: str
) -> None:
    manager = make(load_timeout_s=0.05)
    loader.load_delay_s = 0.3
    before = metric("bluegreen_model_load_transient_failures_total", model=name)
    result = await manager.deploy(ref(1))
    assert result.outcome is Outcome.TRANSIENT
    assert "load exceeded 0.05s" in result.reason
    assert result.events == ()  # a slow load says nothing about the version
    assert loader.aborts == 1
    assert manager.live is None
    assert manager.slots[0].state is SlotState.EMPTY
    after = metric("bluegreen_model_load_transient_failures_total", model=name)
    assert after == before + 1


async def test_a_stuck_load_is_superseded_by_the_next_version(
    make: ManagerFactory, loader: FakeLoader, listener: RecordingListener
) -> None:
    manager = make(load_timeout_s=30)
    await manager.deploy(ref(1))
    loader.hangs.add(2)
    try:
        stuck = asyncio.create_task(manager.deploy(ref(2)))
        await eventually(lambda: manager.loading is not None)
        assert not manager.cancel_load(2)  # the version being loaded is what is wanted
        assert manager.cancel_load(3, "alias:production")
        result = await asyncio.wait_for(stuck, 2)
        assert result.outcome is Outcome.SUPERSEDED
        assert "version 3" in result.reason
        assert loader.aborts == 1
        # the hung thread is abandoned: the next load runs in a thread of its own
        third = await asyncio.wait_for(manager.deploy(ref(3)), 5)
        assert third.outcome is Outcome.PROMOTED
        assert manager.live is not None
        assert manager.live.version == 3
        assert listener.rejected == []
    finally:
        loader.unblock.set()


@pytest.mark.parametrize("stage", ["integrity", "untrusted"])
async def test_a_refused_load_is_rejected_at_its_stage(
    make: ManagerFactory, loader: FakeLoader, listener: RecordingListener, name: str, stage: str
) -> None:
    manager = make()
    await manager.deploy(ref(1))
    loader.failures[2] = LoadRefused(stage, "packed.npy does not match its sha256")
    before = metric("bluegreen_model_load_failures_total", model=name, reason=stage)
    result = await manager.deploy(ref(2))
    assert result.outcome is Outcome.REJECTED
    assert result.stage == stage
    assert [(v, s) for v, _, s in rejections(result)] == [(2, stage)]
    assert manager.live is not None
    assert manager.live.version == 1
    after = metric("bluegreen_model_load_failures_total", model=name, reason=stage)
    assert after == before + 1


@pytest.mark.parametrize("mode", ["raise", "nan", "wrong_shape", "swapped"])
async def test_smoke_failure_rejects_and_keeps_live(
    make: ManagerFactory,
    loader: FakeLoader,
    listener: RecordingListener,
    name: str,
    mode: str,
) -> None:
    manager = make()
    await manager.deploy(ref(1))
    live = manager.live
    loader.factories[2] = lambda: BrokenModel(mode)
    result = await manager.deploy(ref(2))
    assert result.outcome is Outcome.REJECTED
    assert result.stage == "smoke"
    assert manager.live is live
    assert live is not None
    assert live.version == 1
    assert other(manager, live).state is SlotState.EMPTY
    assert other(manager, live).model is None
    assert rejections(result) == [(2, result.reason, "smoke")]
    assert metric("bluegreen_model_load_failures_total", model=name, reason="smoke_failed") == 1


async def test_a_smoke_failed_model_is_not_kept_in_memory(
    make: ManagerFactory, loader: FakeLoader
) -> None:
    manager = make()
    probes: list[weakref.ref[Any]] = []

    def broken() -> BrokenModel:
        model = BrokenModel("nan")
        probes.append(weakref.ref(model))
        return model

    loader.factories[1] = broken
    result = await manager.deploy(ref(1))
    assert result.outcome is Outcome.REJECTED
    assert len(probes) == 1
    # The failed future's traceback pins it until the loop moves on; then nothing may hold it.
    await asyncio.sleep(0.01)
    gc.collect()
    assert probes[0]() is None, "the rejected model is still reachable"


async def test_a_failed_slot_is_reusable(make: ManagerFactory, loader: FakeLoader) -> None:
    manager = make()
    await manager.deploy(ref(1))
    loader.factories[2] = lambda: BrokenModel("nan")
    await manager.deploy(ref(2))
    result = await manager.deploy(ref(3))
    assert result.outcome is Outcome.PROMOTED
    assert manager.live is not None
    assert manager.live.version == 3


# --- draining ---------------------------------------------------------------------------------
async def test_in_flight_lease_delays_the_free_until_released(
    make: ManagerFactory, name: str
) -> None:
    manager = make()
    await manager.deploy(ref(1))
    old = manager.live
    assert old is not None
    old.acquire()  # a request still running on v1 (the test keeps no model reference)
    await manager.deploy(ref(2))
    await asyncio.sleep(0.1)
    assert old.state is SlotState.DRAINING
    assert old.model is not None
    assert metric("bluegreen_models_freed_total", model=name) == 0

    old.release(0.1, ok=True)
    await eventually(lambda: old.state is SlotState.EMPTY)
    assert old.model is None
    assert metric("bluegreen_models_freed_total", model=name) == 1


async def test_next_deploy_waits_for_the_drain_of_the_slot_it_needs(
    make: ManagerFactory,
) -> None:
    manager = make()
    await manager.deploy(ref(1))
    old = manager.live
    assert old is not None
    old.acquire()
    await manager.deploy(ref(2))
    third = asyncio.create_task(manager.deploy(ref(3)))
    await asyncio.sleep(0.1)
    assert not third.done()
    assert old.state is SlotState.DRAINING
    old.release(0.1, ok=True)
    result = await asyncio.wait_for(third, 3)
    assert result.outcome is Outcome.PROMOTED
    assert manager.live is old
    assert old.version == 3


async def test_drain_timeout_frees_anyway_and_reports_a_leak(
    make: ManagerFactory, name: str
) -> None:
    manager = make(drain_timeout_s=0.05)
    await manager.deploy(ref(1))
    old = manager.live
    assert old is not None
    held = old.acquire()  # a stuck request that still references the model
    await manager.deploy(ref(2))
    await eventually(lambda: old.state is SlotState.EMPTY)
    assert metric("bluegreen_model_free_leaks_total", model=name) == 1
    assert metric("bluegreen_models_freed_total", model=name) == 0
    assert held.ref.version == 1
    old.release(0.1, ok=True)  # the stuck request ends after all: the gauge goes back
    assert old.inflight == 0


# --- canary -----------------------------------------------------------------------------------
async def test_first_version_skips_canary_even_when_enabled(make: ManagerFactory) -> None:
    manager = make(canary_percent=20)
    result = await manager.deploy(ref(1))
    assert result.outcome is Outcome.PROMOTED


async def test_deploy_with_canary_percent_starts_a_canary(make: ManagerFactory) -> None:
    manager = make(canary_percent=20, canary_policy=CanarySettings(min_requests=10**6))
    await manager.deploy(ref(1))
    live = manager.live
    result = await manager.deploy(ref(2))
    assert result.outcome is Outcome.CANARY
    snap = manager.router.snapshot
    assert snap.live is live
    assert snap.candidate is not None
    assert snap.candidate.version == 2
    assert snap.candidate.state is SlotState.CANARY
    assert snap.canary_share == pytest.approx(0.2)
    assert metric("bluegreen_canary_share") == pytest.approx(0.2)
    assert (await manager.deploy(ref(2))).outcome is Outcome.UNCHANGED


async def test_canary_assignment_uses_the_configured_key(make: ManagerFactory) -> None:
    """Workers given one key send each client to the same slot; another key splits apart."""
    never = CanarySettings(min_requests=10**6)
    same = [make(canary_percent=50, canary_policy=never, canary_key=b"k" * 32) for _ in "ab"]
    other = make(canary_percent=50, canary_policy=never, canary_key=b"x" * 32)
    for manager in (*same, other):
        await manager.deploy(ref(1))
        await manager.deploy(ref(2))
        manager.set_canary_percent(40)  # a new snapshot keeps the key
    keys = [f"user-{i}" for i in range(2000)]

    def versions(m: SlotManager) -> list[int | None]:
        chosen = [m.router.snapshot.choose(k) for k in keys]
        return [slot.version if slot else None for slot in chosen]

    assert versions(same[0]) == versions(same[1])
    assert 0.3 < versions(same[0]).count(2) / len(keys) < 0.5
    assert versions(other) != versions(same[0])


async def test_canary_false_promotes_directly(make: ManagerFactory) -> None:
    manager = make(canary_percent=20)
    await manager.deploy(ref(1))
    result = await manager.deploy(ref(2), canary=False)
    assert result.outcome is Outcome.PROMOTED
    assert manager.candidate is None


async def test_judge_promotes_after_enough_traffic(
    make: ManagerFactory, listener: RecordingListener, name: str
) -> None:
    manager = make(canary_percent=50, canary_policy=FAST_CANARY)
    await manager.deploy(ref(1))
    live = manager.live
    assert live is not None
    await manager.deploy(ref(2))
    cand = manager.candidate
    assert cand is not None
    await asyncio.sleep(0.05)
    assert manager.candidate is cand  # no traffic yet: it waits
    traffic(live, 20)
    traffic(cand, 5)
    await asyncio.sleep(0.05)
    assert manager.candidate is cand  # enough requests, but no latency pairs yet: it waits
    for _ in range(5):
        cand.window.pairs.record(0.001, 0.001)
    await eventually(lambda: manager.live is cand)
    assert manager.candidate is None
    assert cand.state is SlotState.LIVE
    assert manager.router.snapshot.canary_share == 0
    assert metric("bluegreen_canary_decisions_total", model=name, decision="promoted") == 1
    assert [v for v, _ in listener.passed] == [2]
    await eventually(lambda: live.state is SlotState.EMPTY)


async def test_judge_rejects_a_candidate_that_errors(
    make: ManagerFactory, loader: FakeLoader, listener: RecordingListener, name: str
) -> None:
    manager = make(canary_percent=50, canary_policy=FAST_CANARY)
    loader.factories[2] = SwitchableModel
    await manager.deploy(ref(1))
    live = manager.live
    assert live is not None
    await manager.deploy(ref(2))
    cand = manager.candidate
    assert cand is not None
    assert cand.model is not None
    cand.model.keepalive.failing = True
    for _ in range(5):
        model = cand.acquire()
        try:
            model.predict(["정말 최고"])
            ok = True
        except RuntimeError:
            ok = False
        cand.release(0.001, ok=ok)
        del model
    traffic(live, 20)
    await eventually(lambda: bool(listener.rejected))
    assert listener.rejected[0][0] == 2
    assert listener.rejected[0][2] == "canary"
    assert manager.live is live
    assert manager.candidate is None
    await eventually(lambda: cand.state is SlotState.EMPTY)
    assert cand.last_failure is not None
    assert "canary" in cand.last_failure
    assert metric("bluegreen_canary_decisions_total", model=name, decision="rejected") == 1
    assert metric("bluegreen_canary_last_rejected_timestamp_seconds", model=name) > 0
    failures = metric("bluegreen_model_load_failures_total", model=name, reason="canary_rejected")
    assert failures == 1


async def test_new_deploy_supersedes_a_running_canary(
    make: ManagerFactory, loader: FakeLoader
) -> None:
    manager = make(canary_percent=20, canary_policy=CanarySettings(min_requests=10**6))
    await manager.deploy(ref(1))
    await manager.deploy(ref(2))
    first_candidate = manager.candidate
    assert first_candidate is not None
    probe = model_probe(first_candidate)
    result = await manager.deploy(ref(3))
    assert result.outcome is Outcome.CANARY
    cand = manager.candidate
    assert cand is not None
    assert cand.version == 3
    assert manager.live is not None
    assert manager.live.version == 1
    assert probe() is None
    assert loader.loaded == [1, 2, 3]


async def test_admin_promote_and_abort(make: ManagerFactory, name: str) -> None:
    manager = make(canary_percent=10, canary_policy=CanarySettings(min_requests=10**6))
    assert await manager.promote_candidate() is None
    assert await manager.abort_candidate("nothing") is None
    await manager.deploy(ref(1))
    await manager.deploy(ref(2))
    promoted = await manager.promote_candidate()
    assert promoted is not None
    assert promoted.version == 2
    assert manager.live is not None
    assert manager.live.version == 2
    assert manager.candidate is None

    await manager.deploy(ref(3))
    cand = manager.candidate
    assert cand is not None
    aborted = await manager.abort_candidate("operator said no")
    assert aborted is not None
    assert aborted.version == 3
    assert manager.candidate is None
    assert manager.live.version == 2
    assert cand.state is SlotState.EMPTY
    assert metric("bluegreen_canary_decisions_total", model=name, decision="aborted") == 1


async def test_set_canary_percent_updates_the_running_canary(make: ManagerFactory) -> None:
    manager = make(canary_percent=10, canary_policy=CanarySettings(min_requests=10**6))
    manager.set_canary_percent(40)  # no candidate yet: only remembered
    assert manager.router.snapshot.canary_share == 0
    await manager.deploy(ref(1))
    await manager.deploy(ref(2))
    assert manager.router.snapshot.canary_share == pytest.approx(0.4)
    manager.set_canary_percent(75)
    assert manager.router.snapshot.canary_share == pytest.approx(0.75)
    assert manager.candidate is not None


async def test_canary_percent_zero_promotes_after_smoke(make: ManagerFactory) -> None:
    manager = make(canary_percent=0)
    await manager.deploy(ref(1))
    assert (await manager.deploy(ref(2))).outcome is Outcome.PROMOTED


async def test_describe_reports_both_slots(make: ManagerFactory) -> None:
    manager = make()
    await manager.deploy(ref(1))
    await manager.deploy(ref(2))
    view = manager.describe()
    assert view["previous_version"] == 1
    assert {s["slot"] for s in view["slots"]} == {"blue", "green"}  # type: ignore[union-attr]
    assert view["live"] == manager.live.name  # type: ignore[union-attr]


async def test_busy_while_loading(make: ManagerFactory, loader: FakeLoader) -> None:
    manager = make()
    loader.load_delay_s = 0.1
    task = asyncio.create_task(manager.deploy(ref(1)))
    await asyncio.sleep(0.02)
    assert manager.busy
    await task
    assert not manager.busy


# --- swaps stay off the event loop ------------------------------------------------------------
class _DiesWhere(KeywordModel):
    """A model that records which thread dropped its last reference."""

    def __init__(self, record: list[str]) -> None:
        super().__init__()
        self._record = record

    def __del__(self) -> None:
        self._record.append(threading.current_thread().name)


async def test_the_old_model_is_freed_off_the_event_loop(
    make: ManagerFactory, loader: FakeLoader, name: str
) -> None:
    record: list[str] = []
    loader.factories[1] = lambda: _DiesWhere(record)
    manager = make()
    await manager.deploy(ref(1))
    old = manager.live
    assert old is not None
    await manager.deploy(ref(2))
    await eventually(lambda: old.state is SlotState.EMPTY)
    assert record, "the old model was never freed"
    assert record[0].startswith("test-load"), f"freed on {record[0]}, not the smoke thread"
    assert metric("bluegreen_models_freed_total", model=name) == 1


async def test_the_switch_interval_is_short_only_while_a_version_comes_in(
    make: ManagerFactory, loader: FakeLoader
) -> None:
    default = sys.getswitchinterval()
    seen: list[float] = []

    def loading() -> KeywordModel:  # on the load thread, inside the swap window
        seen.append(sys.getswitchinterval())
        return KeywordModel()

    loader.factories[2] = loading
    manager = make(swap_switch_interval_ms=0.5)
    await manager.deploy(ref(1))
    await manager.deploy(ref(2))
    old = next(s for s in manager.slots if s is not manager.live)
    await eventually(lambda: old.state is SlotState.EMPTY)
    assert seen == [pytest.approx(0.0005)]
    assert sys.getswitchinterval() == default
