"""Policy: decide which version should serve and tell the slot manager; admin actions too.

The registry alias is the fleet's source of truth. Every process reconciles on its own: a full
poll every `poll_interval_s` (alias, then stage fallback) and a cheap control check every
`control_interval_s` (one `get_registered_model` call: alias target and canary tag). Admin
actions act locally at once and move the alias so that every other worker and replica converges
within one control interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

import attrs

from bluegreen import metrics
from bluegreen.logging import event
from bluegreen.registry import Registry, RegistryUnavailable, Target, UnknownVersion
from bluegreen.serving.lifecycle import DeployResult, Outcome, SlotManager
from bluegreen.serving.model_handle import ModelRef

log = logging.getLogger("bluegreen.poller")
T = TypeVar("T")


class ControlError(Exception):
    """An admin action that cannot be done in the current state (mapped to 4xx)."""

    status_code = 409


class NoCandidate(ControlError):
    pass


class NoPreviousVersion(ControlError):
    pass


class VersionNotFound(ControlError):
    status_code = 404


class VersionRejected(ControlError):
    status_code = 422


class ReconcileStatus(enum.StrEnum):
    DEPLOYED = "deployed"
    UNCHANGED = "unchanged"
    NO_TARGET = "no_target"
    SKIPPED_REJECTED = "skipped_rejected"
    FAILED = "failed"


@attrs.frozen
class ReconcileResult:
    status: ReconcileStatus
    version: int | None = None
    source: str | None = None
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def backoff_delay(failures: int, base: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with full jitter in [0.5, 1.5) of the nominal delay."""
    nominal = min(cap, base * 2.0 ** max(0, failures - 1))
    return float(nominal * (0.5 + rng.random()))


