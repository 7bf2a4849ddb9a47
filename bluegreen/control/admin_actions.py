"""What an operator can do: promote, pin, roll back, reject, unreject, canary; and the history.

Each action acts on the receiving process at once and writes the registry (history entry,
alias, tags) so that every other worker and replica converges within one control interval.
Rollback is computed from the history kept in the registry, so it means the same on every
replica and after a restart. Registry calls go through the controller's deadline-bound
`RegistryCalls`: a hung registry answers 503/504, it never hangs the admin route.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from bluegreen import metrics
from bluegreen.control import history
from bluegreen.control.controller import Controller
from bluegreen.control.errors import (
    NoCandidate,
    NoPreviousVersion,
    NotRejected,
    VersionNotFound,
    VersionRejected,
)
from bluegreen.logging import event
from bluegreen.registry import RegistryUnavailable, Target, UnknownVersion
from bluegreen.serving.lifecycle import DeployResult, Outcome

log = logging.getLogger("bluegreen.control")


class AdminActions:
    def __init__(self, controller: Controller) -> None:
        self.controller = controller
        self.manager = controller.manager
        self.registry = controller.registry
        self.calls = controller.calls

    # --- helpers ---------------------------------------------------------------------------
    async def _get(self, version: int) -> Target:
        try:
            return await self.calls(self.registry.get, version)
        except UnknownVersion as exc:
            raise VersionNotFound(f"version {version} does not exist") from exc

    async def _move_alias(self, entry: history.Entry, *, unless_top: bool) -> str | None:
        """History entry, then the alias. Best effort: the local change already happened;
        the answer says when the fleet cannot follow yet."""
        try:
            await self.controller.record(entry, unless_top=unless_top)
            await self.calls(
                lambda: self.registry.set_alias(entry.version, who=entry.who, why=entry.why)
            )
        except (RegistryUnavailable, UnknownVersion) as exc:
            event(log, "registry.alias.failed", logging.WARNING, version=entry.version,
                  error=str(exc)[:300])  # fmt: skip
            return str(exc)[:300]
        return None

    async def _deploy_vetted(self, target: Target, why: str) -> DeployResult:
        self.manager.cancel_load(target.version, why)
        result = await self.manager.deploy(self.controller.ref(target), canary=False)
        await self.controller.handle_all(result)  # a rejection is tagged before we answer
        if result.outcome is Outcome.REJECTED:
            raise VersionRejected(
                f"version {target.version} failed {result.stage}: {result.reason}"
            )
        if result.outcome is Outcome.TRANSIENT:
            raise RegistryUnavailable(result.reason)
        return result

    # --- actions ---------------------------------------------------------------------------
    async def promote(self, version: int | None, who: str) -> dict[str, Any]:
        live_before = self.controller.live_version()
        if version is None:
            async with self.controller.hold():
                ref = await self.manager.promote_candidate()
                if ref is None:
                    raise NoCandidate("there is no candidate to promote")
                entry = history.Entry(ref.version, live_before, history.Action.PROMOTE, who,
                                      "promoted candidate", time.time())  # fmt: skip
                alias_error = await self._move_alias(entry, unless_top=True)
            return {"version": ref.version, "from_version": live_before,
                    "alias_error": alias_error}  # fmt: skip
        target = await self._get(version)
        if target.rejected:
            raise VersionRejected(
                f"version {version} was rejected: {target.rejected} (unreject it first)"
            )
        self.controller.rejected.pop(version, None)
        async with self.controller.hold():
            result = await self._deploy_vetted(target, f"pinned by {who}")
            entry = history.Entry(version, live_before, history.Action.PIN, who, "pinned",
                                  time.time())  # fmt: skip
            alias_error = await self._move_alias(entry, unless_top=True)
        return {"version": version, "from_version": live_before,
                "outcome": result.outcome.value, "alias_error": alias_error}  # fmt: skip

    async def rollback(self, who: str) -> dict[str, Any]:
        """One step back in the registry-kept history, fleet-wide; never forward."""
        view = await self.calls(self.registry.control_view)
        infos = await self.calls(self.registry.list_versions)
        entries = history.parse(view.history)
        current = view.alias_version if view.alias_version is not None else (
            self.controller.live_version()
        )  # fmt: skip
        rejected = {i.version: i.rejected for i in infos if i.rejected}
        rejected.update(self.controller.rejected)
        known = {i.version for i in infos}
        while True:
            target_version = history.rollback_target(entries, current, rejected)
            if target_version is None:
                raise NoPreviousVersion("no previous version to roll back to")
            if target_version in known:
                break
            rejected[target_version] = "deleted from the registry"
        target = await self._get(target_version)
        retained = self.manager.retained()
        mode = "instant" if retained is not None and retained.version == target_version else (
            "reload"
        )  # fmt: skip
        async with self.controller.hold():
            result = await self._deploy_vetted(target, f"rollback by {who}")
            if result.outcome is Outcome.UNCHANGED:
                mode = "unchanged"  # this process already served it (it had not followed yet)
            metrics.ROLLBACKS.labels(self.registry.model_name).inc()
            entry = history.Entry(target_version, current, history.Action.ROLLBACK, who,
                                  "rollback", time.time())  # fmt: skip
            alias_error = await self._move_alias(entry, unless_top=False)
        event(log, "model.rollback", version=target_version, from_version=current, mode=mode)
        return {"version": target_version, "from_version": current, "mode": mode,
                "alias_error": alias_error}  # fmt: skip

    async def reject(self, version: int, reason: str, who: str) -> dict[str, Any]:
        """Tag the version rejected fleet-wide; if the alias names it, the fleet moves back to
        the last good version in the history (the controller's repair)."""
        await self._get(version)
        why = f"admin: {reason} ({who})"
        try:
            await self.calls(self.registry.tag_rejected, version, why)
        except UnknownVersion as exc:  # deleted meanwhile, or a value the registry refuses
            raise VersionNotFound(f"version {version} cannot be tagged: {exc}"[:300]) from exc
        self.controller.rejected.pop(version, None)
        cand = self.manager.candidate
        if cand is not None and cand.version == version:
            metrics.CANARY_DECISIONS.labels(self.registry.model_name, "aborted").inc()
            await self.manager.abort_candidate(reason=f"rejected by {who}")
        result = await self.controller.reconcile()  # repairs the alias if it names `version`
        return {"version": version, "rejected": why, "live_version": self.controller.live_version(),
                "reconcile": result.as_dict()}  # fmt: skip

    async def unreject(self, version: int, who: str) -> dict[str, Any]:
        target = await self._get(version)
        was = target.rejected or self.controller.rejected.get(version)
        if not was:
            raise NotRejected(f"version {version} is not rejected")
        audit = json.dumps({"who": who, "at": round(time.time(), 3), "was": was[:500]},
                           ensure_ascii=True)  # fmt: skip
        await self.calls(lambda: self.registry.clear_rejected(version, audit=audit))
        self.controller.rejected.pop(version, None)
        event(log, "model.unrejected", version=version, who=who, was=was[:300])
        return {"version": version, "was": was}

    async def abort_canary(self, who: str) -> dict[str, Any]:
        ref = await self.manager.abort_candidate(reason=f"aborted by {who}")
        if ref is None:
            raise NoCandidate("there is no canary to abort")
        await self.controller.on_rejected(ref, f"aborted by {who}", "canary")
        return {"aborted_version": ref.version}

    async def set_canary_percent(self, percent: float) -> dict[str, Any]:
        self.manager.set_canary_percent(percent)
        try:
            await self.calls(self.registry.set_canary_percent, percent)
            fleet_error = None
        except (RegistryUnavailable, UnknownVersion) as exc:
            fleet_error = str(exc)[:300]
        return {"percent": percent, "fleet_error": fleet_error}

    async def versions(self) -> dict[str, Any]:
        view = await self.calls(self.registry.control_view)
        infos = await self.calls(self.registry.list_versions)
        entries = history.parse(view.history)
        self.controller.history = entries
        in_history = history.versions_in(entries)
        return {
            "model": self.registry.model_name,
            "alias": {"name": self.registry.alias_name, "version": view.alias_version},
            "live_version": self.controller.live_version(),
            "history": [e.as_dict() for e in reversed(entries)],
            "versions": [
                {
                    "version": i.version,
                    "rejected": i.rejected or self.controller.rejected.get(i.version),
                    "created_at": i.created_at,
                    "in_history": i.version in in_history,
                }
                for i in infos
            ],
        }
