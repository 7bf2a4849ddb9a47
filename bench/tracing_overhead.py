"""/predict throughput with tracing on (`BLUEGREEN_TRACING=true`, every request sampled,
exported over OTLP/HTTP to a receiver in this process that only counts them) vs off: the same
app, model and options, two servers side by side, wrk runs interleaved ABBA so that drift on the
shared cores hits both alike. Off is the default build's own path (one flag check per step).

On two shared cores the wrk numbers move by more than spans can cost, so the CPU each traced
request adds is also measured on its own (`span_cost`): the server-span middleware and the
predict and slot spans around a no-op ASGI app, with the batch processor and OTLP protobuf
encoding of every span counted, against the same app untraced."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from bench.wrk import abba_rounds, lua_script, side_by_side
from tests.support.otlp import OtlpReceiver
from tests.support.servers import AppServer

SERVERS = {"on": "tracing on (OTLP/HTTP, all sampled)", "off": "tracing off (default)"}


@contextlib.contextmanager
def _app(
    out: Path, tracking_uri: str, env: dict[str, str], kind: str, receiver: OtlpReceiver
) -> Iterator[AppServer]:
    extra = {}
    if kind == "on":
        extra = {"BLUEGREEN_TRACING": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
                 "OTEL_SERVICE_NAME": "bluegreen-bench"}  # fmt: skip
    app = AppServer(out / f"app-tracing-{kind}", tracking_uri, env={**env, **extra})
    with app.running(timeout=180):
        yield app


def run(
    out: Path, tracking_uri: str, env: dict[str, str], texts: list[str], *,
    duration: float, rounds: int, log: Callable[[str], None],
) -> dict[str, Any]:  # fmt: skip
    scripts = out / "wrk"
    scripts.mkdir(parents=True, exist_ok=True)
    lua = scripts / "tracing-predict.lua"
    lua.write_text(lua_script([json.dumps({"text": t}, ensure_ascii=False) for t in texts]))
    receiver = OtlpReceiver(keep=False)  # counts only: its CPU shares the cores with the servers
    receiver.start()
    try:
        with (
            _app(out, tracking_uri, env, "on", receiver) as on,
            _app(out, tracking_uri, env, "off", receiver) as off,
        ):
            runs = abba_rounds(
                {"on": f"{on.url}/predict", "off": f"{off.url}/predict"},
                {"on": on.pid, "off": off.pid}, lua,
                a="on", b="off", duration=duration, rounds=rounds, log=log,
            )  # fmt: skip
        exported = receiver.count
    finally:
        receiver.stop()
    compared = side_by_side(runs, "on", "off")
    off_ = compared["median"]["off"]
    log("  span CPU per request, in-process")
    cost = span_cost()
    log(f"  traced {cost['us_per_request']['on']} µs, untraced {cost['us_per_request']['off']} µs")
    implied = off_["server_cpu_ms_per_request"] / (
        off_["server_cpu_ms_per_request"] + cost["extra_us_per_request"] / 1000
    )
    return {
        "span_cost": cost,
        "implied_rps_ratio": round(implied, 4),
        "runs": runs,
        **compared,
        "spans_exported": exported,
        "duration_s": duration,
        "rounds": rounds,
        "connections": 16,
    }


# --- per-request CPU of the spans alone ---------------------------------------------------------
class _EncodingSink:
    """A span exporter that does the OTLP exporter's CPU work (protobuf encoding) and no I/O."""

    def export(self, spans: Sequence[Any]) -> Any:
        from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
        from opentelemetry.sdk.trace.export import SpanExportResult

        encode_spans(spans).SerializeToString()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


async def _per_request_us(traced: bool, requests: int) -> float:
    from bluegreen import tracing

    start = {"type": "http.response.start", "status": 200, "headers": []}
    body = {"type": "http.response.body", "body": b"{}"}
    headers = [(b"content-type", b"application/json"), (b"x-request-id", b"wrk-1")]
    scope = {"type": "http", "method": "POST", "path": "/predict", "path_template": "/predict",
             "headers": headers}  # fmt: skip

    async def app(scope: Any, receive: Any, send: Any) -> None:
        # the shape of the predictor's spans: a flag check per step, spans only when on
        if tracing.ENABLED:
            with tracing.span("predict", {tracing.MODEL: "m", tracing.TEXTS: 1}) as span:
                with tracing.span("slot", {tracing.SLOT: "blue", tracing.VERSION: 1}):
                    pass
                tracing.set_attributes(span, {tracing.VERSION: 1, tracing.SLOT: "blue"})
        await send(start)
        await send(body)

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        pass

    if traced:
        # A queue that holds the whole run: spans dropped on overflow would never be encoded
        # and would flatter the cost.
        queue = os.environ.get("OTEL_BSP_MAX_QUEUE_SIZE")
        os.environ["OTEL_BSP_MAX_QUEUE_SIZE"] = str(3 * requests + 1)
        try:
            tracing.enable(_EncodingSink())  # type: ignore[arg-type]
        finally:
            if queue is None:
                del os.environ["OTEL_BSP_MAX_QUEUE_SIZE"]
            else:
                os.environ["OTEL_BSP_MAX_QUEUE_SIZE"] = queue
    entry = tracing.TracingMiddleware(app) if traced else app
    started = time.process_time()  # every thread's: the batch processor's export included
    try:
        for _ in range(requests):
            await entry(scope, receive, send)
    finally:
        tracing.shutdown()  # flushes what is queued, inside the measured time
    return (time.process_time() - started) / requests * 1e6


def span_cost(requests: int = 20_000, rounds: int = 7) -> dict[str, Any]:
    """Median CPU µs per request, traced and untraced, rounds interleaved ABBA."""
    import uvloop

    samples: dict[str, list[float]] = {kind: [] for kind in SERVERS}
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        for kind in SERVERS:  # warm both: imports, the SDK's first tracer
            runner.run(_per_request_us(kind == "on", requests // 10))
        for r in range(rounds):
            for kind in ("on", "off") if r % 2 == 0 else ("off", "on"):
                samples[kind].append(runner.run(_per_request_us(kind == "on", requests)))
    on, off = statistics.median(samples["on"]), statistics.median(samples["off"])
    return {
        "us_per_request": {"on": round(on, 2), "off": round(off, 2)},
        "off_checks_ns_per_request": round(_off_checks_ns(), 1),
        "extra_us_per_request": round(on - off, 2),
        "samples": samples,
        "requests": requests,
        "rounds": rounds,
    }


def _off_checks_ns(calls: int = 1_000_000) -> float:
    """What tracing off adds to today's request path: the flag read by `predict` and `_run`."""
    import timeit

    from bluegreen import tracing

    def checked() -> None:
        if tracing.ENABLED:
            return
        if tracing.ENABLED:
            return

    def bare() -> None:
        return

    with_checks = min(timeit.repeat(checked, number=calls, repeat=5))
    without = min(timeit.repeat(bare, number=calls, repeat=5))
    return max(0.0, with_checks - without) / calls * 1e9
