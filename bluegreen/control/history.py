"""The fleet's promotion history: entries kept in the registry, replayed as a stack (pure).

Every promotion (an admin promote or pin, a canary pass, a rollback, a repair, the first
version served, a move of the alias made outside bluegreen) appends one entry: who, why,
from which version, to which, when. Replaying the log gives a stack of versions: a promotion
pushes, a rollback or repair pops down to the version it went to. The stack's top is the
version the fleet should serve; the one below it is where a rollback goes. A rollback
therefore never goes forward: the version it left is popped, so the next rollback cannot
return to it.

No I/O here: the registry stores the entries (`bluegreen.registry`), the controller decides
when to write them.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs


class Action(enum.StrEnum):
    PROMOTE = "promote"
    """The candidate promoted by an admin, or the alias moved outside bluegreen and followed."""
    PIN = "pin"
    ROLLBACK = "rollback"
    CANARY = "canary"
    REPAIR = "repair"
    """The alias was found on (or left on) a rejected version and moved to the last good one."""
    BOOTSTRAP = "bootstrap"
    """The first version the fleet served, with no history before it."""


PUSHES = frozenset({Action.PROMOTE, Action.PIN, Action.CANARY, Action.BOOTSTRAP})
POPS = frozenset({Action.ROLLBACK, Action.REPAIR})

WHY_MAX_CHARS = 300
"""Entries are tags (MLflow caps a tag value at a few thousand characters); reasons are short."""


@attrs.frozen
class Entry:
    version: int
    from_version: int | None
    action: Action
    who: str
    why: str
    at: float
    """Unix seconds."""
    key: str = ""
    """The registry tag holding it (empty until stored)."""

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": self.version,
                "from_version": self.from_version,
                "action": self.action.value,
                "who": self.who[:WHY_MAX_CHARS],
                "why": self.why[:WHY_MAX_CHARS],
                "at": round(self.at, 3),
            },
            ensure_ascii=True,
            separators=(",", ":"),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "from_version": self.from_version,
            "action": self.action.value,
            "who": self.who,
            "why": self.why,
            "at": self.at,
        }


def parse(tags: Iterable[tuple[str, str]]) -> list[Entry]:
    """Entries from their (key, JSON) tags, oldest first. A malformed entry is skipped: one
    hand-edited tag must not take rollback away from the whole fleet."""
    entries = []
    for key, raw in sorted(tags):
        try:
            data = json.loads(raw)
            from_version = data.get("from_version")
            entries.append(
                Entry(
                    version=int(data["version"]),
                    from_version=int(from_version) if from_version is not None else None,
                    action=Action(data["action"]),
                    who=str(data.get("who", "")),
                    why=str(data.get("why", "")),
                    at=float(data.get("at", 0.0)),
                    key=key,
                )
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
    return entries


def replay(entries: Sequence[Entry], alias: int | None = None) -> list[int]:
    """The stack of versions the log describes, bottom first; `alias` (where the fleet really
    points) is applied last, as if it were one more entry.

    A push of the version already on top is a no-op, so processes that record the same
    promotion concurrently leave one step, not two. A pop goes down to the last occurrence of
    its version, or pushes it when it is not on the stack (its earlier entries were pruned).
    The alias pops down to itself when it is on the stack: an entry written while the alias
    move failed, or an alias moved back by hand, then never leads forward."""
    stack: list[int] = []
    for entry in entries:
        if entry.action in PUSHES:
            _push(stack, entry.version)
        else:
            _pop_to(stack, entry.version)
    if alias is not None:
        _pop_to(stack, alias)
    return stack


def _push(stack: list[int], version: int) -> None:
    if not stack or stack[-1] != version:
        stack.append(version)


def _pop_to(stack: list[int], version: int) -> None:
    if version in stack:
        last = len(stack) - 1 - stack[::-1].index(version)
        del stack[last + 1 :]
    else:
        stack.append(version)


def rollback_target(
    entries: Sequence[Entry], alias: int | None, rejected: Mapping[int, str]
) -> int | None:
    """The version one step back from the current one, skipping rejected versions; None when
    there is nothing to go back to."""
    stack = replay(entries, alias)
    if not stack:
        return None
    current = stack.pop()
    while stack and (stack[-1] == current or stack[-1] in rejected):
        stack.pop()
    return stack[-1] if stack else None


def last_good(
    entries: Sequence[Entry], alias: int | None, rejected: Mapping[int, str]
) -> int | None:
    """The newest version on the stack that is not rejected (the current one included)."""
    stack = replay(entries, alias)
    while stack and stack[-1] in rejected:
        stack.pop()
    return stack[-1] if stack else None


def top(entries: Sequence[Entry]) -> int | None:
    """The version the log alone says the fleet serves."""
    stack = replay(entries)
    return stack[-1] if stack else None


def versions_in(entries: Iterable[Entry]) -> set[int]:
    found: set[int] = set()
    for entry in entries:
        found.add(entry.version)
        if entry.from_version is not None:
            found.add(entry.from_version)
    return found
