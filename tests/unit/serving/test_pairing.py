"""Paired latencies: the same texts timed on live and candidate on a thread of their own,
bypassing the per-text caches, one pair at a time, within a CPU share, never queued."""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections.abc import Iterator, Sequence

import numpy as np
import pytest
from numpy.typing import NDArray

from bluegreen.serving.pairing import PairScorer, time_pair
from bluegreen.serving.router import Snapshot
from bluegreen.serving.slot import Slot
from tests.fakes import BrokenModel, CachingModel, CountingExecutor, FakeLoader, loaded
from tests.unit.helpers import NEVER, ManagerFactory, eventually, metric, ref


@pytest.fixture
def pool() -> Iterator[CountingExecutor]:
    pool = CountingExecutor(1)
    yield pool
    pool.shutdown(wait=False, cancel_futures=True)


def slots(live_model: object, candidate_model: object) -> tuple[Slot, Slot, Snapshot]:
    live, candidate = Slot("pair-live"), Slot("pair-cand")
    live.install(loaded(1, live_model))
    candidate.install(loaded(2, candidate_model))
    return live, candidate, Snapshot(live, candidate, 0.5)


def scorer(pool: CountingExecutor, name: str, **kw: float) -> PairScorer:
    return PairScorer(
        pool,
        cpu_share=kw.get("cpu_share", 1.0),
        max_texts=int(kw.get("max_texts", 16)),
        model_name=name,
    )


async def test_a_pair_times_the_same_texts_on_both_versions_without_their_caches(
    pool: CountingExecutor, name: str
) -> None:
    fast, slow = CachingModel(delay_s=0.002), CachingModel(delay_s=0.03)
    live, candidate, snap = slots(fast, slow)
    text = "정말 최고의 영화"
    assert live.model is not None
    live.model.predict([text])  # live answered the request: its cache holds the text
    scored = metric("bluegreen_canary_pairs_total", model=name, result="scored")

    assert scorer(pool, name).offer(snap, [text])
    assert (live.inflight, candidate.inflight) == (1, 1)  # drains wait for the pair
    await eventually(lambda: len(candidate.window.pairs) == 1)

    ((live_s, candidate_s),) = candidate.window.pairs.pairs
    assert live_s >= 0.002
    assert candidate_s >= 0.03
    assert candidate_s > live_s
    # Both sides scored the text twice without their caches: live's cache made nothing free.
    assert fast.uncached_calls == [1, 1]
    assert slow.uncached_calls == [1, 1]
    assert (fast.cached_calls, slow.cached_calls) == (1, 0)
    assert (live.inflight, candidate.inflight) == (0, 0)
    # A pair is not a request: the windows the error rate is judged on do not count it.
    assert (live.window.requests, candidate.window.requests) == (0, 0)
    assert len(live.window.pairs) == 0
    assert metric("bluegreen_canary_pairs_total", model=name, result="scored") == scored + 1


async def test_a_busy_scorer_skips_instead_of_queueing(pool: CountingExecutor, name: str) -> None:
    _, candidate, snap = slots(CachingModel(), CachingModel(delay_s=0.1))
    pairs = scorer(pool, name)
    skipped = metric("bluegreen_canary_pairs_total", model=name, result="skipped")
    assert pairs.offer(snap, ["최고"])
    started = time.perf_counter()
    assert not any(pairs.offer(snap, [f"최고 {i}"]) for i in range(50))
    assert time.perf_counter() - started < 0.05  # skipping never waits
    assert pool.submitted == 1
    assert metric("bluegreen_canary_pairs_total", model=name, result="skipped") == skipped + 50
    await eventually(lambda: not pairs.busy)
    assert len(candidate.window.pairs) == 1


class Spinning(CachingModel):
    """Burns `cpu_s` of CPU per uncached call (a model busy computing, not waiting)."""

    def __init__(self, cpu_s: float) -> None:
        super().__init__()
        self.cpu_s = cpu_s
        self.burned = 0.0

    def uncached(self, texts: Sequence[str]) -> NDArray[np.float64]:
        started = time.thread_time()
        while time.thread_time() - started < self.cpu_s:
            pass
        self.burned += time.thread_time() - started
        return super().uncached(texts)


@pytest.mark.parametrize("cpu_share", [0.1, 0.25])
async def test_pairs_use_at_most_their_share_of_a_core(
    pool: CountingExecutor, name: str, cpu_share: float
) -> None:
    live_model, candidate_model = Spinning(0.002), Spinning(0.02)
    _, candidate, snap = slots(live_model, candidate_model)
    pairs = scorer(pool, name, cpu_share=cpu_share)
    started = 0
    began = time.monotonic()
    while time.monotonic() - began < 2.0:
        started += pairs.offer(snap, ["최고"])
        await asyncio.sleep(0.002)  # far more offers than the budget allows
    elapsed = time.monotonic() - began
    await eventually(lambda: not pairs.busy)
    burned = live_model.burned + candidate_model.burned
    # Without the budget the pair thread would be busy all the time (a share near 1).
    assert burned / elapsed <= cpu_share + 0.03, (burned, elapsed, started)
    assert started >= 2
    assert len(candidate.window.pairs) == started