class Controller:
    def __init__(
        self,
        registry: Registry,
        manager: SlotManager,
        executor: Executor,
        *,
        poll_interval_s: float,
        control_interval_s: float,
        backoff_base_s: float,
        backoff_max_s: float,
    ) -> None:
        self.registry = registry
        self.manager = manager
        self._executor = executor
        self._poll_interval_s = poll_interval_s
        self._control_interval_s = control_interval_s
        self._backoff_base_s = backoff_base_s
        self._backoff_max_s = backoff_max_s
        self._wake = asyncio.Event()
        self._reconcile_lock = asyncio.Lock()
        self._rng = random.Random()
        self.rejected: dict[int, str] = {}
        """Versions this process rejected, remembered even if tagging the registry failed."""
        self.last_poll_ok: float | None = None
        self.last_error: str | None = None
        self.last_result: ReconcileResult | None = None
        self.ready_gate: asyncio.Event = asyncio.Event()
        """Set once bootstrapping (if any) is done; the loop waits for it."""
        self.ready_gate.set()

    async def _registry(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    # --- reconcile -------------------------------------------------------------------------
    async def reconcile(self) -> ReconcileResult:
        """Full poll: resolve the target and make it serve. Raises `RegistryUnavailable`.

        Serialised: a reconcile that resolved the registry while another one was loading the
        same version would load (and reject) it a second time."""
        async with self._reconcile_lock:
            return await self._reconcile_locked()

    async def _reconcile_locked(self) -> ReconcileResult:
        try:
            target = await self._registry(self.registry.resolve)
            view = await self._registry(self.registry.control_view)
        except RegistryUnavailable as exc:
            self._poll_failed(exc)
            raise
        self._poll_ok()
        self._apply_canary_percent(view.canary_percent)
        result = await self._converge(target)
        self.last_result = result
        event(log, "registry.poll", status=result.status.value, version=result.version,
              source=result.source, detail=result.detail,
              live_version=self._live_version())  # fmt: skip
        return result

    async def control_check(self) -> ReconcileResult | None:
        """Cheap check; escalates to a full reconcile only when something changed."""
        if self.manager.live is None:
            return await self.reconcile()
        try:
            view = await self._registry(self.registry.control_view)
        except RegistryUnavailable as exc:
            self._poll_failed(exc)
            raise
        self._poll_ok()
        self._apply_canary_percent(view.canary_percent)
        wanted = view.alias_version
        cand = self.manager.candidate
        if wanted is None or wanted in self.rejected:
            return None
        if wanted == self._live_version() and cand is None:
            return None
        # Something differs, or a canary runs: a full reconcile (two calls) also reads the
        # version's tags, so a candidate another process already vetted is promoted here too.
        return await self.reconcile()

    def _apply_canary_percent(self, percent: float | None) -> None:
        if percent is not None and percent != self.manager.canary_percent:
            self.manager.set_canary_percent(percent)

    async def _converge(self, target: Target | None) -> ReconcileResult:
        if target is None:
            return ReconcileResult(ReconcileStatus.NO_TARGET, detail="no servable version")
        reason = target.rejected or self.rejected.get(target.version)
        if reason:
            return ReconcileResult(
                ReconcileStatus.SKIPPED_REJECTED, target.version, target.source, reason
            )
        live, cand = self.manager.live, self.manager.candidate
        if live is not None and live.version == target.version and cand is not None:
            # The alias moved away from our candidate (another process rejected it, or an
            # admin pinned live): stop canarying it here too.
            await self.manager.abort_candidate(reason="alias no longer names the candidate")
        vetted = target.promoted_by is not None
        if vetted and cand is not None and cand.version == target.version:
            # Another process's canary passed (or an admin promoted it): follow at once
            # instead of waiting for this process's own window, which may see little traffic.
            await self.manager.promote_candidate()
            return ReconcileResult(
                ReconcileStatus.DEPLOYED, target.version, target.source, "vetted elsewhere"
            )
        result = await self._deploy_watching(self._ref(target), canary=not vetted)
        return self._from_deploy(result, target.source)

    async def _deploy_watching(self, ref: ModelRef, *, canary: bool) -> DeployResult:
        """Deploy, and while the load takes longer than a control interval keep reading the
        registry: when it wants another version, the load is abandoned (a stuck download or
        a `load_context` that never returns must not hold the next version back)."""
        task = asyncio.ensure_future(self.manager.deploy(ref, canary=canary))
        interval = self._control_interval_s or self._poll_interval_s
        try:
            while True:
                woken = asyncio.ensure_future(self._wake.wait())
                try:
                    await asyncio.wait({task, woken}, timeout=interval,
                                       return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
                finally:
                    woken.cancel()
                if task.done():
                    return task.result()
                self._wake.clear()  # an admin reload or webhook: look at the registry now
                if self.manager.loading is None:
                    continue  # past the load (smoke, drain): nothing to abandon
                with contextlib.suppress(RegistryUnavailable, UnknownVersion):
                    wanted = await self._registry(self.registry.resolve)
                    if (
                        wanted is not None
                        and wanted.version != ref.version
                        and not (wanted.rejected or self.rejected.get(wanted.version))
                    ):
                        # the deploy then ends SUPERSEDED, and _from_deploy wakes the loop
                        self.manager.cancel_load(wanted.version, wanted.source)
        except asyncio.CancelledError:
            task.cancel()
            raise

    def _ref(self, target: Target) -> ModelRef:
        return ModelRef(
            model_name=self.registry.model_name,
            version=target.version,
            uri=self.registry.model_uri(target.version),
            run_id=target.run_id,
            manifest_sha256=target.manifest_sha256,
        )

    def _from_deploy(self, result: DeployResult, source: str | None) -> ReconcileResult:
        if result.outcome is Outcome.SUPERSEDED:
            self._wake.set()
            return ReconcileResult(ReconcileStatus.UNCHANGED, result.version, source, result.reason)
        if result.outcome is Outcome.TRANSIENT:
            # The artifact store, not the version, failed: back off like a registry outage.
            raise RegistryUnavailable(result.reason)
        status = {
            Outcome.PROMOTED: ReconcileStatus.DEPLOYED,
            Outcome.CANARY: ReconcileStatus.DEPLOYED,
            Outcome.UNCHANGED: ReconcileStatus.UNCHANGED,
            Outcome.REJECTED: ReconcileStatus.FAILED,
        }[result.outcome]
        return ReconcileResult(status, result.version, source, result.reason)

    def _live_version(self) -> int | None:
        live = self.manager.live
        return live.version if live else None

    def _poll_ok(self) -> None:
        self.last_poll_ok = time.time()
        self.last_error = None
        metrics.REGISTRY_POLLS.labels("ok").inc()
        metrics.REGISTRY_LAST_SUCCESS.set(self.last_poll_ok)

    def _poll_failed(self, exc: BaseException) -> None:
        self.last_error = str(exc)[:500]
        metrics.REGISTRY_POLLS.labels("error").inc()
        event(log, "registry.poll.failed", logging.WARNING, error=self.last_error)

    # --- the loop --------------------------------------------------------------------------
    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        await self.ready_gate.wait()
        failures = 0
        next_full = 0.0
        while True:
            now = time.monotonic()
            full = now >= next_full or self._wake.is_set()
            self._wake.clear()
            try:
                if full:
                    await self.reconcile()
                    next_full = time.monotonic() + self._poll_interval_s
                else:
                    await self.control_check()
                failures = 0
                delay = next_full - time.monotonic()
                if self._control_interval_s > 0:
                    delay = min(delay, self._control_interval_s)
            except RegistryUnavailable:
                failures += 1
                delay = backoff_delay(
                    failures, self._backoff_base_s, self._backoff_max_s, self._rng
                )
                next_full = 0.0  # after an outage, do a full reconcile first
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                delay = backoff_delay(
                    failures, self._backoff_base_s, self._backoff_max_s, self._rng
                )
                event(log, "poller.error", logging.ERROR, error=f"{type(exc).__name__}: {exc}")
            # Not asyncio.wait_for: on Python 3.11 it swallows a cancel that lands in the same
            # loop turn as a wake, and shutdown would then wait a whole poll interval.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, delay)):
                    await self._wake.wait()

    # --- lifecycle listener ----------------------------------------------------------------
    async def on_rejected(self, ref: ModelRef, reason: str, stage: str) -> None:
        """Mark the version so every process skips it, and point the alias back at live."""
        self.rejected[ref.version] = f"{stage}: {reason}"
        live = self.manager.live
        try:
            await self._registry(self.registry.tag_rejected, ref.version, f"{stage}: {reason}")
            alias_now = await self._registry(self.registry.alias_version)
            if live is not None and live.version is not None and alias_now == ref.version:
                # The alias must always name a servable version, or a fresh worker would
                # come up with nothing to serve.
                await self._registry(self.registry.restore_alias, live.version, ref.version)
        except (RegistryUnavailable, UnknownVersion) as exc:
            event(log, "registry.tag.failed", logging.WARNING, version=ref.version,
                  error=str(exc)[:300])  # fmt: skip

    async def on_canary_passed(self, ref: ModelRef, reason: str) -> None:
        """Record the verdict so processes that start later promote it without a canary."""
        try:
            await self._registry(
                lambda: self.registry.mark_promoted(ref.version, who="bluegreen canary", why=reason)
            )
        except (RegistryUnavailable, UnknownVersion) as exc:
            event(log, "registry.tag.failed", logging.WARNING, version=ref.version,
                  error=str(exc)[:300])  # fmt: skip

    # --- admin actions ---------------------------------------------------------------------
    async def _move_alias(self, version: int, who: str, why: str) -> str | None:
        """Best effort: the local change already happened; report if the fleet can't follow."""
        try:
            await self._registry(lambda: self.registry.set_alias(version, who=who, why=why))
        except (RegistryUnavailable, UnknownVersion) as exc:
            event(log, "registry.alias.failed", logging.WARNING, version=version,
                  error=str(exc)[:300])  # fmt: skip
            return str(exc)[:300]
        return None

    async def promote(self, version: int | None, who: str) -> dict[str, Any]:
        if version is None:
            ref = await self.manager.promote_candidate()
            if ref is None:
                raise NoCandidate("there is no candidate to promote")
            alias_error = await self._move_alias(ref.version, who, "promoted candidate")
            return {"version": ref.version, "alias_error": alias_error}
        try:
            target = await self._registry(self.registry.get, version)
        except UnknownVersion as exc:
            raise VersionNotFound(f"version {version} does not exist") from exc
        if target.rejected:
            raise VersionRejected(f"version {version} was rejected: {target.rejected}")
        self.rejected.pop(version, None)
        self.manager.cancel_load(version, f"pinned by {who}")
        result = await self.manager.deploy(self._ref(target), canary=False)
        if result.outcome is Outcome.REJECTED:
            raise VersionRejected(f"version {version} failed {result.stage}: {result.reason}")
        if result.outcome is Outcome.TRANSIENT:
            raise RegistryUnavailable(result.reason)
        alias_error = await self._move_alias(version, who, "pinned")
        return {"version": version, "outcome": result.outcome.value, "alias_error": alias_error}

    async def rollback(self, who: str) -> dict[str, Any]:
        # Converge first: an admin action elsewhere in the fleet (a pin, another rollback) may
        # have moved the alias since this process last looked, and "previous" must mean the
        # version before the one the fleet serves, not before this process's stale live one.
        # With the registry down, the local history is the best there is.
        with contextlib.suppress(RegistryUnavailable):
            await self.reconcile()
        previous = self.manager.previous
        if previous is None:
            raise NoPreviousVersion("no previous version to roll back to")
        ref = await self.manager.rollback_instant()
        mode = "instant"
        if ref is None:
            mode = "reload"
            result = await self.manager.deploy(previous, canary=False)
            if result.outcome not in {Outcome.PROMOTED, Outcome.UNCHANGED}:
                raise VersionRejected(
                    f"previous version {previous.version} failed: {result.reason}"
                )
            metrics.ROLLBACKS.labels(self.registry.model_name).inc()
            ref = previous
        alias_error = await self._move_alias(ref.version, who, "rollback")
        event(log, "model.rollback", version=ref.version, mode=mode)
        return {"version": ref.version, "mode": mode, "alias_error": alias_error}

    async def abort_canary(self, who: str) -> dict[str, Any]:
        ref = await self.manager.abort_candidate(reason=f"aborted by {who}")
        if ref is None:
            raise NoCandidate("there is no canary to abort")
        await self.on_rejected(ref, f"aborted by {who}", "canary")
        return {"aborted_version": ref.version}

    async def set_canary_percent(self, percent: float) -> dict[str, Any]:
        self.manager.set_canary_percent(percent)
        try:
            await self._registry(self.registry.set_canary_percent, percent)
            fleet_error = None
        except (RegistryUnavailable, UnknownVersion) as exc:
            fleet_error = str(exc)[:300]
        return {"percent": percent, "fleet_error": fleet_error}
