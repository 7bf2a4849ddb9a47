"""Paired latencies for the canary: the same texts timed on live and on the candidate.

What each slot receives during a canary is up to the clients (one that reads `X-Model-Slot`
can keep the request ids that land where it wants), so per-slot latencies compare different
work. A pair compares the same work: after a request is answered, its texts (at most
`max_texts` of them) are scored on both versions on one dedicated thread, off the request path,
and the pair goes into the candidate's window for the judge.

Bounded so that it cannot take over the worker: one pair at a time, and after a pair that used
``c`` seconds of CPU the next starts no sooner than ``c * (1 - cpu_share) / cpu_share`` later, so
pairs use at most ``cpu_share`` of one core. (CPU, not wall time: a version that is slow because
it waits costs the worker nothing, and its pairs should not take a minute to collect.) A
request that finds the scorer busy or out of budget is simply not paired: nothing ever queues.

Each side is timed twice in the order A B B A (A chosen at random) and keeps its faster time:
alternation cancels drift and warm-up, and the minimum drops a stall of the host or the GIL that
hit one call only. The models' per-text caches are bypassed (`LoadedModel.predict_uncached`);
a model without an uncached entry point answers its second call from whatever cache it has on
both sides alike, so neither side is free while the other pays.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Sequence
from concurrent.futures import Executor, Future
from typing import NamedTuple

from bluegreen import metrics
from bluegreen.serving.model_handle import LoadedModel
from bluegreen.serving.router import Snapshot
from bluegreen.serving.slot import PairedLatencies, Slot


class Timing(NamedTuple):
    live_s: float
    candidate_s: float
    cpu_s: float
    """CPU the pair thread spent on the whole pair (the budget's measure)."""


def time_pair(box: list[LoadedModel], texts: list[str], candidate_first: bool) -> Timing:
    """Blocking (the pair thread): both versions' latencies on the same texts.

    `box` holds [live, candidate] and is emptied here, so that once this returns nothing of the
    work item pins a model that a drain is about to free."""
    cpu_started = time.thread_time()
    candidate = box.pop()
    live = box.pop()
    sides = (live, candidate)
    a, b = (1, 0) if candidate_first else (0, 1)
    best = [float("inf"), float("inf")]
    for side in (a, b, b, a):
        started = time.perf_counter()
        sides[side].predict_uncached(texts)
        best[side] = min(best[side], time.perf_counter() - started)
    return Timing(best[0], best[1], time.thread_time() - cpu_started)


class PairScorer:
    """Offered every answered request during a canary; scores a bounded sample of them."""

    def __init__(
        self, executor: Executor, *, cpu_share: float, max_texts: int, model_name: str
    ) -> None:
        if not 0 < cpu_share <= 1:
            raise ValueError(f"cpu_share must be in (0, 1], got {cpu_share}")
        self._executor = executor
        self._idle_factor = (1 - cpu_share) / cpu_share
        self._max_texts = max(1, max_texts)
        self._busy = False
        self._next_at = 0.0
        self._rng = random.Random()
        self._scored = metrics.CANARY_PAIRS.labels(model_name, "scored")
        self._skipped = metrics.CANARY_PAIRS.labels(model_name, "skipped")
        self._failed = metrics.CANARY_PAIRS.labels(model_name, "failed")

    @property
    def busy(self) -> bool:
        return self._busy

    def offer(self, snapshot: Snapshot, texts: Sequence[str]) -> bool:
        """On the event loop, after a request was answered: start a pair, or skip. Never waits;
        True when a pair was started."""
        live, candidate = snapshot.live, snapshot.candidate
        if live is None or candidate is None or live.model is None or candidate.model is None:
            return False
        if self._busy or time.perf_counter() < self._next_at:
            self._skipped.inc()
            return False
        sample = list(texts[: self._max_texts])
        window = candidate.window.pairs
        box = [live.acquire(), candidate.acquire()]
        try:
            future = self._executor.submit(time_pair, box, sample, self._rng.random() < 0.5)
        except RuntimeError:  # executor shut down: the process is stopping
            live.release_lease()
            candidate.release_lease()
            return False
        del box
        self._busy = True
        started = time.perf_counter()
        loop = asyncio.get_running_loop()

        def done(finished: Future[Timing]) -> None:
            with contextlib.suppress(RuntimeError):  # loop closed: nobody judges any more
                loop.call_soon_threadsafe(self._finish, finished, live, candidate, window, started)

        future.add_done_callback(done)
        return True

    def _finish(
        self,
        future: Future[Timing],
        live: Slot,
        candidate: Slot,
        window: PairedLatencies,
        started: float,
    ) -> None:
        live.release_lease()
        candidate.release_lease()
        self._busy = False
        if future.cancelled() or future.exception() is not None:
            # Errors are judged on real traffic; a pair that failed only has no latency. Its
            # CPU is unknown: its wall time stands in for it.
            self._failed.inc()
            now = time.perf_counter()
            self._next_at = now + (now - started) * self._idle_factor
            return
        timing = future.result()
        self._next_at = time.perf_counter() + timing.cpu_s * self._idle_factor
        # A window replaced since (the canary restarted) must not receive an old pair.
        if candidate.window.pairs is window:
            window.record(timing.live_s, timing.candidate_s)
            self._scored.inc()