async def test_a_version_that_waits_is_paired_without_waiting_for_budget(
    pool: CountingExecutor, name: str
) -> None:
    """The budget counts CPU: a version slow because it sleeps costs the worker nothing, and
    its pairs come as fast as they finish (a wall-time budget would space 5 of these pairs,
    >= 40 ms each, over >= 1.4 s at a share of 0.1)."""
    _, candidate, snap = slots(CachingModel(), CachingModel(delay_s=0.02))
    pairs = scorer(pool, name, cpu_share=0.1)
    began = time.monotonic()
    while len(candidate.window.pairs) < 5 and time.monotonic() - began < 5:
        pairs.offer(snap, ["최고"])
        await asyncio.sleep(0.002)
    assert len(candidate.window.pairs) == 5
    assert time.monotonic() - began < 0.9


async def test_batches_are_paired_on_their_first_max_texts(
    pool: CountingExecutor, name: str
) -> None:
    a, b = CachingModel(), CachingModel()
    _, candidate, snap = slots(a, b)
    assert scorer(pool, name, max_texts=16).offer(snap, [f"최고 {i}" for i in range(40)])
    await eventually(lambda: len(candidate.window.pairs) == 1)
    assert a.uncached_calls == b.uncached_calls == [16, 16]


async def test_a_pair_for_a_replaced_window_is_dropped(pool: CountingExecutor, name: str) -> None:
    live, candidate, snap = slots(CachingModel(), CachingModel(delay_s=0.05))
    pairs = scorer(pool, name)
    assert pairs.offer(snap, ["최고"])
    candidate.reset_window()  # the canary restarted while the pair ran
    await eventually(lambda: not pairs.busy)
    assert len(candidate.window.pairs) == 0
    assert (live.inflight, candidate.inflight) == (0, 0)


async def test_a_failing_pair_records_nothing_and_frees_the_scorer(
    pool: CountingExecutor, name: str
) -> None:
    live, candidate, snap = slots(CachingModel(), BrokenModel("raise"))
    pairs = scorer(pool, name)
    failed = metric("bluegreen_canary_pairs_total", model=name, result="failed")
    assert pairs.offer(snap, ["최고"])
    await eventually(lambda: not pairs.busy)
    assert len(candidate.window.pairs) == 0
    assert candidate.window.errors == 0  # errors are judged on real traffic only
    assert (live.inflight, candidate.inflight) == (0, 0)
    assert metric("bluegreen_canary_pairs_total", model=name, result="failed") == failed + 1


async def test_nothing_to_pair_without_a_candidate(pool: CountingExecutor, name: str) -> None:
    live = Slot("pair-only-live")
    live.install(loaded(1, CachingModel()))
    assert not scorer(pool, name).offer(Snapshot(live), ["최고"])
    assert pool.submitted == 0


class Recorder:
    """Records the order of calls; the first call of each side is slow (a cold cache line,
    a stall), the second fast."""

    def __init__(self, side: str, order: list[str]) -> None:
        self.side, self.order, self.seen = side, order, 0

    def uncached(self, texts: Sequence[str]) -> NDArray[np.float64]:
        self.order.append(self.side)
        self.seen += 1
        time.sleep(0.03 if self.seen == 1 else 0.001)
        return np.full((len(texts), 3), 1 / 3)

    predict_texts = uncached


@pytest.mark.parametrize(
    ("candidate_first", "expected"),
    [(False, ["live", "cand", "cand", "live"]), (True, ["cand", "live", "live", "cand"])],
)
def test_time_pair_alternates_and_keeps_each_sides_fastest_call(
    candidate_first: bool, expected: list[str]
) -> None:
    order: list[str] = []
    box = [loaded(1, Recorder("live", order)), loaded(2, Recorder("cand", order))]
    timing = time_pair(box, ["최고"], candidate_first)
    assert order == expected
    assert box == []  # the work item keeps no model alive
    assert timing.live_s < 0.02
    assert timing.candidate_s < 0.02
    assert 0 <= timing.cpu_s < 0.05  # the sleeps are not CPU


async def test_the_drain_of_a_candidate_waits_for_its_pair_and_then_frees_it(
    make: ManagerFactory, loader: FakeLoader, pool: CountingExecutor, name: str
) -> None:
    gate = threading.Event()

    class Gated(CachingModel):
        def uncached(self, texts: Sequence[str]) -> NDArray[np.float64]:
            gate.wait(10)
            return super().uncached(texts)

    loader.factories[2] = Gated
    manager = make(canary_percent=50, canary_policy=NEVER)
    await manager.deploy(ref(1))
    await manager.deploy(ref(2))
    candidate = manager.candidate
    assert candidate is not None
    assert candidate.model is not None
    probe = weakref.ref(candidate.model.keepalive)
    pairs = scorer(pool, name)
    assert pairs.offer(manager.router.snapshot, ["최고"])
    abort = asyncio.ensure_future(manager.abort_candidate("test"))
    await asyncio.sleep(0.1)
    assert not abort.done()  # the pair still leases the candidate
    assert candidate.model is not None
    gate.set()
    await asyncio.wait_for(abort, 10)
    assert probe() is None  # freed: the pair thread kept nothing of it
    assert metric("bluegreen_model_free_leaks_total", model=name) == 0
