"""The long-lived objects of one process, built in the app's lifespan and held in app state."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Protocol, TypeVar

import attrs

from bluegreen.control.admin_actions import AdminActions
from bluegreen.control.calls import RegistryCalls
from bluegreen.control.controller import Controller
from bluegreen.edge.shutdown import Stopping
from bluegreen.loading.loader import VersionLoader
from bluegreen.logging import event
from bluegreen.loop_lag import LoopLagProbe
from bluegreen.registry import Registry
from bluegreen.serving.assignment import resolve_key
from bluegreen.serving.lifecycle import LifecycleConfig, Loader, SlotManager
from bluegreen.serving.pairing import PairScorer
from bluegreen.serving.predictor import Predictor
from bluegreen.settings import Settings
from bluegreen.threads import DaemonExecutor

log = logging.getLogger("bluegreen.wiring")
T = TypeVar("T")


class LoaderFactory(Protocol):
    def __call__(self, settings: Settings, registry: Registry) -> Loader: ...


def registry_loader(settings: Settings, registry: Registry) -> Loader:
    """Bundles through the supervised loader child; generic pyfuncs in-process if trusted."""
    return VersionLoader(settings, registry)


def _open_registry(settings: Settings) -> Registry:
    """Opening an sqlite registry creates and migrates its schema; several workers doing that
    at once corrupt the migration, so on sqlite they take turns under a file lock."""

    def open_() -> Registry:
        return Registry(
            settings.effective_tracking_uri,
            settings.registry.model_name,
            settings.registry.model_alias,
            settings.registry.fallback_stages,
        )

    if not settings.effective_tracking_uri.startswith("sqlite:"):
        return open_()
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.state_dir / "registry.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return open_()


_NOT_READY = {
    "no_target": "no version to serve in the registry",
    "skipped_rejected": "every candidate version is rejected",
}


@attrs.frozen
class Readiness:
    ready: bool
    reason: str
    """Generic and public (/readyz): says what is wrong, never error text."""
    detail: str | None = None
    """The error text behind `reason`; admin only, since it can name hosts, paths and
    registry internals."""


@attrs.define
class Runtime:
    settings: Settings
    registry: Registry
    manager: SlotManager
    controller: Controller
    admin: AdminActions
    predictor: Predictor
    executors: list[Executor]
    loader: Loader
    lag_probe: LoopLagProbe
    status: str = "starting"
    """Why the process is not ready yet (bootstrapping, waiting for registry...)."""
    status_detail: str | None = None
    tasks: list[asyncio.Task[None]] = attrs.Factory(list)
    stopping: Stopping = attrs.Factory(Stopping)
    """Set by SIGTERM while `BLUEGREEN_SHUTDOWN_DELAY_S` runs (`bluegreen.edge.shutdown`)."""

    @classmethod
    def build(
        cls,
        settings: Settings,
        registry: Registry | None = None,
        loader_factory: LoaderFactory = registry_loader,
    ) -> Runtime:
        registry = registry or _open_registry(settings)
        predict_executor = ThreadPoolExecutor(settings.server.predict_threads, "predict")
        # smoke runs and heap trims; loads have a thread of their own (SlotManager._load)
        load_executor = DaemonExecutor(1, "model-smoke")
        registry_calls = RegistryCalls(settings.registry.timeout_s)
        canary = settings.canary
        if canary.pair_cpu_share == 0:
            # without paired timing there is no fair latency evidence to judge
            canary = attrs.evolve(canary, min_pairs=0)
        config = LifecycleConfig(
            model_name=settings.registry.model_name,
            lifecycle=settings.lifecycle,
            canary=canary,
            canary_key=resolve_key(settings.canary.key, settings.state_dir),
        )
        lag_probe = LoopLagProbe()
        loader = loader_factory(settings, registry)
        manager = SlotManager(config, loader, load_executor, lag_probe=lag_probe)
        controller = Controller(
            registry,
            manager,
            registry_calls,
            poll_interval_s=settings.registry.poll_interval_s,
            control_interval_s=settings.registry.control_interval_s,
            backoff_base_s=settings.registry.backoff_base_s,
            backoff_max_s=settings.registry.backoff_max_s,
            history_max=settings.registry.history_max,
        )
        pairs: PairScorer | None = None
        pair_executor: DaemonExecutor | None = None
        if settings.canary.pair_cpu_share > 0:
            # a thread of its own: paired timing never waits behind, or delays, requests
            pair_executor = DaemonExecutor(1, "canary-pairs")
            pairs = PairScorer(
                pair_executor,
                cpu_share=settings.canary.pair_cpu_share,
                max_texts=settings.canary.pair_max_texts,
                model_name=settings.registry.model_name,
            )
        predictor = Predictor(
            manager,
            predict_executor,
            max_pending=settings.limits.max_pending_requests,
            inline_max_chars=settings.server.inline_predict_max_chars,
            shadow_fraction=settings.canary.shadow_fraction,
            model_name=settings.registry.model_name,
            pairs=pairs,
        )
        executors: list[Executor] = [predict_executor, load_executor]
        if pair_executor is not None:
            executors.append(pair_executor)
        return cls(
            settings, registry, manager, controller, AdminActions(controller), predictor,
            executors, loader, lag_probe,
        )  # fmt: skip

    def prepare_loading(self) -> None:
        """Blocking, once at start: sweep what earlier runs left in the version cache (killed
        loads, versions nobody maps any more) and spawn the loader child."""
        cache = getattr(self.loader, "cache", None)
        if cache is not None:
            removed = cache.sweep()
            if removed:
                event(log, "cache.swept", removed=removed)
        start = getattr(self.loader, "start", None)
        if callable(start):
            start()

    def readiness(self) -> Readiness:
        if self.stopping.active:
            return Readiness(False, "shutting down")
        live = self.manager.live
        if live is not None:
            return Readiness(True, "serving")
        if self.manager.busy:
            return Readiness(False, "loading a model version")
        if self.controller.last_error:
            return Readiness(False, "registry unreachable", self.controller.last_error)
        if self.manager.last_failure:
            return Readiness(False, "no servable version", self.manager.last_failure)
        result = self.controller.last_result
        if result is not None and result.detail:
            reason = _NOT_READY.get(result.status.value, "no servable version")
            return Readiness(False, reason, result.detail)
        return Readiness(False, self.status, self.status_detail)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.manager.close()
        close_loader = getattr(self.loader, "close", None)
        if callable(close_loader):
            close_loader()  # the loader child goes with us
        for executor in self.executors:
            executor.shutdown(wait=False, cancel_futures=True)
        self.controller.calls.shutdown()
        event(log, "runtime.closed")
