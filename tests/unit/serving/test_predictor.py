"""The request path: admission, slot choice, leases, canary retry on live, executor use."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Iterator

import pytest

from bluegreen.serving.lifecycle import LifecycleConfig, SlotManager
from bluegreen.serving.pairing import PairScorer
from bluegreen.serving.predictor import (
    ModelFailed,
    NoLiveModel,
    Overloaded,
    Predictor,
    VersionNotLoaded,
)
from bluegreen.serving.slot import Slot
from tests.fakes import (
    CachingModel,
    CountingExecutor,
    FakeLoader,
    KeywordModel,
    SwitchableModel,
    loaded,
)
from tests.unit.helpers import NEVER, ManagerFactory, eventually, metric, ref

INLINE_MAX = 50
LONG_TEXT = "정말 최고의 영화 " * 20  # over INLINE_MAX: goes to the executor


@pytest.fixture
def predict_pool() -> Iterator[CountingExecutor]:
    pool = CountingExecutor(2)
    yield pool
    pool.shutdown(wait=False, cancel_futures=True)


def predictor_for(
    manager: SlotManager,
    pool: CountingExecutor,
    *,
    max_pending: int = 100,
    shadow: float = 0.0,
    name: str = "m",
    pairs: PairScorer | None = None,
) -> Predictor:
    return Predictor(
        manager,
        pool,
        max_pending=max_pending,
        inline_max_chars=INLINE_MAX,
        shadow_fraction=shadow,
        model_name=name,
        pairs=pairs,
    )


def keepalive(slot: Slot | None) -> KeywordModel:
    assert slot is not None
    assert slot.model is not None
    model = slot.model.keepalive
    assert isinstance(model, KeywordModel)
    return model


async def test_no_live_model(make: ManagerFactory, predict_pool: CountingExecutor) -> None:
    predictor = predictor_for(make(), predict_pool)
    shed = metric("bluegreen_requests_shed_total", reason="no_model")
    with pytest.raises(NoLiveModel):
        await predictor.predict(["최고"])
    assert predictor.pending == 0
    assert metric("bluegreen_requests_shed_total", reason="no_model") == shed + 1


async def test_single_short_text_runs_inline_and_names_version_and_slot(
    make: ManagerFactory, predict_pool: CountingExecutor, name: str
) -> None:
    manager = make()
    await manager.deploy(ref(4))
    predictor = predictor_for(manager, predict_pool)
    live = manager.live
    assert live is not None
    before = metric("bluegreen_predictions_total", slot=live.name, version="4", label="긍정")
    result = await predictor.predict(["정말 최고의 영화"])
    assert result.version == 4
    assert result.slot == live.name
    assert result.probabilities.shape == (1, 3)
    assert result.probabilities[0].sum() == pytest.approx(1.0)
    assert list(result.label_indices()) == [2]
    assert predict_pool.submitted == 0
    assert (live.inflight, live.requests, live.errors) == (0, 1, 0)
    after = metric("bluegreen_predictions_total", slot=live.name, version="4", label="긍정")
    assert after == before + 1


@pytest.mark.parametrize("texts", [["최고", "최악"], [LONG_TEXT]], ids=["batch", "long"])
async def test_batches_and_long_texts_use_the_executor(
    make: ManagerFactory, predict_pool: CountingExecutor, texts: list[str]
) -> None:
    manager = make()
    await manager.deploy(ref(1))
    predictor = predictor_for(manager, predict_pool)
    result = await predictor.predict(texts)
    assert predict_pool.submitted == 1
    assert result.probabilities.shape == (len(texts), 3)
    live = manager.live
    assert live is not None
    await eventually(lambda: live.inflight == 0)
    assert (live.requests, live.errors) == (1, 0)


async def test_overloaded_when_pending_reaches_max(
    make: ManagerFactory, loader: FakeLoader, predict_pool: CountingExecutor
) -> None:
    manager = make()
    await manager.deploy(ref(1))
    predictor = predictor_for(manager, predict_pool, max_pending=1)
    keepalive(manager.live).delay_s = 0.2
    shed = metric("bluegreen_requests_shed_total", reason="overloaded")
    slow = asyncio.create_task(predictor.predict(["최고", "최악"]))
    await eventually(lambda: predictor.pending == 1)
    with pytest.raises(Overloaded, match="1 requests pending"):
        await predictor.predict(["최고"])
    assert metric("bluegreen_requests_shed_total", reason="overloaded") == shed + 1
    await slow
    assert predictor.pending == 0
    await predictor.predict(["최고"])  # admitted again


async def test_failing_candidate_is_retried_on_live(
    make: ManagerFactory, loader: FakeLoader, predict_pool: CountingExecutor
) -> None:
    manager = make(canary_percent=100, canary_policy=NEVER)
    loader.factories[2] = SwitchableModel
    await manager.deploy(ref(1))
    await manager.deploy(ref(2))
    live, cand = manager.live, manager.candidate
    assert live is not None
    assert cand is not None
    keepalive(cand).failing = True  # type: ignore[attr-defined]
    errors = metric("bluegreen_prediction_errors_total", slot=cand.name, version="2")
    predictor = predictor_for(manager, predict_pool)

    for texts in (["최고"], ["최고", "최악"]):  # inline and executor paths
        result = await predictor.predict(texts)
        assert result.version == 1
        assert result.slot == live.name

    await eventually(lambda: cand.inflight == 0 and live.inflight == 0)
    assert (cand.requests, cand.errors) == (2, 2)
    assert (cand.window.requests, cand.window.errors) == (2, 2)
    assert (live.requests, live.errors) == (2, 0)
    assert metric("bluegreen_prediction_errors_total", slot=cand.name, version="2") == errors + 2
    assert predictor.pending == 0


async def test_failing_live_model_raises_model_failed(
    make: ManagerFactory, loader: FakeLoader, predict_pool: CountingExecutor
) -> None:
    manager = make()
    loader.factories[1] = SwitchableModel
    await manager.deploy(ref(1))
    live = manager.live
    assert live is not None
    keepalive(live).failing = True  # type: ignore[attr-defined]
    predictor = predictor_for(manager, predict_pool)
    with pytest.raises(ModelFailed, match="candidate broke under traffic"):
        await predictor.predict(["최고"])
    with pytest.raises(ModelFailed):
        await predictor.predict(["최고", "최악"])
    await eventually(lambda: live.inflight == 0)
    assert (live.requests, live.errors) == (2, 2)
    assert predictor.pending == 0


async def test_cancelled_request_releases_once_when_the_thread_finishes(
    make: ManagerFactory, predict_pool: CountingExecutor
) -> None:
    manager = make()
    await manager.deploy(ref(1))
    live = manager.live
    assert live is not None
    keepalive(live).delay_s = 0.2
    predictor = predictor_for(manager, predict_pool)
    gauge = metric("bluegreen_slot_inflight", slot=live.name)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(predictor.predict(["최고", "최악"]), 0.02)
    assert predictor.pending == 0
    assert live.inflight == 1  # the thread still uses the model: the lease must hold
    await eventually(lambda: live.inflight == 0)
    await asyncio.sleep(0.05)
    assert live.inflight == 0
    assert live.requests == 1
    assert metric("bluegreen_slot_inflight", slot=live.name) == gauge


async def test_releases_exactly_once_over_many_requests(
    make: ManagerFactory, predict_pool: CountingExecutor
) -> None:
    manager = make()
    await manager.deploy(ref(1))
    live = manager.live
    assert live is not None
    predictor = predictor_for(manager, predict_pool)
    jobs = [predictor.predict(["최고"] if i % 2 else ["최고", "최악"]) for i in range(40)]
    results = await asyncio.gather(*jobs)
    assert {r.version for r in results} == {1}
    await eventually(lambda: live.inflight == 0)
    assert (live.requests, live.errors, live.inflight) == (40, 0, 0)


async def test_request_in_flight_during_swap_finishes_on_its_version(
    make: ManagerFactory, predict_pool: CountingExecutor, name: str
) -> None:
    manager = make()
    await manager.deploy(ref(1))
    old = manager.live
    assert old is not None
    keepalive(old).delay_s = 0.15
    predictor = predictor_for(manager, predict_pool)
    slow = asyncio.create_task(predictor.predict(["최고", "최악"]))
    await eventually(lambda: old.inflight == 1)
    await manager.deploy(ref(2))
    fresh = await predictor.predict(["최고"])
    assert fresh.version == 2
    result = await slow
    assert result.version == 1
    assert result.slot == old.name
    # The slot lets go of the model first; the smoke thread then frees it and counts it.
    await eventually(lambda: metric("bluegreen_models_freed_total", model=name) == 1)
    assert old.model is None


async def test_shadow_scores_live_requests_on_the_candidate(
    make: ManagerFactory, predict_pool: CountingExecutor, name: str
) -> None:
    manager = make(canary_percent=10, canary_policy=NEVER)
    await manager.deploy(ref(1))
    await manager.deploy(ref(2))
    manager.set_canary_percent(0)  # candidate kept, but answers nothing itself
    cand = manager.candidate
    assert cand is not None
    predictor = predictor_for(manager, predict_pool, shadow=1.0, name=name)
    result = await predictor.predict(["최고"])
    assert result.version == 1
    await eventually(lambda: metric("bluegreen_canary_compared_total", model=name) == 1)
    assert metric("bluegreen_canary_disagreements_total", model=name) == 0
    await eventually(lambda: cand.inflight == 0)
    assert cand.requests == 1


async def test_executor_does_not_pin_the_model_once_the_lease_is_released(
    predict_pool: CountingExecutor,
) -> None:
    """The drain frees a model as soon as its last lease is released; the worker thread must
    not still hold it then, or the weakref check reports a leak and malloc_trim runs early."""
    manager = SlotManager(LifecycleConfig(), FakeLoader(), predict_pool)
    predictor = predictor_for(manager, predict_pool)
    pinned = 0
    for i in range(300):
        slot = Slot(f"pin-{i}")
        slot.install(loaded(i + 1))
        await predictor._run(slot, ["최고", "최악"])
        await eventually(lambda: slot.inflight == 0)  # noqa: B023
        model = slot.take_model()
        assert model is not None
        probe = weakref.ref(model.keepalive)
        del model
        pinned += probe() is not None
    assert pinned == 0, f"{pinned} of 300 models still referenced after their lease ended"


async def test_answered_requests_are_paired_during_a_canary_only(
    make: ManagerFactory, loader: FakeLoader, predict_pool: CountingExecutor, name: str
) -> None:
    loader.factories[1] = loader.factories[2] = CachingModel
    manager = make(canary_percent=50, canary_policy=NEVER, canary_key=bytes(32))
    pair_pool = CountingExecutor(1)
    pairs = PairScorer(pair_pool, cpu_share=1.0, max_texts=16, model_name=name)
    predictor = predictor_for(manager, predict_pool, name=name, pairs=pairs)
    try:
        await manager.deploy(ref(1))
        await predictor.predict(["최고"])
        assert pair_pool.submitted == 0  # nothing to compare with
        await manager.deploy(ref(2))
        cand = manager.candidate
        assert cand is not None
        for i in range(20):
            await predictor.predict([f"최고 {i}"], client_key=f"user-{i}")
            await eventually(lambda: not pairs.busy)
        assert len(cand.window.pairs) == pair_pool.submitted == 20
        # Pairs are extra work, not requests: the window counts the candidate's own answers.
        assert 0 < cand.window.requests < 20
    finally:
        pair_pool.shutdown(wait=False, cancel_futures=True)


async def test_predict_on_answers_from_the_slot_holding_the_version_outside_the_canary_window(
    make: ManagerFactory, predict_pool: CountingExecutor
) -> None:
    manager = make(canary_percent=50, canary_policy=NEVER)
    await manager.deploy(ref(1))
    await manager.deploy(ref(2))
    live, cand = manager.live, manager.candidate
    assert live is not None
    assert cand is not None
    predictor = predictor_for(manager, predict_pool)
    counted = metric("bluegreen_predictions_total", slot=cand.name, version="2", label="긍정")
    for texts in (["최고"], ["최고", "명작"]):  # inline and executor paths
        assert (await predictor.predict_on(2, texts)).slot == cand.name
        assert (await predictor.predict_on(1, texts)).version == 1
    await eventually(lambda: cand.inflight == 0 and live.inflight == 0)
    # pinned traffic is not the router's sample: the canary judge never sees it
    assert (cand.window.requests, live.window.requests) == (0, 0)
    assert metric("bluegreen_predictions_total", slot=cand.name, version="2", label="긍정") == (
        counted + 3
    )
    with pytest.raises(VersionNotLoaded, match="version 3"):
        await predictor.predict_on(3, ["최고"])
    assert predictor.pending == 0


async def test_predict_on_a_failing_version_fails_without_falling_back(
    make: ManagerFactory, loader: FakeLoader, predict_pool: CountingExecutor
) -> None:
    manager = make(canary_percent=50, canary_policy=NEVER)
    loader.factories[2] = SwitchableModel
    await manager.deploy(ref(1))
    await manager.deploy(ref(2))
    cand = manager.candidate
    assert cand is not None
    keepalive(cand).failing = True  # type: ignore[attr-defined]
    errors = metric("bluegreen_prediction_errors_total", slot=cand.name, version="2")
    predictor = predictor_for(manager, predict_pool)
    for texts in (["최고"], ["최고", "최악"]):
        with pytest.raises(ModelFailed):
            await predictor.predict_on(2, texts)
    await eventually(lambda: cand.inflight == 0)
    assert cand.window.errors == 0
    assert metric("bluegreen_prediction_errors_total", slot=cand.name, version="2") == errors + 2


async def test_predict_on_is_admitted_like_predict(
    make: ManagerFactory, predict_pool: CountingExecutor
) -> None:
    manager = make()
    await manager.deploy(ref(1))
    predictor = predictor_for(manager, predict_pool, max_pending=1)
    keepalive(manager.live).delay_s = 0.2
    slow = asyncio.create_task(predictor.predict(["최고", "최악"]))
    await eventually(lambda: predictor.pending == 1)
    with pytest.raises(Overloaded):
        await predictor.predict_on(1, ["최고"])
    await slow
    assert (await predictor.predict_on(1, ["최고"])).version == 1
