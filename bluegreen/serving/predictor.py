"""The request path: admit, pick a slot from the snapshot, lease it, predict, release.

A canary failure is retried on the live slot, so a bad candidate costs latency, not errors.
During a canary, answered requests are offered to the `PairScorer`, which times a bounded
sample of them on both versions off the request path (the canary's latency evidence).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Coroutine, Sequence
from concurrent.futures import Executor
from typing import Any

import attrs
import numpy as np
from numpy.typing import NDArray

from bluegreen import metrics, tracing
from bluegreen.logging import event
from bluegreen.serving.contract import LABELS
from bluegreen.serving.lifecycle import SlotManager
from bluegreen.serving.pairing import PairScorer
from bluegreen.serving.slot import Slot

log = logging.getLogger("bluegreen.predictor")


class NoLiveModel(Exception):
    """No version is serving yet (starting, or the registry has been unreachable)."""


class Overloaded(Exception):
    """More requests are waiting than this worker admits; shed instead of queueing forever."""


class ModelFailed(Exception):
    """The live model raised or broke the output contract for this request."""


class VersionNotLoaded(LookupError):
    """A request pinned to a version that no slot serves right now."""


@attrs.frozen
class Prediction:
    probabilities: NDArray[np.float64]
    """(n, len(LABELS)) rows in LABELS order."""
    version: int
    slot: str

    def label_indices(self) -> NDArray[np.intp]:
        indices: NDArray[np.intp] = self.probabilities.argmax(axis=1)
        return indices


class Predictor:
    def __init__(
        self,
        manager: SlotManager,
        executor: Executor,
        *,
        max_pending: int,
        inline_max_chars: int,
        shadow_fraction: float,
        model_name: str,
        pairs: PairScorer | None = None,
    ) -> None:
        self._manager = manager
        self._pairs = pairs
        self._executor = executor
        self._max_pending = max_pending
        self._inline_max_chars = inline_max_chars
        self._shadow_fraction = shadow_fraction
        self._model_name = model_name
        self._pending = 0
        self._shadows: set[asyncio.Task[None]] = set()
        self._rng = random.Random()
        self._metric_children: dict[tuple[str, int], tuple[Any, list[Any]]] = {}

    @property
    def pending(self) -> int:
        return self._pending

    def predict(
        self, texts: Sequence[str], client_key: str | None = None
    ) -> Coroutine[Any, Any, Prediction]:
        # A plain function handing back one of two coroutines: with tracing off, the request
        # path costs one flag check, not an extra coroutine frame.
        if tracing.ENABLED:
            return self._traced(self._predict(texts, client_key), len(texts))
        return self._predict(texts, client_key)

    async def _traced(
        self, call: Coroutine[Any, Any, Prediction], texts: int, pinned: int | None = None
    ) -> Prediction:
        # `call` has not started yet: its body runs inside the span, as the span's child.
        attributes: dict[str, tracing.AttributeValue | None] = {
            tracing.MODEL: self._model_name,
            tracing.TEXTS: texts,
            "bluegreen.pinned_version": pinned,
        }
        with tracing.span("predict", attributes) as span:
            prediction = await call
            tracing.set_attributes(
                span, {tracing.VERSION: prediction.version, tracing.SLOT: prediction.slot}
            )
            return prediction

    async def _predict(self, texts: Sequence[str], client_key: str | None) -> Prediction:
        if self._pending >= self._max_pending:
            metrics.REQUESTS_SHED.labels("overloaded").inc()
            raise Overloaded(f"{self._pending} requests pending")
        snapshot = self._manager.router.snapshot
        slot = snapshot.choose(client_key, self._rng)
        if slot is None:
            metrics.REQUESTS_SHED.labels("no_model").inc()
            raise NoLiveModel("no model version is live yet")
        self._pending += 1
        try:
            try:
                result = await self._run(slot, texts)
            except ModelFailed:
                # Re-read the snapshot: a promotion may have happened while we awaited.
                live = self._manager.router.snapshot.live
                if slot is live or live is None or live.model is None:
                    raise
                # The candidate failed: answer from live; the canary judge sees the error.
                result = await self._run(live, texts)
            else:
                if self._pairs is not None and snapshot.candidate is not None:
                    self._pairs.offer(snapshot, texts)
                if (
                    slot is snapshot.live
                    and snapshot.candidate is not None
                    and self._shadow_fraction > 0
                    and self._rng.random() < self._shadow_fraction
                ):
                    self._shadow(snapshot.candidate, texts, result)
            return result
        finally:
            self._pending -= 1

    def predict_on(self, version: int, texts: Sequence[str]) -> Coroutine[Any, Any, Prediction]:
        """Answer from the slot that holds `version` (live or candidate), with no fallback.

        Pinned traffic is not the router's sample: it stays out of the canary window, so
        that a client cannot steer the verdict by aiming requests at the candidate."""
        if tracing.ENABLED:
            return self._traced(self._predict_on(version, texts), len(texts), pinned=version)
        return self._predict_on(version, texts)

    async def _predict_on(self, version: int, texts: Sequence[str]) -> Prediction:
        if self._pending >= self._max_pending:
            metrics.REQUESTS_SHED.labels("overloaded").inc()
            raise Overloaded(f"{self._pending} requests pending")
        snapshot = self._manager.router.snapshot
        slot = next(
            (s for s in (snapshot.live, snapshot.candidate)
             if s is not None and s.model is not None and s.version == version),
            None,
        )  # fmt: skip
        if slot is None:
            raise VersionNotLoaded(f"version {version} is not loaded")
        self._pending += 1
        try:
            return await self._run(slot, texts, judged=False)
        finally:
            self._pending -= 1

    def _run(
        self, slot: Slot, texts: Sequence[str], *, judged: bool = True
    ) -> Coroutine[Any, Any, Prediction]:
        if tracing.ENABLED:
            return self._run_traced(slot, texts, judged)
        return self._run_slot(slot, texts, judged=judged)

    async def _run_traced(self, slot: Slot, texts: Sequence[str], judged: bool) -> Prediction:
        # One span per attempt: a candidate's failure answered from live shows as two.
        with tracing.span("slot", {tracing.SLOT: slot.name, tracing.VERSION: slot.version}):
            return await self._run_slot(slot, texts, judged=judged)

    async def _run_slot(self, slot: Slot, texts: Sequence[str], *, judged: bool) -> Prediction:
        model = slot.acquire()
        version = model.ref.version
        started = time.perf_counter()
        if len(texts) == 1 and len(texts[0]) <= self._inline_max_chars:
            # Tens of µs on the loop beat a thread hop; bounded by inline_max_chars.
            try:
                probs = model.predict(texts)
            except Exception as exc:
                self._failed(slot, version, started, exc, judged=judged)
                raise ModelFailed(str(exc)) from exc
            latency = time.perf_counter() - started
            if judged:
                slot.release(latency, ok=True)
            else:
                slot.release_lease()
        else:
            loop = asyncio.get_running_loop()
            # The thread takes the model out of the box, so nothing of it is left once the
            # call returns: the executor's work item outlives the done-callback that releases
            # the lease, and must not pin a model the drain is about to free.
            box = [model]
            del model

            def run() -> NDArray[np.float64]:
                return box.pop().predict(texts)

            future = self._executor.submit(run)

            def release(done: object) -> None:
                # Runs when the thread finishes even if the request was cancelled meanwhile,
                # so a draining slot never frees a model a thread still uses.
                latency = time.perf_counter() - started
                ok = not future.cancelled() and future.exception() is None
                if judged:
                    loop.call_soon_threadsafe(slot.release, latency, ok)
                else:
                    loop.call_soon_threadsafe(slot.release_lease)

            future.add_done_callback(release)
            try:
                probs = await asyncio.wrap_future(future)
            except Exception as exc:
                self._failed(slot, version, started, exc, released=True)
                raise ModelFailed(str(exc)) from exc
            latency = time.perf_counter() - started
        duration, per_label = self._series(slot.name, version)
        duration.observe(latency)
        if len(probs) == 1:
            per_label[int(probs[0].argmax())].inc()
        else:
            counts = np.bincount(probs.argmax(axis=1), minlength=len(LABELS))
            for index, count in enumerate(counts.tolist()):
                if count:
                    per_label[index].inc(count)
        return Prediction(probs, version, slot.name)

    def _series(self, slot: str, version: int) -> tuple[Any, list[Any]]:
        """Metric children for (slot, version), cached: `.labels()` is a lock and a dict
        lookup per call, a measurable share of a ~0.5 ms request."""
        key = (slot, version)
        series = self._metric_children.get(key)
        if series is None:
            if len(self._metric_children) > 64:  # versions come and go; stay bounded
                self._metric_children.clear()
            series = (
                metrics.PREDICTION_DURATION.labels(slot, str(version)),
                [metrics.PREDICTIONS.labels(slot, str(version), label) for label in LABELS],
            )
            self._metric_children[key] = series
        return series

    def _failed(
        self,
        slot: Slot,
        version: int,
        started: float,
        exc: Exception,
        *,
        released: bool = False,
        judged: bool = True,
    ) -> None:
        if not released:
            if judged:
                slot.release(time.perf_counter() - started, ok=False)
            else:
                slot.release_lease()
        metrics.PREDICTION_ERRORS.labels(slot.name, str(version)).inc()
        event(log, "predict.failed", logging.ERROR, version=version, slot=slot.name,
              error=f"{type(exc).__name__}: {exc}"[:300])  # fmt: skip

    def _shadow(self, candidate: Slot, texts: Sequence[str], live_result: Prediction) -> None:
        """Score the same texts on the candidate off the request path and count disagreement."""

        async def compare() -> None:
            try:
                shadow = await self._run(candidate, texts)
            except Exception:
                return
            metrics.CANARY_COMPARED.labels(self._model_name).inc(len(texts))
            differ = int((shadow.label_indices() != live_result.label_indices()).sum())
            if differ:
                metrics.CANARY_DISAGREEMENTS.labels(self._model_name).inc(differ)

        if candidate.model is None:
            return
        task = asyncio.get_running_loop().create_task(compare())
        self._shadows.add(task)
        task.add_done_callback(self._shadows.discard)
