"""The planner: one test per branch of `plan(desired, view)` and of `follow_action`."""

from __future__ import annotations

from bluegreen.control import history
from bluegreen.control.planner import (
    AbortCandidate,
    Deploy,
    Desired,
    Hold,
    ManagerView,
    PromoteCandidate,
    ReconcileStatus,
    Repair,
    follow_action,
    plan,
)
from bluegreen.registry import Target


def target(version: int, *, rejected: str | None = None, vetted: bool = False) -> Target:
    return Target(version, None, "alias:production", rejected, "ops: pinned" if vetted else None)


def entry(action: history.Action, version: int) -> history.Entry:
    return history.Entry(version, None, action, "who", "why", 0.0)


PUSH = history.Action.PROMOTE


def test_no_target_holds() -> None:
    assert plan(Desired(None), ManagerView(live=1)) == Hold(
        ReconcileStatus.NO_TARGET, detail="no servable version"
    )


def test_a_new_version_is_deployed_with_a_canary() -> None:
    assert plan(Desired(target(2)), ManagerView(live=1)) == Deploy(2, canary=True)


def test_a_vetted_version_is_deployed_without_a_canary() -> None:
    assert plan(Desired(target(2, vetted=True)), ManagerView(live=1)) == Deploy(2, canary=False)


def test_the_first_version_is_deployed() -> None:
    assert plan(Desired(target(1)), ManagerView(live=None)) == Deploy(1, canary=True)


def test_the_live_version_holds() -> None:
    action = plan(Desired(target(1)), ManagerView(live=1))
    assert action == Hold(ReconcileStatus.UNCHANGED, 1, "already live")


def test_the_running_candidate_holds_until_vetted() -> None:
    action = plan(Desired(target(2)), ManagerView(live=1, candidate=2))
    assert action == Hold(ReconcileStatus.UNCHANGED, 2, "already the candidate")


def test_a_candidate_vetted_elsewhere_is_promoted() -> None:
    action = plan(Desired(target(2, vetted=True)), ManagerView(live=1, candidate=2))
    assert action == PromoteCandidate(2)


def test_an_alias_moved_back_to_live_aborts_the_candidate() -> None:
    action = plan(Desired(target(1)), ManagerView(live=1, candidate=2))
    assert isinstance(action, AbortCandidate)
    assert action.version == 2


def test_an_alias_on_a_newer_version_than_the_candidate_deploys_it() -> None:
    assert plan(Desired(target(3)), ManagerView(live=1, candidate=2)) == Deploy(3, canary=True)


def test_a_rejected_alias_is_repaired_to_the_last_good_version_in_the_history() -> None:
    desired = Desired(
        target(3, rejected="smoke: nan"),
        history=[entry(PUSH, 1), entry(PUSH, 2), entry(PUSH, 3)],
    )
    # a fresh process: nothing live, the history names 2 as the last good version
    assert plan(desired, ManagerView(live=None)) == Repair(3, "smoke: nan", 2)


def test_the_repair_skips_rejected_versions_in_the_history() -> None:
    desired = Desired(
        target(3, rejected="smoke: nan"),
        rejected={2: "canary: errors"},
        history=[entry(PUSH, 1), entry(PUSH, 2), entry(PUSH, 3)],
    )
    assert plan(desired, ManagerView(live=None)) == Repair(3, "smoke: nan", 1)


def test_a_local_rejection_counts_like_a_tag() -> None:
    desired = Desired(target(2), rejected={2: "load: corrupt"}, history=[entry(PUSH, 1)])
    assert plan(desired, ManagerView(live=1)) == Repair(2, "load: corrupt", 1)


def test_without_history_the_repair_goes_to_the_live_version() -> None:
    desired = Desired(target(2, rejected="smoke: nan"))
    assert plan(desired, ManagerView(live=1)) == Repair(2, "smoke: nan", 1)


def test_with_nothing_good_known_a_rejected_alias_is_skipped() -> None:
    action = plan(Desired(target(1, rejected="load: bad")), ManagerView(live=None))
    assert action == Hold(ReconcileStatus.SKIPPED_REJECTED, 1, "load: bad")


def test_a_rejected_live_version_is_not_a_repair_target() -> None:
    desired = Desired(target(2, rejected="smoke: nan"), rejected={1: "admin: bad"})
    action = plan(desired, ManagerView(live=1))
    assert action == Hold(ReconcileStatus.SKIPPED_REJECTED, 2, "smoke: nan")


def test_follow_action() -> None:
    assert follow_action(None, 1) is history.Action.BOOTSTRAP
    assert follow_action(1, 2) is history.Action.PROMOTE
    assert follow_action(2, 2) is None
