"""/predict throughput on the edge protocol (`bluegreen.edge.protocol`) vs uvicorn's stock
httptools protocol: the same app, model and options, two servers side by side, wrk runs
interleaved ABBA so that drift on the shared cores hits both alike.

On two shared cores the wrk numbers move by more than the protocol can cost, so the CPU time
each protocol spends per request is also measured on its own (`protocol_cost`): both classes
driven in one process on uvloop, over a transport that only swallows writes, in front of a
no-op ASGI app."""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.wrk import abba_rounds, lua_script, side_by_side
from tests.support.servers import AppServer

SERVERS = {"edge": "bluegreen serve (edge protocol)", "plain": "stock uvicorn httptools"}


@contextlib.contextmanager
def _app(out: Path, tracking_uri: str, env: dict[str, str], kind: str) -> Iterator[AppServer]:
    app = AppServer(out / f"app-edge-{kind}", tracking_uri, env=env)
    if kind == "plain":
        app.args = [sys.executable, "-m", "bench.plain_uvicorn"]
    with app.running(timeout=180):
        yield app


def run(
    out: Path, tracking_uri: str, env: dict[str, str], texts: list[str], *,
    duration: float, rounds: int, log: Callable[[str], None],
) -> dict[str, Any]:  # fmt: skip
    scripts = out / "wrk"
    scripts.mkdir(parents=True, exist_ok=True)
    lua = scripts / "edge-predict.lua"
    lua.write_text(lua_script([json.dumps({"text": t}, ensure_ascii=False) for t in texts]))
    with (
        _app(out, tracking_uri, env, "edge") as edge,
        _app(out, tracking_uri, env, "plain") as plain,
    ):
        runs = abba_rounds(
            {"edge": f"{edge.url}/predict", "plain": f"{plain.url}/predict"},
            {"edge": edge.pid, "plain": plain.pid}, lua,
            a="edge", b="plain", duration=duration, rounds=rounds, log=log,
        )  # fmt: skip
    compared = side_by_side(runs, "edge", "plain")
    p = compared["median"]["plain"]
    log("  protocol CPU per request, in-process")
    cost = protocol_cost()
    log(f"  edge {cost['us_per_request']['edge']} µs, plain {cost['us_per_request']['plain']} µs")
    # What that extra CPU is worth against a whole /predict request on the stock server.
    implied = p["server_cpu_ms_per_request"] / (
        p["server_cpu_ms_per_request"] + cost["extra_us_per_request"] / 1000
    )
    return {
        "protocol_cost": cost,
        "implied_rps_ratio": round(implied, 4),
        "runs": runs,
        **compared,
        "duration_s": duration,
        "rounds": rounds,
        "connections": 16,
    }


# --- per-request CPU of the protocol alone ------------------------------------------------------
_BODY = json.dumps({"text": "정말 재미있는 영화였어요!"}).encode()
_REQUEST = (
    b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nContent-Type: application/json\r\n"
    b"X-Request-ID: wrk-1\r\nContent-Length: %d\r\n\r\n" % len(_BODY)
) + _BODY


class _SinkTransport(asyncio.Transport):
    """Swallows writes; the protocol under measurement is the only code that runs."""

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(name)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _per_request_us(kind: str, requests: int) -> float:
    from uvicorn.config import Config
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    from uvicorn.server import ServerState

    from bluegreen.cli import uvicorn_options
    from bluegreen.edge.protocol import EdgeProtocol, WorkerEdge
    from bluegreen.settings import Settings

    answered = asyncio.Event()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"2")]
    start = {"type": "http.response.start", "status": 200, "headers": headers}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send(start)
        await send({"type": "http.response.body", "body": b"{}"})
        answered.set()

    settings = Settings()
    limit = uvicorn_options(settings)["limit_concurrency"]
    config = Config(app=app, lifespan="off", proxy_headers=False, log_config=None,
                    limit_concurrency=limit)  # fmt: skip
    config.load()
    state = ServerState()
    protocol: HttpToolsProtocol
    if kind == "edge":
        protocol = EdgeProtocol(config, state, {}, edge=WorkerEdge.from_settings(settings, limit))
    else:
        protocol = HttpToolsProtocol(config, state, {})
    protocol.connection_made(_SinkTransport())
    started = time.process_time()
    for _ in range(requests):
        answered.clear()
        protocol.data_received(_REQUEST)
        await answered.wait()
    elapsed = time.process_time() - started
    protocol.connection_lost(None)
    return elapsed / requests * 1e6


def protocol_cost(requests: int = 20_000, rounds: int = 7) -> dict[str, Any]:
    """Median CPU µs per keep-alive request of each protocol, rounds interleaved ABBA."""
    import uvloop

    samples: dict[str, list[float]] = {kind: [] for kind in SERVERS}
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        for kind in SERVERS:  # warm both: imports, the parser, allocator pools
            runner.run(_per_request_us(kind, requests // 10))
        for r in range(rounds):
            for kind in ("edge", "plain") if r % 2 == 0 else ("plain", "edge"):
                samples[kind].append(runner.run(_per_request_us(kind, requests)))
    edge, plain = statistics.median(samples["edge"]), statistics.median(samples["plain"])
    return {
        "us_per_request": {"edge": round(edge, 2), "plain": round(plain, 2)},
        "extra_us_per_request": round(edge - plain, 2),
        "samples": samples,
        "requests": requests,
        "rounds": rounds,
    }
