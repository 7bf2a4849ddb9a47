"""The manager: load → smoke → (canary) → promote → drain → free, one transition at a time.

Like TF Serving's availability-preserving policy, a new version is fully loaded and checked
before the old one stops serving, and the old one is released only after its last request.
"""

from __future__ import annotations

import asyncio
import enum
import gc
import logging
import secrets
import time
import weakref
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from typing import Any, Protocol, TypeVar

import attrs

from bluegreen import metrics, tracing
from bluegreen.gil import SwitchInterval
from bluegreen.heap import malloc_trim
from bluegreen.logging import event
from bluegreen.loop_lag import WindowLag
from bluegreen.serving.assignment import KEY_BYTES
from bluegreen.serving.canary import Decision, judge
from bluegreen.serving.model_handle import LoadedModel, ModelRef
from bluegreen.serving.router import Router, Snapshot
from bluegreen.serving.slot import Slot, SlotState
from bluegreen.serving.smoke import SmokeFailed, SmokeReport, run_smoke
from bluegreen.settings import CanarySettings, LifecycleSettings, RegistrySettings
from bluegreen.threads import DaemonExecutor

T = TypeVar("T")

log = logging.getLogger("bluegreen.lifecycle")


class Outcome(enum.StrEnum):
    PROMOTED = "promoted"
    CANARY = "canary"
    REJECTED = "rejected"
    UNCHANGED = "unchanged"
    TRANSIENT = "transient"
    """Load failed for a reason outside the version (registry/artifact store unreachable, the
    loader crashed, was killed or ran past its deadline): retried later, never rejected."""
    SUPERSEDED = "superseded"
    """A newer version was wanted while this one loaded: its load was abandoned."""


@attrs.frozen
class Rejected:
    """A version failed load, verification, smoke or its canary and no longer serves here."""

    ref: ModelRef
    reason: str
    stage: str


@attrs.frozen
class CanaryPassed:
    ref: ModelRef
    reason: str


ManagerEvent = Rejected | CanaryPassed
"""What the manager tells the control layer, which it never calls into: a deploy returns its
events in its `DeployResult`; a background canary verdict goes on `SlotManager.events`. The
controller writes registry tags for them with the manager's lock released (serving never
calls MLflow)."""


@attrs.frozen
class DeployResult:
    outcome: Outcome
    version: int | None
    reason: str = ""
    stage: str = ""
    """Where a rejection happened: load, smoke or canary."""
    events: tuple[ManagerEvent, ...] = ()


class TransientLoadError(Exception):
    """Raised by a loader when the failure is the environment's, not the version's."""


class LoadRefused(Exception):
    """Raised by a loader when the version itself is bad: it is rejected at ``stage``
    (``integrity``: its files do not match its manifest; ``untrusted``: it would run code we
    are not allowed to run; ``load``: anything else about the version)."""

    def __init__(self, stage: str, detail: str) -> None:
        super().__init__(detail)
        self.stage = stage


class Loader(Protocol):
    """Blocking; called on the load thread. ``abort`` (optional) may be called from the event
    loop to end a load in progress, which then raises `TransientLoadError`."""

    def __call__(self, ref: ModelRef, /) -> LoadedModel: ...


class _Superseded(Exception):
    def __init__(self, by: str) -> None:
        super().__init__(by)
        self.by = by


class LagProbe(Protocol):
    """Measures event-loop stalls between `open_window` and `close_window`."""

    def open_window(self) -> None: ...

    def close_window(self) -> WindowLag | None: ...


@attrs.frozen
class LifecycleConfig:
    """What the slot manager is told: the settings sections it acts on (whose defaults are the
    only defaults), plus what the process resolves at start."""

    model_name: str = attrs.field(factory=lambda: RegistrySettings().model_name)
    lifecycle: LifecycleSettings = attrs.field(factory=LifecycleSettings)
    canary: CanarySettings = attrs.field(factory=CanarySettings)
    canary_check_interval_s: float = 0.5
    canary_key: bytes = attrs.field(factory=lambda: secrets.token_bytes(KEY_BYTES), repr=False)
    """Secret of the keyed hash that assigns client keys to the canary: the same in every
    process that should agree (`assignment.resolve_key`)."""


