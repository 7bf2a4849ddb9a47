"""Policy: from what the registry wants and what the slots hold, the one next action (pure).

`plan(desired, view)` does no I/O and awaits nothing, so every branch is a unit test of a
few lines. The controller gathers `Desired` from the registry and `ManagerView` from the
slot manager, applies the action, and writes registry tags after the manager is done.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence

import attrs

from bluegreen.control import history
from bluegreen.registry import Target


class ReconcileStatus(enum.StrEnum):
    DEPLOYED = "deployed"
    UNCHANGED = "unchanged"
    NO_TARGET = "no_target"
    SKIPPED_REJECTED = "skipped_rejected"
    REPAIRED = "repaired"
    FAILED = "failed"
    IN_PROGRESS = "in_progress"
    """Only an admin reload's answer: its reconcile was still running when it stopped waiting
    (`Controller.reload`); never a plan's."""


@attrs.frozen
class Desired:
    """The registry's side: the version it names and what the fleet knows about versions."""

    target: Target | None
    rejected: Mapping[int, str] = attrs.field(factory=dict)
    """Every rejection known: registry tags and this process's own (tagging may have failed)."""
    history: Sequence[history.Entry] = ()
    alias_version: int | None = None


@attrs.frozen
class ManagerView:
    """The slots' side."""

    live: int | None
    candidate: int | None = None


@attrs.frozen
class Hold:
    """Nothing to do."""

    status: ReconcileStatus
    version: int | None = None
    detail: str = ""


@attrs.frozen
class Deploy:
    version: int
    canary: bool
    """False when the version was already vetted (admin action, a canary passed elsewhere)."""


@attrs.frozen
class PromoteCandidate:
    """Another process's canary passed (or an admin promoted it): follow at once."""

    version: int


@attrs.frozen
class AbortCandidate:
    """The alias moved away from the local candidate (rejected elsewhere, or live pinned)."""

    version: int
    reason: str


@attrs.frozen
class Repair:
    """The alias names a rejected version: serve the last good one and move the alias there."""

    rejected_version: int
    reason: str
    version: int


Action = Hold | Deploy | PromoteCandidate | AbortCandidate | Repair


def plan(desired: Desired, view: ManagerView) -> Action:
    target = desired.target
    if target is None:
        return Hold(ReconcileStatus.NO_TARGET, detail="no servable version")
    rejected = {**desired.rejected}
    if target.rejected:
        rejected.setdefault(target.version, target.rejected)
    reason = rejected.get(target.version)
    if reason:
        good = history.last_good(desired.history, target.version, rejected)
        if good is None and view.live is not None and view.live not in rejected:
            good = view.live  # no history (older deployments): what serves is good
        if good is None:
            return Hold(ReconcileStatus.SKIPPED_REJECTED, target.version, reason)
        return Repair(target.version, reason, good)
    if view.candidate is not None and view.live == target.version:
        return AbortCandidate(view.candidate, "alias no longer names the candidate")
    vetted = target.promoted_by is not None
    if view.candidate == target.version:
        if vetted:
            return PromoteCandidate(target.version)
        return Hold(ReconcileStatus.UNCHANGED, target.version, "already the candidate")
    if view.live == target.version:
        return Hold(ReconcileStatus.UNCHANGED, target.version, "already live")
    return Deploy(target.version, canary=not vetted)


def follow_action(history_top: int | None, version: int) -> history.Action | None:
    """The history entry a promotion that followed the alias should leave, if any: none when
    the log already ends on it (another process, or the action that moved the alias, wrote
    it); `bootstrap` for the first version ever; `promote` for an alias moved outside us
    (a trainer's `--alias production`)."""
    if history_top == version:
        return None
    if history_top is None:
        return history.Action.BOOTSTRAP
    return history.Action.PROMOTE
