"""The promotion history: replayed as a stack, rollback one step back, never forward."""

from __future__ import annotations

import json

import pytest

from bluegreen.control import history
from bluegreen.control.history import Action, Entry

PROMOTE, PIN, ROLLBACK = Action.PROMOTE, Action.PIN, Action.ROLLBACK
REPAIR, CANARY, BOOTSTRAP = Action.REPAIR, Action.CANARY, Action.BOOTSTRAP


def log(*steps: tuple[Action, int]) -> list[Entry]:
    return [Entry(v, None, a, "ops", "why", float(i)) for i, (a, v) in enumerate(steps)]


def test_pushes_and_pops() -> None:
    entries = log((BOOTSTRAP, 1), (PROMOTE, 2), (CANARY, 3), (PIN, 4), (ROLLBACK, 3))
    assert history.replay(entries) == [1, 2, 3]
    assert history.top(entries) == 3


def test_a_repeated_push_is_one_step() -> None:
    # two processes recorded the same alias move
    assert history.replay(log((BOOTSTRAP, 1), (PROMOTE, 2), (PROMOTE, 2))) == [1, 2]


def test_a_pin_of_an_older_version_is_a_step_forward_in_time() -> None:
    entries = log((BOOTSTRAP, 1), (PROMOTE, 2), (PIN, 1))
    assert history.replay(entries) == [1, 2, 1]
    assert history.rollback_target(entries, 1, {}) == 2


def test_rollback_walks_back_one_step_per_call_and_never_forward() -> None:
    entries = log((BOOTSTRAP, 1), (PROMOTE, 2), (PROMOTE, 3), (PROMOTE, 4))
    assert history.rollback_target(entries, 4, {}) == 3
    entries += log((ROLLBACK, 3))
    assert history.rollback_target(entries, 3, {}) == 2
    entries += log((ROLLBACK, 2))
    assert history.rollback_target(entries, 2, {}) == 1
    entries += log((ROLLBACK, 1))
    assert history.rollback_target(entries, 1, {}) is None


def test_rollback_skips_rejected_versions() -> None:
    entries = log((BOOTSTRAP, 1), (PROMOTE, 2), (PROMOTE, 3))
    assert history.rollback_target(entries, 3, {2: "smoke: nan"}) == 1
    assert history.rollback_target(entries, 3, {1: "x", 2: "y"}) is None


def test_an_alias_moved_outside_bluegreen_is_the_current_step() -> None:
    entries = log((BOOTSTRAP, 1), (PROMOTE, 2))
    assert history.replay(entries, alias=5) == [1, 2, 5]
    assert history.rollback_target(entries, 5, {}) == 2


def test_an_alias_move_lost_after_its_entry_never_leads_forward() -> None:
    # entry written, alias move failed: the alias still names 3
    entries = log((BOOTSTRAP, 1), (PROMOTE, 2), (PROMOTE, 3), (ROLLBACK, 2))
    assert history.rollback_target(entries, 3, {}) == 2
    # alias moved, entry lost: the alias names 2 below the log's top
    entries = log((BOOTSTRAP, 1), (PROMOTE, 2), (PROMOTE, 3))
    assert history.rollback_target(entries, 2, {}) == 1


def test_a_pop_to_a_pruned_version_pushes_it() -> None:
    assert history.replay(log((PROMOTE, 5), (REPAIR, 3))) == [5, 3]


def test_last_good_includes_the_current_version_unless_rejected() -> None:
    entries = log((BOOTSTRAP, 1), (PROMOTE, 2), (PROMOTE, 3))
    assert history.last_good(entries, 3, {}) == 3
    assert history.last_good(entries, 3, {3: "canary"}) == 2
    assert history.last_good([], 3, {3: "canary"}) is None
    assert history.last_good([], None, {}) is None


def test_entries_round_trip_through_their_json_and_sort_by_key() -> None:
    entry = Entry(3, 2, ROLLBACK, "ops@x from 10.0.0.1", "rollback", 1700000000.5)
    older = Entry(2, None, PIN, "a", "b", 1.0)
    tags = [
        ("bluegreen.history.0000000002-aa", entry.to_json()),
        ("bluegreen.history.0000000001-bb", older.to_json()),
    ]
    parsed = history.parse(tags)
    assert [e.version for e in parsed] == [2, 3]
    assert parsed[1].as_dict() == {
        "version": 3, "from_version": 2, "action": "rollback", "who": "ops@x from 10.0.0.1",
        "why": "rollback", "at": 1700000000.5,
    }  # fmt: skip
    assert parsed[1].key == "bluegreen.history.0000000002-aa"


MALFORMED = [
    "not json",
    "[]",
    json.dumps({"version": 1}),
    json.dumps({"version": "x", "action": "pin"}),
    json.dumps({"version": 1, "action": "delete"}),
]


@pytest.mark.parametrize("raw", MALFORMED)
def test_a_malformed_entry_is_skipped(raw: str) -> None:
    good = Entry(1, None, BOOTSTRAP, "a", "b", 1.0).to_json()
    parsed = history.parse([("bluegreen.history.1", good), ("bluegreen.history.2", raw)])
    assert [e.version for e in parsed] == [1]


def test_reasons_are_bounded() -> None:
    data = json.loads(Entry(1, None, PIN, "w" * 1000, "y" * 1000, 0.0).to_json())
    assert len(data["who"]) == len(data["why"]) == history.WHY_MAX_CHARS


def test_versions_in() -> None:
    entries = [Entry(3, 2, ROLLBACK, "a", "b", 0.0), Entry(1, None, BOOTSTRAP, "a", "b", 0.0)]
    assert history.versions_in(entries) == {1, 2, 3}