class SlotManager:
    def __init__(
        self,
        config: LifecycleConfig,
        loader: Loader,
        load_executor: Executor,
        lag_probe: LagProbe | None = None,
    ) -> None:
        self.config = config
        self._lag_probe = lag_probe
        self._loading: ModelRef | None = None
        self._supersede = asyncio.Event()
        self._superseded_by = ""
        self._window_open = False
        self._switch_interval = SwitchInterval(config.lifecycle.swap_switch_interval_ms / 1000)
        self._load_thread: DaemonExecutor | None = None
        self.router = Router()
        self.slots = (Slot("blue"), Slot("green"))
        self.previous: ModelRef | None = None
        self.canary_percent = config.canary.percent
        self._loader = loader
        self._load_executor = load_executor
        self.events: asyncio.Queue[ManagerEvent] = asyncio.Queue()
        """Background canary verdicts (rejections, passes), in order, for the controller."""
        self._lock = asyncio.Lock()
        self._drains: dict[str, asyncio.Task[None]] = {}
        self._canary_task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[object]] = set()
        self.last_failure: str | None = None

    # --- views -----------------------------------------------------------------------------
    @property
    def live(self) -> Slot | None:
        return self.router.snapshot.live

    @property
    def candidate(self) -> Slot | None:
        return self.router.snapshot.candidate

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    def retained(self) -> Slot | None:
        return next((s for s in self.slots if s.state is SlotState.RETAINED), None)

    def describe(self) -> dict[str, object]:
        snap = self.router.snapshot
        return {
            "live": snap.live.name if snap.live else None,
            "candidate": snap.candidate.name if snap.candidate else None,
            "canary_share": snap.canary_share,
            "canary_percent": self.canary_percent,
            "previous_version": self.previous.version if self.previous else None,
            "last_failure": self.last_failure,
            "slots": [s.describe() for s in self.slots],
        }

    def _snapshot(
        self, live: Slot | None, candidate: Slot | None = None, share: float = 0.0
    ) -> Snapshot:
        return Snapshot(live, candidate, share, key=self.config.canary_key)

    # --- deploy ----------------------------------------------------------------------------
    async def deploy(self, ref: ModelRef, *, canary: bool = True) -> DeployResult:
        """Make `ref` serve (or canary) unless it already does. Serialised with other changes."""
        async with self._lock:
            unchanged = self._unchanged(ref)
            if unchanged is not None:
                # No span: the control loop asks again on every tick while a canary runs.
                return unchanged
            with tracing.span("deploy", self._attributes(ref.version)) as span:
                result = await self._deploy_locked(ref, canary=canary)
                outcome = {
                    "bluegreen.outcome": result.outcome.value,
                    "bluegreen.stage": result.stage or None,
                }
                tracing.set_attributes(span, outcome)
                if result.outcome in (Outcome.REJECTED, Outcome.TRANSIENT):
                    tracing.fail(span, result.reason)
                return result

    def _attributes(
        self, version: int | None, slot: Slot | None = None
    ) -> dict[str, tracing.AttributeValue | None]:
        return {
            tracing.MODEL: self.config.model_name,
            tracing.VERSION: version,
            tracing.SLOT: slot.name if slot is not None else None,
        }

    def _unchanged(self, ref: ModelRef) -> DeployResult | None:
        live, cand = self.live, self.candidate
        if live is not None and live.version == ref.version:
            return DeployResult(Outcome.UNCHANGED, ref.version, "already live")
        if cand is not None and cand.version == ref.version:
            return DeployResult(Outcome.UNCHANGED, ref.version, "already the candidate")
        return None

    async def _deploy_locked(self, ref: ModelRef, *, canary: bool) -> DeployResult:
        cand = self.candidate
        retained = self.retained()
        if retained is not None and retained.version == ref.version:
            self._promote(retained, reason="retained version requested")
            return DeployResult(Outcome.PROMOTED, ref.version, "instant flip to retained slot")
        if cand is not None:
            await self._end_candidate(cand, reason=f"superseded by version {ref.version}")

        slot = await self._claim_idle_slot()
        slot.transition(SlotState.LOADING)
        event(log, "model.load.start", version=ref.version, slot=slot.name, uri=ref.uri)
        metrics.MODEL_LOAD_TOTAL.labels(self.config.model_name).inc()
        self._open_swap_window()
        started = time.perf_counter()
        try:
            # An exception leaving the span marks it failed, whichever branch handles it.
            with tracing.span("load", self._attributes(ref.version, slot)):
                model = await self._load(ref)
        except _Superseded as exc:
            slot.transition(SlotState.EMPTY)
            event(log, "model.load.superseded", logging.WARNING, version=ref.version,
                  slot=slot.name, by=exc.by)  # fmt: skip
            self._close_swap_window(ref.version, "superseded")
            return DeployResult(Outcome.SUPERSEDED, ref.version, f"superseded by {exc.by}")
        except (TransientLoadError, TimeoutError) as exc:
            slot.transition(SlotState.EMPTY)
            reason = (
                f"load exceeded {self.config.lifecycle.load_timeout_s:g}s"
                if isinstance(exc, TimeoutError)
                else str(exc)
            )
            metrics.MODEL_LOAD_TRANSIENT.labels(self.config.model_name).inc()
            event(log, "model.load.transient", logging.WARNING, version=ref.version,
                  slot=slot.name, error=reason)  # fmt: skip
            self._close_swap_window(ref.version, "transient")
            return DeployResult(Outcome.TRANSIENT, ref.version, reason, "load")
        except LoadRefused as exc:
            slot.transition(SlotState.EMPTY)
            self._close_swap_window(ref.version, "rejected")
            return self._reject(slot, ref, str(exc)[:500], exc.stage)
        except Exception as exc:
            slot.transition(SlotState.EMPTY)
            self._close_swap_window(ref.version, "rejected")
            return self._reject(slot, ref, f"{type(exc).__name__}: {exc}"[:500], "load")
        load_s = time.perf_counter() - started
        metrics.MODEL_LOAD_DURATION.labels(self.config.model_name).observe(load_s)
        event(log, "model.load.end", version=ref.version, slot=slot.name,
              duration_s=round(load_s, 3), fast_path=model.fast_path)  # fmt: skip

        slot.transition(SlotState.SMOKE)
        loop = asyncio.get_running_loop()
        try:
            with tracing.span("smoke", self._attributes(ref.version, slot)):
                report = await loop.run_in_executor(self._load_executor, self._smoke, model)
        except SmokeFailed as exc:
            reason = str(exc)
            held = [model]
            # The traceback's frames hold the model too: drop them, so that it is freed on
            # the smoke thread and not here when the exception goes.
            exc.__traceback__ = None
            del model, exc
            slot.transition(SlotState.EMPTY)
            # No gc.collect() here: a full collection holds the GIL for hundreds of ms with
            # mlflow's heap and stalls every request (measured: p99 x6 during rejections).
            await self._off_loop(self._discard, held)
            self._close_swap_window(ref.version, "rejected")
            return self._reject(slot, ref, reason, "smoke")
        event(log, "model.smoke.passed", version=ref.version, slot=slot.name,
              golden_accuracy=report.golden_accuracy,
              median_single_ms=round(report.median_single_ms, 3))  # fmt: skip
        metrics.MODEL_LOAD_SUCCESS_TOTAL.labels(self.config.model_name).inc()
        slot.install(model)
        del model

        if canary and self.canary_percent > 0 and self.live is not None:
            self._start_canary(slot)
            self._close_swap_window(ref.version, "canary")
            return DeployResult(Outcome.CANARY, ref.version, f"canary at {self.canary_percent}%")
        had_live = self.live is not None
        self._promote(slot, reason="smoke passed")
        if not had_live:
            self._close_swap_window(ref.version, "promoted")
        # else: the window closes once the old version is drained and freed (_drain)
        return DeployResult(Outcome.PROMOTED, ref.version, "smoke passed")

    async def _load(self, ref: ModelRef) -> LoadedModel:
        """The loader on the load thread, until it answers, times out or is superseded."""
        self._supersede = asyncio.Event()
        self._loading = ref
        if self._load_thread is None:
            self._load_thread = DaemonExecutor(1, "model-load")
        load = asyncio.wrap_future(self._load_thread.submit(self._loader, ref))
        superseded = asyncio.ensure_future(self._supersede.wait())
        waiters: set[asyncio.Future[Any]] = {load, superseded}
        try:
            done, _ = await asyncio.wait(
                waiters,
                timeout=self.config.lifecycle.load_timeout_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if load in done:
                return load.result()
            self._abort_loader()
            if superseded in done:
                raise _Superseded(self._superseded_by)
            raise TimeoutError
        except asyncio.CancelledError:
            self._abort_loader()  # shutting down: the child must not outlive the load
            raise
        finally:
            superseded.cancel()
            self._loading = None
            if not load.done():
                # Abandoned: a generic pyfunc's `load_context` may never return, and its thread
                # with it. The next load gets a new thread instead of queueing behind it (one
                # reused thread otherwise: each new thread would take a malloc arena of its own,
                # and freed models' pages would pile up across them).
                load.cancel()
                if self._load_thread is not None:
                    self._load_thread.shutdown(wait=False)
                    self._load_thread = None

    def _abort_loader(self) -> None:
        abort = getattr(self._loader, "abort", None)
        if callable(abort):
            abort()

    def cancel_load(self, wanted: int, why: str = "") -> bool:
        """Abandon a load in progress unless it is of ``wanted``: a stuck or slow load must
        never hold the next version back. True when a load was cancelled."""
        loading = self._loading
        if loading is None or loading.version == wanted:
            return False
        self._superseded_by = f"version {wanted}" + (f" ({why})" if why else "")
        self._supersede.set()
        return True

    @property
    def loading(self) -> ModelRef | None:
        return self._loading

    # --- swap windows: how long the event loop stalled while a version came in ------------
    def _open_swap_window(self) -> None:
        if self._window_open:
            return
        self._window_open = True
        self._switch_interval.shorten()
        if self._lag_probe is not None:
            self._lag_probe.open_window()

    def _close_swap_window(self, version: int | None, outcome: str) -> None:
        if not self._window_open:
            return  # e.g. the drain after a rollback: no version came in
        self._window_open = False
        self._switch_interval.restore()
        if self._lag_probe is None:
            return
        lag = self._lag_probe.close_window()
        if lag is None:
            return
        metrics.SWAP_LOOP_LAG_MAX.set(lag.max_s)
        own = None if lag.max_own_s is None else round(lag.max_own_s * 1000, 3)
        event(log, "swap.loop_lag", version=version, outcome=outcome,
              max_lag_ms=round(lag.max_s * 1000, 3), max_own_stall_ms=own)  # fmt: skip

    def _smoke(self, model: LoadedModel) -> SmokeReport:
        return run_smoke(
            model,
            latency_budget_ms=self.config.lifecycle.smoke_latency_budget_ms,
            min_golden_accuracy=self.config.lifecycle.smoke_min_golden_accuracy,
        )

    async def _claim_idle_slot(self) -> Slot:
        live = self.live
        slot = next(s for s in self.slots if s is not live)
        drain = self._drains.get(slot.name)
        if drain is not None:
            await asyncio.shield(drain)
        if slot.state is SlotState.RETAINED:
            await self._free(slot)
        return slot

    def _reject(self, slot: Slot, ref: ModelRef, reason: str, stage: str) -> DeployResult:
        slot.last_failure = f"version {ref.version} {stage}: {reason}"
        self.last_failure = slot.last_failure
        labels = {
            "load": "load_error", "prepare": "load_error", "integrity": "integrity",
            "untrusted": "untrusted", "smoke": "smoke_failed", "canary": "canary_rejected",
        }  # fmt: skip
        reason_label = labels.get(stage, stage)
        metrics.MODEL_LOAD_FAILURES.labels(self.config.model_name, reason_label).inc()
        metrics.MODEL_LAST_FAILURE_TIMESTAMP.labels(self.config.model_name).set(time.time())
        event(log, "model.rejected", logging.ERROR, version=ref.version, slot=slot.name,
              stage=stage, reason=reason)  # fmt: skip
        return DeployResult(
            Outcome.REJECTED, ref.version, reason, stage, (Rejected(ref, reason, stage),)
        )

    # --- promote / drain / free ------------------------------------------------------------
    def _promote(self, slot: Slot, *, reason: str) -> None:
        old = self.live
        attributes = self._attributes(slot.version, slot)
        attributes["bluegreen.previous_version"] = old.version if old else None
        # The drain task spawned here inherits this span: drain and free are its children.
        with tracing.span("promote", attributes):
            slot.transition(SlotState.LIVE)
            self._stop_canary_task()
            self.router.publish(self._snapshot(slot))
            metrics.CANARY_SHARE.set(0)
            name = self.config.model_name
            metrics.MODEL_VERSION_INFO.labels(name, str(slot.version), slot.name).set(1)
            if old is not None and old.ref is not None:
                metrics.MODEL_VERSION_INFO.labels(name, str(old.version), old.name).set(0)
                metrics.MODEL_HOT_SWAP_TOTAL.labels(name).inc()
                self.previous = old.ref
                old.transition(SlotState.DRAINING)
                self._spawn_drain(old, retain=self.config.lifecycle.retain_previous)
            event(log, "model.promoted", version=slot.version, slot=slot.name, reason=reason,
                  previous_version=old.version if old else None,
                  previous_slot=old.name if old else None)  # fmt: skip

    def _spawn_drain(self, slot: Slot, *, retain: bool) -> None:
        task = asyncio.get_running_loop().create_task(self._drain(slot, retain=retain))
        self._drains[slot.name] = task
        task.add_done_callback(lambda _: self._drains.pop(slot.name, None))

    async def _drain(self, slot: Slot, *, retain: bool) -> None:
        started = time.monotonic()
        deadline = started + self.config.lifecycle.drain_timeout_s
        # inflight drops via call_soon_threadsafe from worker threads; a 5 ms poll is simpler
        # than an event per release and bounds the extra drain latency.
        with tracing.span("drain", self._attributes(slot.version, slot)) as span:
            while slot.inflight > 0 and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.005)
            waited = time.monotonic() - started
            tracing.set_attributes(
                span,
                {
                    "bluegreen.drain.waited_s": round(waited, 4),
                    "bluegreen.drain.still_in_flight": slot.inflight,
                },
            )
            if slot.inflight:
                tracing.fail(span, f"{slot.inflight} requests still in flight at the deadline")
        metrics.SLOT_DRAIN_DURATION.labels(slot.name).observe(waited)
        event(log, "slot.drained", version=slot.version, slot=slot.name,
              waited_s=round(waited, 4), still_in_flight=slot.inflight)  # fmt: skip
        version = slot.version
        if retain:
            slot.transition(SlotState.RETAINED)
            event(log, "slot.retained", version=slot.version, slot=slot.name)
        else:
            await self._free(slot)
        self._close_swap_window(version, "drained")

    async def _free(self, slot: Slot) -> bool:
        with tracing.span("free", self._attributes(slot.version, slot)) as span:
            model = slot.take_model()
            held = [model] if model is not None else []
            del model
            # The slot is empty once its memory is gone, not before
            freed = await self._off_loop(self._release, held, slot.name) if held else True
            if slot.state is not SlotState.EMPTY:
                slot.transition(SlotState.EMPTY)
            if not freed:
                tracing.fail(span, "the model is still reachable after its slot let it go")
            return freed

    async def _off_loop(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn`` on the smoke thread. Dropping a model's last reference there, not here, keeps
        unmapping its arrays, releasing its cache lease and collecting a generic pyfunc off
        the event loop: callers pass the model in a list that holds its only reference."""
        try:
            return await asyncio.get_running_loop().run_in_executor(self._load_executor, fn, *args)
        except RuntimeError:  # the executor is shut down: the process is stopping
            return fn(*args)

    @staticmethod
    def _discard(held: list[LoadedModel]) -> None:
        held.clear()
        malloc_trim()

    def _release(self, held: list[LoadedModel], slot_name: str) -> bool:
        """Free the model and prove with a weakref that its memory is unreachable."""
        model = held.pop()
        version = model.ref.version
        collect = model.collect_on_free
        target = model.keepalive if model.keepalive is not None else model
        probe = weakref.ref(target)
        del model, target
        started = time.perf_counter()
        if collect or probe() is not None:
            # For cycles: a generic pyfunc's own, and MLflow's per-download thread pools,
            # whose threads only exit once the pool is collected. A mapped bundle is freed by
            # reference counting alone, so its swap never pays for a collection. This one is
            # cheap because the app froze its start-up heap (`gc.freeze()` in app.py): only
            # objects created since are traversed.
            gc.collect()
        gc_ms = (time.perf_counter() - started) * 1000
        malloc_trim()
        freed = probe() is None
        name = self.config.model_name
        (metrics.MODELS_FREED if freed else metrics.MODEL_FREE_LEAKS).labels(name).inc()
        metrics.sample_process_metrics()
        event(log, "model.freed" if freed else "model.free.leak",
              logging.INFO if freed else logging.WARNING, version=version, slot=slot_name,
              unreachable=freed, gc_ms=round(gc_ms, 2))  # fmt: skip
        return freed

    # --- canary ----------------------------------------------------------------------------
    def _start_canary(self, slot: Slot) -> None:
        live = self.live
        assert live is not None
        slot.transition(SlotState.CANARY)
        live.reset_window()
        slot.reset_window()
        share = self.canary_percent / 100
        self.router.publish(self._snapshot(live, slot, share))
        metrics.CANARY_SHARE.set(share)
        event(log, "canary.started", version=slot.version, slot=slot.name,
              live_version=live.version, share=share)  # fmt: skip
        self._canary_task = asyncio.get_running_loop().create_task(self._watch_canary(slot))

    def _stop_canary_task(self) -> None:
        task, self._canary_task = self._canary_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def _watch_canary(self, slot: Slot) -> None:
        policy = self.config.canary
        while True:
            await asyncio.sleep(self.config.canary_check_interval_s)
            live = self.live
            if self.candidate is not slot or live is None:
                return
            verdict = judge(slot.window, live.window, policy, time.monotonic())
            if verdict.decision is Decision.WAIT:
                continue
            async with self._lock:
                if self.candidate is not slot:
                    return
                self._canary_task = None
                if verdict.decision is Decision.PROMOTE:
                    metrics.CANARY_DECISIONS.labels(self.config.model_name, "promoted").inc()
                    ref = slot.ref
                    self._promote(slot, reason=f"canary passed: {verdict.reason}")
                    if ref is not None:
                        self.events.put_nowait(CanaryPassed(ref, verdict.reason))
                else:
                    ref = slot.ref
                    assert ref is not None
                    metrics.CANARY_DECISIONS.labels(self.config.model_name, "rejected").inc()
                    metrics.CANARY_LAST_REJECTED_TIMESTAMP.labels(self.config.model_name).set(
                        time.time()
                    )
                    await self._end_candidate(slot, reason=verdict.reason)
                    for item in self._reject(slot, ref, verdict.reason, "canary").events:
                        self.events.put_nowait(item)
            return

    async def _end_candidate(self, slot: Slot, *, reason: str) -> None:
        """Take the candidate out of traffic, let its requests finish, free it."""
        live = self.live
        self._stop_canary_task()
        self.router.publish(self._snapshot(live))
        metrics.CANARY_SHARE.set(0)
        event(log, "canary.ended", version=slot.version, slot=slot.name, reason=reason)
        slot.transition(SlotState.DRAINING)
        self._spawn_drain(slot, retain=False)
        await asyncio.shield(self._drains[slot.name])

    def set_canary_percent(self, percent: float) -> None:
        self.canary_percent = percent
        snap = self.router.snapshot
        if snap.candidate is not None:
            self.router.publish(attrs.evolve(snap, canary_share=percent / 100))
            metrics.CANARY_SHARE.set(percent / 100)
        event(log, "canary.share.set", percent=percent)

    # --- admin operations ------------------------------------------------------------------
    async def promote_candidate(self) -> ModelRef | None:
        async with self._lock:
            cand = self.candidate
            if cand is None:
                return None
            metrics.CANARY_DECISIONS.labels(self.config.model_name, "promoted").inc()
            ref = cand.ref
            self._promote(cand, reason="admin promote")
            return ref

    async def abort_candidate(self, reason: str) -> ModelRef | None:
        async with self._lock:
            cand = self.candidate
            if cand is None:
                return None
            ref = cand.ref
            metrics.CANARY_DECISIONS.labels(self.config.model_name, "aborted").inc()
            await self._end_candidate(cand, reason=reason)
            return ref

    async def rollback_instant(self) -> ModelRef | None:
        """Flip back to the retained previous version; None when nothing is retained."""
        async with self._lock:
            retained = self.retained()
            if retained is None or retained.ref is None:
                return None
            ref = retained.ref
            metrics.ROLLBACKS.labels(self.config.model_name).inc()
            self._promote(retained, reason="rollback")
            return ref

    async def run_exclusive(self, action: Callable[[], Awaitable[object]]) -> object:
        async with self._lock:
            return await action()

    async def close(self) -> None:
        self._stop_canary_task()
        self._switch_interval.restore()
        if self._load_thread is not None:
            self._load_thread.shutdown(wait=False, cancel_futures=True)
        drains = list(self._drains.values())
        if drains:
            await asyncio.wait(drains, timeout=self.config.lifecycle.drain_timeout_s)
