"""Admin actions: promote, pin, fleet-wide rollback over the registry-kept history, reject,
unreject, canary abort and share."""

from __future__ import annotations

import asyncio

import pytest

from bluegreen.control.errors import (
    NoCandidate,
    NoPreviousVersion,
    NotRejected,
    VersionNotFound,
    VersionRejected,
)
from bluegreen.control.planner import ReconcileStatus
from bluegreen.registry import RegistryUnavailable
from bluegreen.serving.slot import SlotState
from tests.fakes import BrokenModel, FakeLoader, FakeRegistry
from tests.unit.control.conftest import ControllerFactory, admin_of, live_version
from tests.unit.helpers import NEVER, eventually, metric

REJECTED = "bluegreen.rejected"
PROMOTED_BY = "bluegreen.promoted_by"


async def test_promote_without_candidate_is_no_candidate(
    control: ControllerFactory, registry: FakeRegistry
) -> None:
    controller = control()
    registry.add(1)
    await controller.reconcile()
    with pytest.raises(NoCandidate) as info:
        await admin_of(controller).promote(None, "ops@test")
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
    result = await admin_of(controller).promote(None, "ops@test")
    assert result == {"version": 2, "from_version": 1, "alias_error": None}
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
        await admin_of(controller).promote(99, "ops@test")
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
    with pytest.raises(VersionRejected, match=r"smoke: nan.*unreject it first") as info:
        await admin_of(controller).promote(2, "ops@test")
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
        await admin_of(controller).promote(2, "ops@test")
    assert live_version(controller) == 1
    assert registry.alias == 1


async def test_pin_an_older_version_skips_the_canary_and_moves_the_alias(
    control: ControllerFactory, registry: FakeRegistry
) -> None:
    controller = control(canary_percent=50, canary_policy=NEVER)
    registry.add(1)
    await controller.reconcile()
    registry.add(2, alias=False)
    result = await admin_of(controller).promote(2, "ops@test")
    assert result == {"version": 2, "from_version": 1, "outcome": "promoted", "alias_error": None}
    assert controller.manager.candidate is None
    assert live_version(controller) == 2
    assert registry.alias == 2
    pinned_again = await admin_of(controller).promote(2, "ops@test")
    assert pinned_again["outcome"] == "unchanged"


async def test_pin_forgives_a_local_memo_but_not_a_registry_tag(
    control: ControllerFactory, registry: FakeRegistry
) -> None:
    controller = control()
    registry.add(1)
    await controller.reconcile()
    registry.add(2, alias=False)
    controller.rejected[2] = "load: flaky disk"
    result = await admin_of(controller).promote(2, "ops@test")
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
    result = await admin_of(controller).promote(None, "ops@test")
    assert result["version"] == 2
    assert result["alias_error"] == "connection refused"
    assert live_version(controller) == 2


async def test_rollback_without_previous(
    control: ControllerFactory, registry: FakeRegistry
) -> None:
    controller = control()
    with pytest.raises(NoPreviousVersion) as info:
        await admin_of(controller).rollback("ops@test")
    assert info.value.status_code == 409
    registry.add(1)
    await controller.reconcile()
    with pytest.raises(NoPreviousVersion):
        await admin_of(controller).rollback("ops@test")


async def test_rollback_reloads_the_previous_version(
    control: ControllerFactory, registry: FakeRegistry, loader: FakeLoader, name: str
) -> None:
    controller = control()
    registry.add(1)
    await controller.reconcile()
    registry.add(2)
    await controller.reconcile()
    before = metric("bluegreen_rollbacks_total", model=name)
    result = await admin_of(controller).rollback("ops@test")
    assert result == {"version": 1, "from_version": 2, "mode": "reload", "alias_error": None}
    assert live_version(controller) == 1
    assert registry.alias == 1
    assert loader.loaded == [1, 2, 1]
    assert metric("bluegreen_rollbacks_total", model=name) == before + 1
    assert registry.history_versions() == [("bootstrap", 1), ("promote", 2), ("rollback", 1)]


