"""Slot state machine, leases and the traffic window used to judge canaries."""

from __future__ import annotations

import itertools
import uuid

import pytest

from bluegreen.serving.slot import InvalidTransition, Slot, SlotState, TrafficWindow
from tests.fakes import loaded
from tests.unit.helpers import metric

S = SlotState
# Written out from DESIGN.md section 4 (not imported), so a change to the table fails here.
EXPECTED_ALLOWED: dict[SlotState, set[SlotState]] = {
    S.EMPTY: {S.LOADING},
    S.LOADING: {S.SMOKE, S.EMPTY},
    S.SMOKE: {S.CANARY, S.LIVE, S.EMPTY},
    S.CANARY: {S.LIVE, S.DRAINING},
    S.LIVE: {S.DRAINING},
    S.DRAINING: {S.EMPTY, S.RETAINED},
    S.RETAINED: {S.LIVE, S.EMPTY},
}
ALLOWED = [(a, b) for a, targets in EXPECTED_ALLOWED.items() for b in sorted(targets)]
FORBIDDEN = [
    (a, b) for a, b in itertools.product(SlotState, SlotState) if b not in EXPECTED_ALLOWED[a]
]
# A shortest path from EMPTY to each state, through allowed transitions only.
PATH_TO: dict[SlotState, list[SlotState]] = {
    S.EMPTY: [],
    S.LOADING: [S.LOADING],
    S.SMOKE: [S.LOADING, S.SMOKE],
    S.CANARY: [S.LOADING, S.SMOKE, S.CANARY],
    S.LIVE: [S.LOADING, S.SMOKE, S.LIVE],
    S.DRAINING: [S.LOADING, S.SMOKE, S.LIVE, S.DRAINING],
    S.RETAINED: [S.LOADING, S.SMOKE, S.LIVE, S.DRAINING, S.RETAINED],
}


def unique_name() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


def slot_in(state: SlotState) -> Slot:
    slot = Slot(unique_name())
    for step in PATH_TO[state]:
        slot.transition(step)
    assert slot.state is state
    return slot


def test_every_state_is_covered_by_the_table() -> None:
    assert set(EXPECTED_ALLOWED) == set(SlotState)
    assert len(ALLOWED) + len(FORBIDDEN) == len(SlotState) ** 2


@pytest.mark.parametrize(("old", "new"), ALLOWED, ids=lambda s: s.value)
def test_allowed_transition(old: SlotState, new: SlotState) -> None:
    slot = slot_in(old)
    slot.transition(new)
    assert slot.state is new
    assert metric("bluegreen_slot_state", slot=slot.name, state=new.value) == 1
    if old is not new:
        assert metric("bluegreen_slot_state", slot=slot.name, state=old.value) == 0


@pytest.mark.parametrize(("old", "new"), FORBIDDEN, ids=lambda s: s.value)
def test_forbidden_transition_raises_and_keeps_state(old: SlotState, new: SlotState) -> None:
    slot = slot_in(old)
    with pytest.raises(InvalidTransition, match=f"{old} -> {new}"):
        slot.transition(new)
    assert slot.state is old
    assert metric("bluegreen_slot_state", slot=slot.name, state=old.value) == 1


def test_new_slot_is_empty_and_publishes_its_state() -> None:
    slot = Slot(unique_name())
    assert slot.state is S.EMPTY
    assert slot.model is None
    assert slot.version is None
    assert metric("bluegreen_slot_state", slot=slot.name, state="empty") == 1


def test_acquire_without_model_raises() -> None:
    slot = Slot(unique_name())
    with pytest.raises(InvalidTransition, match="no model"):
        slot.acquire()
    assert slot.inflight == 0


def test_leases_count_inflight_requests_and_errors() -> None:
    slot = Slot(unique_name())
    model = loaded(3)
    slot.install(model)
    assert slot.version == 3
    assert slot.acquire() is model
    assert slot.acquire() is model
    assert slot.inflight == 2
    assert metric("bluegreen_slot_inflight", slot=slot.name) == 2

    slot.release(0.010, ok=True)
    assert slot.inflight == 1
    assert metric("bluegreen_slot_inflight", slot=slot.name) == 1
    slot.release(0.020, ok=False)
    assert slot.inflight == 0
    assert metric("bluegreen_slot_inflight", slot=slot.name) == 0
    assert (slot.requests, slot.errors) == (2, 1)
    assert (slot.window.requests, slot.window.errors) == (2, 1)
    assert list(slot.window.latencies) == [0.010]  # failed requests carry no latency sample


def test_install_resets_counters_and_window() -> None:
    slot = Slot(unique_name())
    slot.install(loaded(1))
    slot.acquire()
    slot.release(0.5, ok=False)
    old_window = slot.window
    slot.install(loaded(2))
    assert (slot.version, slot.requests, slot.errors) == (2, 0, 0)
    assert slot.window is not old_window
    assert slot.window.requests == 0
    assert slot.loaded_at is not None


def test_take_model_detaches_everything() -> None:
    slot = Slot(unique_name())
    model = loaded(5)
    slot.install(model)
    assert slot.take_model() is model
    assert (slot.model, slot.ref, slot.version, slot.loaded_at) == (None, None, None, None)
    assert slot.take_model() is None


def test_describe_names_state_version_and_counts() -> None:
    slot = slot_in(S.LIVE)
    slot.install(loaded(7))
    slot.acquire()
    view = slot.describe()
    assert view["slot"] == slot.name
    assert view["state"] == "live"
    assert view["version"] == 7
    assert view["run_id"] == "run7"
    assert view["in_flight"] == 1
    slot.release(0.001, ok=True)


def test_window_error_rate() -> None:
    window = TrafficWindow()
    assert window.error_rate == 0.0
    for i in range(10):
        window.record(0.001, ok=i >= 3)
    assert window.requests == 10
    assert window.errors == 3
    assert window.error_rate == pytest.approx(0.3)


def test_window_p95_empty_is_zero() -> None:
    assert TrafficWindow().p95() == 0.0


def test_window_p95_of_known_distribution() -> None:
    window = TrafficWindow()
    for ms in reversed(range(1, 101)):  # order must not matter
        window.record(ms / 1000, ok=True)
    assert window.p95() == pytest.approx(0.096)
    single = TrafficWindow()
    single.record(0.25, ok=True)
    assert single.p95() == 0.25


def test_window_p95_ignores_errors() -> None:
    window = TrafficWindow()
    for _ in range(20):
        window.record(0.001, ok=True)
    window.record(9.0, ok=False)
    assert window.p95() == pytest.approx(0.001)


def test_reset_window_starts_a_fresh_one() -> None:
    slot = Slot(unique_name())
    slot.install(loaded(1))
    slot.acquire()
    slot.release(0.1, ok=False)
    slot.reset_window()
    assert slot.window.requests == 0
    assert slot.requests == 1  # lifetime counters survive a window reset
