"""The reconcile loop: read the registry, plan, let the slot manager act, then write the marks.

The registry alias is the fleet's source of truth. Every process reconciles on its own: a full
poll every `poll_interval_s` (alias, then stage fallback) and a cheap control check every
`control_interval_s` (one `get_registered_model` call: alias target, canary tag and the
promotion history). What to do is decided by the pure `planner.plan`; the `SlotManager` does
it; registry tags, history entries and alias moves are written here, after the manager's
lock is released. Rejections and canary verdicts reach this controller as events on the
manager's queue, never as calls made from inside the manager. Every registry call has a
deadline (`RegistryCalls`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import attrs

from bluegreen import metrics
from bluegreen.control import history
from bluegreen.control.calls import RegistryCalls
from bluegreen.control.planner import (
    AbortCandidate,
    Action,
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
from bluegreen.logging import event
from bluegreen.registry import ControlView, Registry, RegistryUnavailable, Target, UnknownVersion
from bluegreen.serving.lifecycle import (
    CanaryPassed,
    DeployResult,
    ManagerEvent,
    Outcome,
    Rejected,
    SlotManager,
)
from bluegreen.serving.model_handle import ModelRef

log = logging.getLogger("bluegreen.control")
SYSTEM = "bluegreen"
"""`who` of the history entries the controller writes on its own."""


@attrs.frozen
class ReconcileResult:
    status: ReconcileStatus
    version: int | None = None
    source: str | None = None
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def _retrieve(task: asyncio.Future[ReconcileResult]) -> None:
    """A reconcile nobody waits for any more: its outcome is logged by `reconcile` itself (or
    by the loop's next poll); reading the exception keeps asyncio from reporting it."""
    if not task.cancelled():
        task.exception()


def backoff_delay(failures: int, base: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with full jitter in [0.5, 1.5) of the nominal delay."""
    nominal = min(cap, base * 2.0 ** max(0, failures - 1))
    return float(nominal * (0.5 + rng.random()))


class Controller:
    def __init__(
        self,
        registry: Registry,
        manager: SlotManager,
        calls: RegistryCalls,
        *,
        poll_interval_s: float,
        control_interval_s: float,
        backoff_base_s: float,
        backoff_max_s: float,
        history_max: int = 100,
    ) -> None:
        self.registry = registry
        self.manager = manager
        self.calls = calls
        self._poll_interval_s = poll_interval_s
        self._control_interval_s = control_interval_s
        self._backoff_base_s = backoff_base_s
        self._backoff_max_s = backoff_max_s
        self.history_max = history_max
        self._wake = asyncio.Event()
        self._reconcile_lock = asyncio.Lock()
        self._rng = random.Random()
        self._holds = 0
        self.rejected: dict[int, str] = {}
        """Versions this process rejected whose `bluegreen.rejected` tag is not written yet
        (the registry was unreachable): skipped here, and tagged on the next repair."""
        self.history: list[history.Entry] = []
        """The promotion history as last read from the registry, oldest first."""
        self.last_poll_ok: float | None = None
        self.last_error: str | None = None
        self.last_result: ReconcileResult | None = None
        self.ready_gate: asyncio.Event = asyncio.Event()
        """Set once bootstrapping (if any) is done; the loop waits for it."""
        self.ready_gate.set()

    # --- reconcile -------------------------------------------------------------------------
    async def reconcile(self) -> ReconcileResult:
        """Full poll: resolve the target and make it serve. Raises `RegistryUnavailable`.

        Serialised: a reconcile that resolved the registry while another one was loading the
        same version would load (and reject) it a second time."""
        async with self._reconcile_lock:
            return await self._reconcile_locked()

    async def reload(self, wait_s: float) -> ReconcileResult:
        """An admin's "look at the registry now", answered within `wait_s`.

        When the loop is reconciling, it is woken first: a deploy it is watching reads the
        registry again and abandons a load the registry no longer wants (a stuck one too),
        which also frees the reconcile lock this call then takes. (When it is not, this call's
        own reconcile does the work, and its answer says what it did.) When its reconcile
        takes longer than `wait_s` (a stuck load the registry still wants holds it until the
        load deadline), the answer is IN_PROGRESS and the reconcile goes on, rather than the
        admin's request hanging."""
        if self._reconcile_lock.locked():
            self.wake()
        task = asyncio.ensure_future(self.reconcile())
        done, _ = await asyncio.wait({task}, timeout=wait_s)
        if task in done:
            return task.result()
        task.add_done_callback(_retrieve)
        loading = self.manager.loading
        detail = f"still reconciling after {wait_s:g} s"
        if loading is not None:
            detail += f" (loading version {loading.version})"
        return ReconcileResult(
            ReconcileStatus.IN_PROGRESS, loading.version if loading else None, None,
            f"{detail}; /admin/slots shows how it ends",
        )  # fmt: skip

    async def _reconcile_locked(self) -> ReconcileResult:
        try:
            target = await self.calls(self.registry.resolve)
            view = await self.calls(self.registry.control_view)
            rejected = dict(self.rejected)
            if target is not None and (target.rejected or target.version in rejected):
                # A repair goes to the last good version in the history: which of those are
                # rejected is in their version tags (one more call, only on this path).
                for info in await self.calls(self.registry.list_versions):
                    if info.rejected:
                        rejected.setdefault(info.version, info.rejected)
        except RegistryUnavailable as exc:
            self._poll_failed(exc)
            raise
        self._poll_ok()
        self._observe(view)
        desired = Desired(target, rejected, self.history, view.alias_version)
        action = plan(desired, self.view())
        result = await self._apply(action, target)
        self.last_result = result
        event(log, "registry.poll", status=result.status.value, version=result.version,
              source=result.source, detail=result.detail,
              live_version=self.live_version())  # fmt: skip
        return result

    async def control_check(self) -> ReconcileResult | None:
        """Cheap check; escalates to a full reconcile only when something changed."""
        if self.manager.live is None:
            return await self.reconcile()
        try:
            view = await self.calls(self.registry.control_view)
        except RegistryUnavailable as exc:
            self._poll_failed(exc)
            raise
        self._poll_ok()
        self._observe(view)
        wanted = view.alias_version
        live = self.live_version()
        if wanted is None:
            return None
        if wanted in self.rejected and wanted == live:
            return None  # nothing better is known here; the next full poll looks again
        if wanted == live and self.manager.candidate is None:
            return None
        # Something differs, or a canary runs: a full reconcile (two calls) also reads the
        # version's tags, so a candidate another process already vetted is promoted here too,
        # and an alias left on a rejected version is repaired.
        return await self.reconcile()

    def view(self) -> ManagerView:
        cand = self.manager.candidate
        return ManagerView(self.live_version(), cand.version if cand else None)

    def _observe(self, view: ControlView) -> None:
        if view.canary_percent is not None and view.canary_percent != self.manager.canary_percent:
            self.manager.set_canary_percent(view.canary_percent)
        self.history = history.parse(view.history)

    async def _apply(self, action: Action, target: Target | None) -> ReconcileResult:
        source = target.source if target is not None else None
        if isinstance(action, Hold):
            return ReconcileResult(action.status, action.version, source, action.detail)
        assert target is not None  # every other action follows from a target
        if isinstance(action, AbortCandidate):
            await self.manager.abort_candidate(reason=action.reason)
            return ReconcileResult(ReconcileStatus.UNCHANGED, target.version, source, action.reason)
        if isinstance(action, PromoteCandidate):
            # Another process's canary passed (or an admin promoted it): follow at once
            # instead of waiting for this process's own window, which may see little traffic.
            await self.manager.promote_candidate()
            return ReconcileResult(
                ReconcileStatus.DEPLOYED, target.version, source, "vetted elsewhere"
            )
        if isinstance(action, Deploy):
            result = await self._deploy_watching(self.ref(target), canary=action.canary)
            await self.handle_all(result)
            if result.outcome is Outcome.PROMOTED:
                await self._record_follow(target)
            return self._from_deploy(result, source)
        return await self._repair(action, source)

    async def _repair(self, action: Repair, source: str | None) -> ReconcileResult:
        """Serve the last good version, then move the alias there (and finish a rejection
        whose tag was never written): repeated on every reconcile until the registry agrees."""
        bad = action.rejected_version
        cand = self.manager.candidate
        if cand is not None and cand.version != action.version:
            await self.manager.abort_candidate(reason=f"version {bad} is rejected")
        try:
            good = await self.calls(self.registry.get, action.version)
        except UnknownVersion:
            return ReconcileResult(
                ReconcileStatus.SKIPPED_REJECTED, bad, source,
                f"{action.reason}; version {action.version} no longer exists",
            )  # fmt: skip
        result = await self.manager.deploy(self.ref(good), canary=False)
        await self.handle_all(result)
        if result.outcome not in {Outcome.PROMOTED, Outcome.UNCHANGED}:
            return self._from_deploy(result, "repair")
        detail = f"version {bad} is rejected ({action.reason}); serving {action.version}"
        try:
            if bad in self.rejected:
                await self.calls(self.registry.tag_rejected, bad, self.rejected[bad])
                self.rejected.pop(bad, None)
            await self._move_off_rejected(bad, action.reason, action.version)
        except (RegistryUnavailable, UnknownVersion) as exc:
            event(log, "registry.repair.failed", logging.WARNING, version=bad,
                  error=str(exc)[:300])  # fmt: skip
            detail += f"; alias not moved yet: {str(exc)[:200]}"
        return ReconcileResult(ReconcileStatus.REPAIRED, action.version, source, detail)

    async def _move_off_rejected(
        self, bad: int, reason: str, good: int, view: ControlView | None = None
    ) -> None:
        """History entry first, then the alias: if the alias move is lost, the replayed
        history still ends where the alias is (see `history.replay`)."""
        await self.record(
            history.Entry(good, bad, history.Action.REPAIR, SYSTEM,
                          f"version {bad} rejected: {reason}", time.time()),
            view=view, event_id=f"repair:{bad}:{good}",
        )  # fmt: skip
        await self.calls(self.registry.restore_alias, good, bad)
        event(log, "registry.alias.repaired", version=good, rejected_version=bad)

    async def _record_follow(self, target: Target) -> None:
        action = follow_action(history.top(self.history), target.version)
        if action is None:
            return
        previous = self.manager.previous
        why = "first version served" if action is history.Action.BOOTSTRAP else (
            f"followed {target.source}"
        )  # fmt: skip
        entry = history.Entry(
            target.version, previous.version if previous else None, action, SYSTEM, why,
            time.time(),
        )  # fmt: skip
        try:
            await self.record(entry, unless_top=True, only_if_alias=True,
                              event_id=f"{action.value}:{target.version}")  # fmt: skip
        except (RegistryUnavailable, UnknownVersion) as exc:
            event(log, "registry.history.failed", logging.WARNING, version=target.version,
                  error=str(exc)[:300])  # fmt: skip

    async def record(
        self,
        entry: history.Entry,
        *,
        unless_top: bool = False,
        only_if_alias: bool = False,
        view: ControlView | None = None,
        event_id: str | None = None,
    ) -> bool:
        """Append a history entry (read fresh first). With `unless_top`, nothing is written
        when the log already ends on the entry's version: several processes that follow the
        same alias move leave one entry, not one each. With `only_if_alias`, nothing is
        written unless the alias still names it: a process that finishes a slow load after
        the fleet moved on (a rollback meanwhile) must not log a step forward. `view`: one
        just read, to save the call. `event_id`: the same for every process that records
        this event on its own (see `Registry.append_history`)."""
        if view is None:
            view = await self.calls(self.registry.control_view)
        current = history.parse(view.history)
        stale = only_if_alias and view.alias_version != entry.version
        if stale or (unless_top and history.top(current) == entry.version):
            self.history = current
            return False
        key = await self.calls(
            lambda: self.registry.append_history(
                entry.to_json(), self.history_max, view.history, event_id=event_id
            )
        )
        self.history = [*current, attrs.evolve(entry, key=key)][-self.history_max :]
        metrics.HISTORY_ENTRIES.labels(entry.action.value).inc()
        event(log, "history.recorded", action=entry.action.value, version=entry.version,
              from_version=entry.from_version, who=entry.who, why=entry.why)  # fmt: skip
        return True

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
                    wanted = await self.calls(self.registry.resolve)
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

    def ref(self, target: Target) -> ModelRef:
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

    def live_version(self) -> int | None:
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

    # --- manager events (rejections, canary verdicts), handled with no manager lock held -
    async def handle_all(self, result: DeployResult) -> None:
        """The events a deploy returned (its rejection), with the manager's lock released."""
        for item in result.events:
            await self.handle(item)

    async def _drain_events(self) -> None:
        events = self.manager.events
        while True:
            item = await events.get()
            try:
                await self.handle(item)
            except Exception as exc:  # one bad event must not stop the others being recorded
                event(log, "controller.event.failed", logging.ERROR,
                      error=f"{type(exc).__name__}: {exc}"[:300])  # fmt: skip

    async def handle(self, item: ManagerEvent) -> None:
        if isinstance(item, Rejected):
            await self.on_rejected(item.ref, item.reason, item.stage)
        elif isinstance(item, CanaryPassed):
            await self.on_canary_passed(item.ref, item.reason)

    async def on_rejected(self, ref: ModelRef, reason: str, stage: str) -> None:
        """Tag the version so every process skips it, and move the alias off it."""
        why = f"{stage}: {reason}"
        self.rejected[ref.version] = why
        try:
            await self.calls(self.registry.tag_rejected, ref.version, why)
            self.rejected.pop(ref.version, None)  # the registry holds it now
            # Read after the tag, not before: an admin may have moved the alias meanwhile.
            view = await self.calls(self.registry.control_view)
            self.history = history.parse(view.history)
            if view.alias_version == ref.version:
                # The alias must always name a servable version, or a fresh worker would
                # come up with nothing to serve.
                live = self.live_version()
                good = history.last_good(self.history, ref.version, {ref.version: why})
                good = good if good is not None else live
                if good is not None and good != ref.version:
                    await self._move_off_rejected(ref.version, why, good, view)
        except (RegistryUnavailable, UnknownVersion) as exc:
            event(log, "registry.tag.failed", logging.WARNING, version=ref.version,
                  error=str(exc)[:300])  # fmt: skip

    async def on_canary_passed(self, ref: ModelRef, reason: str) -> None:
        """Record the verdict so processes that start later promote it without a canary."""
        try:
            await self.calls(
                lambda: self.registry.mark_promoted(ref.version, who="bluegreen canary", why=reason)
            )
            previous = self.manager.previous
            await self.record(
                history.Entry(ref.version, previous.version if previous else None,
                              history.Action.CANARY, "bluegreen canary", reason, time.time()),
                unless_top=True, event_id=f"canary:{ref.version}",
            )  # fmt: skip
        except (RegistryUnavailable, UnknownVersion) as exc:
            event(log, "registry.tag.failed", logging.WARNING, version=ref.version,
                  error=str(exc)[:300])  # fmt: skip

    # --- the loop --------------------------------------------------------------------------
    def wake(self) -> None:
        self._wake.set()

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        """While an admin action changes the local version and then the alias, the loop does
        not reconcile: it would see the old alias and undo the change in between."""
        self._holds += 1
        try:
            yield
        finally:
            self._holds -= 1

    async def run(self) -> None:
        await self.ready_gate.wait()
        drain = asyncio.create_task(self._drain_events())
        try:
            await self._loop()
        finally:
            drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drain

    async def _loop(self) -> None:
        failures = 0
        next_full = 0.0
        while True:
            if self._holds:
                # An admin action is changing the version: a wake meanwhile stays set for after.
                await asyncio.sleep(0.05)
                continue
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
                event(log, "controller.error", logging.ERROR,
                      error=f"{type(exc).__name__}: {exc}")  # fmt: skip
            # Not asyncio.wait_for: on Python 3.11 it swallows a cancel that lands in the same
            # loop turn as a wake, and shutdown would then wait a whole poll interval.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, delay)):
                    await self._wake.wait()