async def test_rollback_follows_the_fleet_history_not_this_process_state(
    control: ControllerFactory, registry: FakeRegistry, loader: FakeLoader
) -> None:
    here, there = control(), control()
    registry.add(1)
    await here.reconcile()
    registry.add(2)
    await here.reconcile()
    await there.reconcile()
    # Another process pinned v1; this one has not reconciled yet (live 2). The fleet's
    # history is 1, 2, 1: one step back from v1 is v2, not this process's previous (1).
    await admin_of(there).promote(1, "ops@test")
    assert registry.alias == 1
    result = await admin_of(here).rollback("ops@test")
    assert (result["version"], result["from_version"]) == (2, 1)
    assert result["mode"] == "unchanged"  # this process still served it
    assert live_version(here) == 2
    assert registry.alias == 2


async def test_rollback_walks_back_one_step_per_call_and_never_forward(
    control: ControllerFactory, registry: FakeRegistry
) -> None:
    controller = control()
    for version in (1, 2, 3):
        registry.add(version)
        await controller.reconcile()
    admin = admin_of(controller)
    assert (await admin.rollback("ops"))["version"] == 2
    assert (await admin.rollback("ops"))["version"] == 1
    with pytest.raises(NoPreviousVersion):
        await admin.rollback("ops")
    assert registry.alias == 1
    assert live_version(controller) == 1


async def test_a_restarted_process_rolls_back_along_the_same_history(
    control: ControllerFactory, registry: FakeRegistry
) -> None:
    first = control()
    for version in (1, 2, 3):
        registry.add(version)
        await first.reconcile()
    await admin_of(first).rollback("ops")  # 3 -> 2
    restarted = control()  # nothing in memory: only the registry
    await restarted.reconcile()
    assert live_version(restarted) == 2
    result = await admin_of(restarted).rollback("ops")
    assert (result["version"], result["from_version"]) == (1, 2)


async def test_rollback_skips_rejected_versions(
    control: ControllerFactory, registry: FakeRegistry
) -> None:
    controller = control()
    for version in (1, 2, 3):
        registry.add(version)
        await controller.reconcile()
    registry.versions[2][REJECTED] = "admin: bad labels"
    result = await admin_of(controller).rollback("ops")
    assert (result["version"], result["from_version"]) == (1, 3)


async def test_rollback_needs_the_registry(
    control: ControllerFactory, registry: FakeRegistry
) -> None:
    """The fleet's history lives in the registry: a rollback this process made alone would be
    undone by its next control check, so it is refused (503) instead."""
    controller = control()
    registry.add(1)
    await controller.reconcile()
    registry.add(2)
    await controller.reconcile()
    registry.down = True
    with pytest.raises(RegistryUnavailable):
        await admin_of(controller).rollback("ops@test")
    assert live_version(controller) == 2


async def test_rollback_is_instant_when_the_previous_version_is_retained(
    control: ControllerFactory, registry: FakeRegistry, loader: FakeLoader
) -> None:
    controller = control(retain_previous=True)
    registry.add(1)
    await controller.reconcile()
    registry.add(2)
    await controller.reconcile()
    await eventually(lambda: controller.manager.retained() is not None)
    result = await admin_of(controller).rollback("ops@test")
    assert result["mode"] == "instant"
    assert result["version"] == 1
    assert loader.loaded == [1, 2]
    assert registry.alias == 1


async def test_abort_canary(control: ControllerFactory, registry: FakeRegistry) -> None:
    controller = control(canary_percent=10, canary_policy=NEVER)
    with pytest.raises(NoCandidate):
        await admin_of(controller).abort_canary("ops@test")
    registry.add(1)
    await controller.reconcile()
    registry.add(2)
    await controller.reconcile()
    cand = controller.manager.candidate
    assert cand is not None
    result = await admin_of(controller).abort_canary("ops@test")
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
    result = await admin_of(controller).set_canary_percent(30)
    assert result == {"percent": 30, "fleet_error": None}
    assert controller.manager.canary_percent == 30
    assert registry.canary_percent == 30
    registry.down = True
    result = await admin_of(controller).set_canary_percent(5)
    assert result["fleet_error"] == "connection refused"
    assert controller.manager.canary_percent == 5


