"""Tracing: the spans of the request path and of a swap, their parents and attributes, a
caller's traceparent honoured, and nothing at all recorded while tracing is off."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from bluegreen import tracing
from bluegreen.serving.lifecycle import Outcome
from bluegreen.serving.predictor import Predictor
from tests.fakes import BrokenModel, CountingExecutor, FakeLoader, FakeRegistry, SwitchableModel
from tests.unit.api.conftest import start_app
from tests.unit.helpers import NEVER, ManagerFactory, eventually, ref

LONG_TEXT = "정말 최고의 영화 " * 20  # over inline_max_chars: runs in the executor
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN_ID = "00f067aa0ba902b7"
app_client = contextmanager(start_app)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing.enable(exporter, batch=False)
    yield exporter
    tracing.shutdown()


@pytest.fixture
def pool() -> Iterator[CountingExecutor]:
    executor = CountingExecutor(2)
    yield executor
    executor.shutdown(wait=False, cancel_futures=True)


def predictor_for(manager: Any, pool: CountingExecutor) -> Predictor:
    return Predictor(manager, pool, max_pending=100, inline_max_chars=50, shadow_fraction=0.0,
                     model_name="m")  # fmt: skip


def named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def one(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    found = named(exporter, name)
    assert len(found) == 1, [s.name for s in exporter.get_finished_spans()]
    return found[0]


def is_child(child: ReadableSpan, parent: ReadableSpan) -> bool:
    assert child.parent is not None, f"{child.name} has no parent"
    assert parent.context is not None
    return bool(child.parent.span_id == parent.context.span_id)


@pytest.mark.parametrize("text", ["최고", LONG_TEXT], ids=["inline", "executor"])
async def test_predict_span_parents_one_slot_span_naming_version_and_slot(
    make: ManagerFactory, pool: CountingExecutor, spans: InMemorySpanExporter, text: str
) -> None:
    manager = make()
    await manager.deploy(ref(4))
    live = manager.live
    assert live is not None
    spans.clear()

    result = await predictor_for(manager, pool).predict([text])

    predict, slot = one(spans, "predict"), one(spans, "slot")
    assert is_child(slot, predict)
    assert predict.parent is None  # no request span around a bare predictor
    for span in (predict, slot):
        assert span.attributes is not None
        assert span.attributes[tracing.VERSION] == result.version == 4
        assert span.attributes[tracing.SLOT] == result.slot == live.name
    # the slot span covers the model call, also when it ran on a worker thread
    assert predict.start_time is not None
    assert slot.start_time is not None
    assert predict.end_time is not None
    assert slot.end_time is not None
    assert predict.start_time <= slot.start_time <= slot.end_time <= predict.end_time
    assert pool.submitted == (1 if text == LONG_TEXT else 0)


async def test_candidate_failure_answered_from_live_shows_two_slot_spans(
    make: ManagerFactory, loader: FakeLoader, pool: CountingExecutor, spans: InMemorySpanExporter
) -> None:
    manager = make(canary_percent=100, canary_policy=NEVER)
    loader.factories[2] = SwitchableModel
    await manager.deploy(ref(1))
    await manager.deploy(ref(2))
    cand, live = manager.candidate, manager.live
    assert cand is not None
    assert live is not None
    assert cand.model is not None
    cand.model.keepalive.failing = True  # type: ignore[attr-defined]
    spans.clear()

    result = await predictor_for(manager, pool).predict(["최고"])

    assert result.version == 1
    predict = one(spans, "predict")
    failed, answered = sorted(named(spans, "slot"), key=lambda s: s.start_time or 0)
    assert is_child(failed, predict)
    assert is_child(answered, predict)
    assert failed.attributes is not None
    assert answered.attributes is not None
    assert (failed.attributes[tracing.SLOT], failed.attributes[tracing.VERSION]) == (cand.name, 2)
    assert failed.status.status_code is StatusCode.ERROR
    assert (answered.attributes[tracing.SLOT], answered.attributes[tracing.VERSION]) == (
        live.name,
        1,
    )
    assert answered.status.status_code is not StatusCode.ERROR
    assert predict.status.status_code is not StatusCode.ERROR


async def test_a_request_pinned_to_a_version_is_traced_like_predict(
    make: ManagerFactory, pool: CountingExecutor, spans: InMemorySpanExporter
) -> None:
    manager = make(canary_percent=50, canary_policy=NEVER)
    await manager.deploy(ref(1))
    await manager.deploy(ref(2))
    cand = manager.candidate
    assert cand is not None
    spans.clear()

    await predictor_for(manager, pool).predict_on(2, ["최고"])

    predict, slot = one(spans, "predict"), one(spans, "slot")
    assert is_child(slot, predict)
    assert predict.attributes is not None
    assert slot.attributes is not None
    assert predict.attributes["bluegreen.pinned_version"] == 2
    assert (slot.attributes[tracing.SLOT], slot.attributes[tracing.VERSION]) == (cand.name, 2)


async def test_a_swap_is_one_span_per_step_under_its_deploy(
    make: ManagerFactory, spans: InMemorySpanExporter
) -> None:
    manager = make()
    await manager.deploy(ref(1))
    old = manager.live
    assert old is not None
    spans.clear()

    result = await manager.deploy(ref(2))
    await eventually(lambda: len(named(spans, "free")) == 1)

    assert result.outcome is Outcome.PROMOTED
    new = manager.live
    assert new is not None
    assert new is not old
    deploy = one(spans, "deploy")
    load, smoke, promote = one(spans, "load"), one(spans, "smoke"), one(spans, "promote")
    drain, free = one(spans, "drain"), one(spans, "free")
    assert deploy.parent is None
    assert all(is_child(step, deploy) for step in (load, smoke, promote))
    # the old version drains after the promotion that retired it
    assert is_child(drain, promote)
    assert is_child(free, promote)
    assert deploy.attributes is not None
    assert deploy.attributes["bluegreen.outcome"] == "promoted"
    for step in (load, smoke, promote):
        assert step.attributes is not None
        assert (step.attributes[tracing.VERSION], step.attributes[tracing.SLOT]) == (2, new.name)
    for step in (drain, free):
        assert step.attributes is not None
        assert (step.attributes[tracing.VERSION], step.attributes[tracing.SLOT]) == (1, old.name)
    assert promote.attributes is not None
    assert promote.attributes["bluegreen.previous_version"] == 1
    starts = [s.start_time or 0 for s in (load, smoke, promote, drain, free)]
    assert starts == sorted(starts)
    assert all(s.status.status_code is not StatusCode.ERROR for s in spans.get_finished_spans())


async def test_asking_for_the_version_already_served_records_no_deploy(
    make: ManagerFactory, spans: InMemorySpanExporter
) -> None:
    manager = make()
    await manager.deploy(ref(1))
    spans.clear()

    for _ in range(3):  # what the control loop does on every tick
        assert (await manager.deploy(ref(1))).outcome is Outcome.UNCHANGED

    assert spans.get_finished_spans() == ()


@pytest.mark.parametrize("stage", ["load", "smoke"])
async def test_a_rejected_version_marks_its_step_and_deploy_failed(
    make: ManagerFactory, loader: FakeLoader, spans: InMemorySpanExporter, stage: str
) -> None:
    if stage == "load":
        loader.failures[3] = RuntimeError("artifact is garbage")
    else:
        loader.factories[3] = lambda: BrokenModel("nan")
    manager = make()

    result = await manager.deploy(ref(3))

    assert (result.outcome, result.stage) == (Outcome.REJECTED, stage)
    step, deploy = one(spans, stage), one(spans, "deploy")
    assert is_child(step, deploy)
    assert step.status.status_code is StatusCode.ERROR
    assert deploy.status.status_code is StatusCode.ERROR
    assert deploy.attributes is not None
    assert deploy.attributes["bluegreen.stage"] == stage
    assert named(spans, "promote") == []


async def test_off_nothing_is_recorded_and_the_flag_gates_every_span(
    make: ManagerFactory, pool: CountingExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A recording tracer behind a False flag: any span the code made without checking the
    # flag would land here.
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "_tracer", provider.get_tracer("test"))
    assert not tracing.ENABLED

    manager = make()
    await manager.deploy(ref(1))
    await manager.deploy(ref(2))
    predictor = predictor_for(manager, pool)
    await predictor.predict(["최고"])
    await predictor.predict([LONG_TEXT])
    await predictor.predict_on(2, ["최고"])
    await eventually(lambda: all(s.inflight == 0 and s.version != 1 for s in manager.slots))

    assert exporter.get_finished_spans() == ()
    with tracing.span("anything") as span:
        assert not span.is_recording()


def test_http_request_span_continues_the_callers_trace(
    tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    registry = FakeRegistry()
    registry.add(1)
    with app_client(tmp_path, registry, FakeLoader(), ready=True, tracing=True) as client:
        spans.clear()
        response = client.post(
            "/predict",
            json={"text": "정말 최고의 영화"},
            headers={"traceparent": f"00-{TRACE_ID}-{PARENT_SPAN_ID}-01"},
        )
        assert response.status_code == 200
        bad = client.post("/predict", json={"text": ""})
        assert bad.status_code == 400

    server = [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert [s.name for s in server] == ["POST /predict", "POST /predict"]
    ok, refused = server
    assert ok.context is not None
    assert ok.parent is not None
    assert format(ok.context.trace_id, "032x") == TRACE_ID
    assert format(ok.parent.span_id, "016x") == PARENT_SPAN_ID
    assert ok.attributes is not None
    assert refused.attributes is not None
    assert ok.attributes["http.route"] == "/predict"
    assert ok.attributes["http.response.status_code"] == 200
    assert ok.attributes[tracing.REQUEST_ID] == response.headers["X-Request-ID"]
    predict = one(spans, "predict")
    assert is_child(predict, ok)
    assert is_child(one(spans, "slot"), predict)
    assert predict.attributes is not None
    assert str(predict.attributes[tracing.VERSION]) == response.headers["X-Model-Version"]
    # a refused request is the client's error, not a failed server span; a new trace
    assert refused.attributes["http.response.status_code"] == 400
    assert refused.status.status_code is not StatusCode.ERROR
    assert refused.context is not None
    assert refused.context.trace_id != ok.context.trace_id


ROUTER_REFUSALS = [
    ("GET", "/no-such-route", 404),
    ("GET", "/v2/models/m/no-such", 404),
    ("DELETE", "/v2", 405),
    ("GET", "/v2/models/ensemble-sentiment-model/infer", 405),
    ("GET", "/predict", 405),
]


def test_requests_the_router_refuses_get_a_server_span_with_their_status(
    tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    registry = FakeRegistry()
    registry.add(1)
    with app_client(tmp_path, registry, FakeLoader(), ready=True, tracing=True) as client:
        spans.clear()
        for method, path, status in ROUTER_REFUSALS:
            response = client.request(
                method,
                path,
                headers={"X-Request-ID": f"refused-{status}",
                         "traceparent": f"00-{TRACE_ID}-{PARENT_SPAN_ID}-01"},
            )  # fmt: skip
            assert response.status_code == status

    server = [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert len(server) == len(ROUTER_REFUSALS)
    for span, (method, path, status) in zip(server, ROUTER_REFUSALS, strict=True):
        assert span.attributes is not None
        # no route matched: the bare method, never the raw path (unbounded span names)
        assert span.name == method
        assert "http.route" not in span.attributes
        assert span.attributes["url.path"] == path
        assert span.attributes["http.response.status_code"] == status
        assert span.attributes[tracing.REQUEST_ID] == f"refused-{status}"
        assert span.status.status_code is not StatusCode.ERROR  # the client's error
        assert span.parent is not None
        assert format(span.parent.span_id, "016x") == PARENT_SPAN_ID


def test_off_the_app_installs_no_tracing_middleware(tmp_path: Path) -> None:
    registry = FakeRegistry()
    registry.add(1)
    with app_client(tmp_path, registry, FakeLoader(), ready=True) as client:
        assert client.post("/predict", json={"text": "최고"}).status_code == 200
        assert not tracing.ENABLED
        handler, wrappers = client.app.asgi_handler, []
        while hasattr(handler, "app"):
            wrappers.append(type(handler))
            handler = handler.app
        assert tracing.TracingMiddleware not in wrappers
        assert tracing.TracingMiddleware not in client.app.middleware