# --- reject / unreject / versions -------------------------------------------------------------
async def test_reject_the_live_version_moves_the_fleet_to_the_last_good_one(
    control: ControllerFactory, registry: FakeRegistry
) -> None:
    controller = control()
    for version in (1, 2):
        registry.add(version)
        await controller.reconcile()
    with pytest.raises(VersionNotFound):
        await admin_of(controller).reject(9, "no such", "ops")
    result = await admin_of(controller).reject(2, "wrong labels", "ops")
    assert result["rejected"] == "admin: wrong labels (ops)"
    assert result["live_version"] == 1
    assert registry.alias == 1
    assert registry.versions[2][REJECTED] == "admin: wrong labels (ops)"
    assert registry.history_versions()[-1] == ("repair", 1)


async def test_unreject_clears_the_rejection_with_an_audit_and_a_pin_then_serves_it(
    control: ControllerFactory, registry: FakeRegistry, loader: FakeLoader
) -> None:
    controller = control()
    registry.add(1)
    await controller.reconcile()
    registry.add(2, alias=False)
    registry.versions[2][REJECTED] = "smoke: flaky disk"
    admin = admin_of(controller)
    with pytest.raises(VersionRejected):
        await admin.promote(2, "ops")
    with pytest.raises(NotRejected) as info:
        await admin.unreject(1, "ops")
    assert info.value.status_code == 409
    with pytest.raises(VersionNotFound):
        await admin.unreject(7, "ops")
    result = await admin.unreject(2, "ops")
    assert result == {"version": 2, "was": "smoke: flaky disk"}
    assert REJECTED not in registry.versions[2]
    assert '"was": "smoke: flaky disk"' in registry.versions[2]["bluegreen.unrejected"]
    pinned = await admin.promote(2, "ops")
    assert pinned["outcome"] == "promoted"
    assert live_version(controller) == 2
    assert registry.alias == 2


async def test_versions_shows_history_alias_and_rejections(
    control: ControllerFactory, registry: FakeRegistry
) -> None:
    controller = control()
    for version in (1, 2):
        registry.add(version)
        await controller.reconcile()
    registry.add(3, alias=False)
    registry.versions[3][REJECTED] = "smoke: nan"
    await admin_of(controller).rollback("ops@test")
    view = await admin_of(controller).versions()
    assert view["alias"] == {"name": "production", "version": 1}
    assert view["live_version"] == 1
    assert [(e["action"], e["version"], e["from_version"]) for e in view["history"]] == [
        ("rollback", 1, 2), ("promote", 2, 1), ("bootstrap", 1, None),
    ]  # fmt: skip
    assert view["history"][0]["who"] == "ops@test"
    assert [(v["version"], v["rejected"], v["in_history"]) for v in view["versions"]] == [
        (3, "smoke: nan", False), (2, None, True), (1, None, True),
    ]  # fmt: skip


# --- the manager's lock is never held across registry calls ------------------------------------
async def test_an_admin_pin_completes_while_a_rejection_tag_call_hangs(
    control: ControllerFactory, registry: FakeRegistry, loader: FakeLoader
) -> None:
    controller = control(timeout_s=30)
    registry.add(1)
    await controller.reconcile()
    registry.add(3, alias=False)
    registry.add(2)
    loader.factories[2] = lambda: BrokenModel("nan")
    registry.hang.add("tag_rejected")
    reconciling = asyncio.create_task(controller.reconcile())
    try:
        await eventually(lambda: registry.hanging == 1)
        assert not controller.manager.busy  # the rejection is recorded outside the lock
        pinned = await asyncio.wait_for(admin_of(controller).promote(3, "ops"), 5)
        assert pinned["version"] == 3
        assert live_version(controller) == 3
        assert not reconciling.done()
    finally:
        registry.release.set()
    await asyncio.wait_for(reconciling, 5)
    assert registry.versions[2][REJECTED].startswith("smoke: ")
