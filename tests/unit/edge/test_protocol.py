"""EdgeProtocol driven byte by byte over a fake transport, on a real event loop, in front of a
small real ASGI app: head size and deadline, requests in flight, the connection cap."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from bluegreen.edge.protocol import EdgeLimits, EdgeProtocol, WorkerEdge
from tests.fakes import FakeTransport
from tests.unit.helpers import eventually, metric


class App:
    """Answers 200 with the path, body length and client it saw; `/gate` waits for `release`."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.release = asyncio.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        self.calls.append(scope["path"])
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
        if scope["path"] == "/gate":
            await self.release.wait()
        elif scope["path"] == "/sleep":
            await asyncio.sleep(0.4)
        body = json.dumps({"path": scope["path"], "body": size}).encode()
        headers = [(b"content-type", b"application/json"),
                   (b"content-length", str(len(body)).encode())]  # fmt: skip
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def parse(written: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """The responses in `written` (Content-Length bodies only)."""
    out = []
    rest = bytes(written)
    while rest:
        head, _, rest = rest.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in lines[1:])
        size = int(headers.get("content-length", "0"))
        out.append((int(lines[0].split()[1]), headers, rest[:size]))
        rest = rest[size:]
    return out


class Server:
    """One worker's shared state; `connect()` opens a connection to it."""

    def __init__(self, app: App, limits: EdgeLimits, keep_alive_s: int = 5) -> None:
        self.config = Config(app=app, lifespan="off", proxy_headers=False, log_config=None,
                             timeout_keep_alive=keep_alive_s)  # fmt: skip
        self.config.load()
        self.state = ServerState()
        self.edge = WorkerEdge(limits)

    def connect(self) -> Client:
        return Client(self)


class Client:
    def __init__(self, server: Server) -> None:
        self.transport = FakeTransport()
        self.protocol = EdgeProtocol(server.config, server.state, {}, edge=server.edge)
        self.transport.set_protocol(self.protocol)
        self.protocol.connection_made(self.transport)  # type: ignore[arg-type]

    def send(self, data: bytes) -> None:
        self.protocol.data_received(data)

    def responses(self) -> list[tuple[int, dict[str, str], bytes]]:
        return parse(bytes(self.transport.written))

    @property
    def closed(self) -> bool:
        return self.transport.closed


def limits(**overrides: Any) -> EdgeLimits:
    values: dict[str, Any] = {
        "max_header_bytes": 4096, "header_timeout_s": 5.0, "max_connections": 100,
        "max_in_flight": None, "linger_s": 0.2,
    }  # fmt: skip
    return EdgeLimits(**{**values, **overrides})


@pytest.fixture
def app() -> App:
    return App()


@pytest.fixture
async def clients() -> AsyncIterator[list[Client]]:
    opened: list[Client] = []
    yield opened
    for client in opened:
        client.transport.close()
    await asyncio.sleep(0)


def connect(server: Server, clients: list[Client]) -> Client:
    client = server.connect()
    clients.append(client)
    return client


GET = b"GET /predict HTTP/1.1\r\nHost: x\r\n\r\n"


async def test_a_head_within_the_limit_reaches_the_app(app: App, clients: list[Client]) -> None:
    client = connect(Server(app, limits()), clients)
    headers = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 70) for i in range(40))  # ~3.3 KiB
    client.send(b"GET /predict HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
    await eventually(lambda: bool(client.responses()))
    assert client.responses()[0][0] == 200
    assert not client.closed


async def test_a_huge_header_is_refused_after_about_the_limit(
    app: App, clients: list[Client]
) -> None:
    client = connect(Server(app, limits(max_header_bytes=4096)), clients)
    before = metric("bluegreen_http_connections_closed_total", reason="header_too_large")
    client.send(b"GET /predict HTTP/1.1\r\nX-Big: ")
    sent = 0
    while not client.transport.written and sent < 1_000_000:
        client.send(b"a" * 1000)
        sent += 1000
    assert sent <= 4096 + 2000  # refused one chunk past the limit, not at the end
    [(status, headers, body)] = client.responses()
    assert status == 431
    assert headers["connection"] == "close"
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {
        "status_code": 431, "error": "headers_too_large",
        "detail": "request line and headers exceed 4096 bytes",
    }  # fmt: skip
    assert client.transport.eof_written  # half-closed: the client reads the 431, not a reset
    client.send(b"a" * 100_000)  # what it still sends is dropped, not parsed
    assert len(client.responses()) == 1
    assert app.calls == []
    await eventually(lambda: client.closed, within_s=2)
    after = metric("bluegreen_http_connections_closed_total", reason="header_too_large")
    assert after == before + 1


@pytest.mark.parametrize("where", ["headers", "url"])
async def test_a_large_head_in_one_chunk_is_refused(
    app: App, clients: list[Client], where: str
) -> None:
    client = connect(Server(app, limits(max_header_bytes=4096)), clients)
    if where == "headers":
        many = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 90) for i in range(60))  # ~6 KiB
        client.send(b"POST /predict HTTP/1.1\r\nContent-Length: 2\r\n" + many + b"\r\n{}")
    else:
        client.send(b"GET /" + b"p" * 5000 + b" HTTP/1.1\r\n\r\n")
    [(status, _, _)] = client.responses()
    assert status == 431
    assert app.calls == []


async def test_a_large_pipelined_head_ends_the_connection_after_the_response_before_it(
    app: App, clients: list[Client]
) -> None:
    client = connect(Server(app, limits(max_header_bytes=4096)), clients)
    many = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 90) for i in range(60))  # ~6 KiB
    client.send(GET + b"GET /second HTTP/1.1\r\n" + many + b"\r\n")
    await eventually(lambda: client.closed)
    [(status, headers, _)] = client.responses()
    assert status == 200
    assert headers["connection"] == "close"
    assert app.calls == ["/predict"]


async def test_body_bytes_never_count_toward_the_head(app: App, clients: list[Client]) -> None:
    client = connect(Server(app, limits(max_header_bytes=1024)), clients)
    body = b"x" * 200_000
    head = b"POST /predict HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(body)
    client.send(head + body[:100_000])  # head and a large part of the body in one chunk
    client.send(body[100_000:])
    await eventually(lambda: bool(client.responses()))
    [(status, _, answer)] = client.responses()
    assert status == 200
    assert json.loads(answer)["body"] == len(body)


async def test_an_invalid_request_still_gets_400(app: App, clients: list[Client]) -> None:
    client = connect(Server(app, limits()), clients)
    client.send(b"\x00\x01 nonsense\r\n\r\n")
    [(status, _, _)] = client.responses()
    assert status == 400
    assert client.closed


async def test_a_connection_that_sends_nothing_is_closed_at_the_head_deadline(
    app: App, clients: list[Client]
) -> None:
    client = connect(Server(app, limits(header_timeout_s=0.2)), clients)
    await asyncio.sleep(0.1)
    assert not client.closed
    await eventually(lambda: client.closed, within_s=1)
    assert client.transport.written == b""  # nothing to answer: no request was begun


async def test_a_slow_head_is_closed_at_the_deadline_while_bytes_keep_coming(
    app: App, clients: list[Client]
) -> None:
    client = connect(Server(app, limits(header_timeout_s=0.3)), clients)
    loop = asyncio.get_running_loop()
    started = loop.time()
    for byte in GET[:-4]:  # never the blank line that ends the head
        if client.transport.written:
            break
        client.send(bytes([byte]))
        await asyncio.sleep(0.02)
    elapsed = loop.time() - started
    assert 0.25 <= elapsed < 0.6
    [(status, headers, body)] = client.responses()
    assert status == 408
    assert headers["connection"] == "close"
    assert json.loads(body)["error"] == "request_timeout"
    assert app.calls == []
    await eventually(lambda: client.closed, within_s=2)


async def test_keep_alive_idles_on_uvicorns_timeout_and_a_later_head_has_the_deadline(
    app: App, clients: list[Client]
) -> None:
    server = Server(app, limits(header_timeout_s=0.2), keep_alive_s=2)
    client = connect(server, clients)
    client.send(GET)
    await eventually(lambda: len(client.responses()) == 1)
    await asyncio.sleep(0.5)  # idle between requests: well past the head deadline
    assert not client.closed
    client.send(GET[:10])  # a second request begins, and stalls
    await eventually(lambda: len(client.responses()) == 2, within_s=1)
    assert client.responses()[1][0] == 408


async def test_a_request_in_flight_outlives_the_head_deadline(
    app: App, clients: list[Client]
) -> None:
    client = connect(Server(app, limits(header_timeout_s=0.1)), clients)
    client.send(b"GET /sleep HTTP/1.1\r\n\r\n")  # the app takes 0.4 s
    await eventually(lambda: bool(client.responses()), within_s=2)
    assert client.responses()[0][0] == 200
    assert not client.closed


async def test_idle_connections_do_not_count_toward_the_in_flight_cap(
    app: App, clients: list[Client]
) -> None:
    server = Server(app, limits(max_in_flight=2))
    for _ in range(20):
        connect(server, clients)  # open, idle: stock uvicorn's limit_concurrency counts these
    client = connect(server, clients)
    client.send(GET)
    await eventually(lambda: bool(client.responses()))
    assert client.responses()[0][0] == 200


async def test_beyond_the_in_flight_cap_requests_get_503_and_probes_still_pass(
    app: App, clients: list[Client]
) -> None:
    server = Server(app, limits(max_in_flight=1))
    busy = connect(server, clients)
    busy.send(b"GET /gate HTTP/1.1\r\n\r\n")
    await eventually(lambda: app.calls == ["/gate"])
    before = metric("bluegreen_requests_shed_total", reason="in_flight_cap")
    shed = connect(server, clients)
    shed.send(GET)
    await eventually(lambda: bool(shed.responses()))
    [(status, headers, body)] = shed.responses()
    assert status == 503
    assert headers["retry-after"] == "5"
    assert json.loads(body)["error"] == "overloaded"
    assert metric("bluegreen_requests_shed_total", reason="in_flight_cap") == before + 1
    for path in ("/healthz", "/readyz", "/metrics"):
        probe = connect(server, clients)
        probe.send(b"GET %s HTTP/1.1\r\n\r\n" % path.encode())
        await eventually(lambda probe=probe: bool(probe.responses()))  # type: ignore[misc]
        assert probe.responses()[0][0] == 200, path
    app.release.set()
    await eventually(lambda: bool(busy.responses()))
    assert busy.responses()[0][0] == 200


async def test_at_the_cap_a_new_connection_evicts_the_longest_idle(
    app: App, clients: list[Client]
) -> None:
    server = Server(app, limits(max_connections=3))
    first, second, third = (connect(server, clients) for _ in range(3))
    first.send(GET)  # idle again after its response: now the most recently idle
    await eventually(lambda: bool(first.responses()))
    before = metric("bluegreen_http_connections_closed_total", reason="evicted")
    fourth = connect(server, clients)
    assert second.closed
    assert [c.closed for c in (first, third, fourth)] == [False, False, False]
    assert metric("bluegreen_http_connections_closed_total", reason="evicted") == before + 1
    fourth.send(GET)
    await eventually(lambda: bool(fourth.responses()))
    assert fourth.responses()[0][0] == 200
    await asyncio.sleep(0)  # the evicted connection's connection_lost
    assert len(server.edge.table) == 3


async def test_at_the_cap_with_every_connection_busy_a_new_one_is_refused(
    app: App, clients: list[Client]
) -> None:
    server = Server(app, limits(max_connections=2))
    busy = [connect(server, clients) for _ in range(2)]
    for client in busy:
        client.send(b"GET /gate HTTP/1.1\r\n\r\n")
    await eventually(lambda: len(app.calls) == 2)
    before = metric("bluegreen_http_connections_closed_total", reason="refused")
    late = connect(server, clients)
    assert late.closed
    assert metric("bluegreen_http_connections_closed_total", reason="refused") == before + 1
    app.release.set()
    await eventually(lambda: all(c.responses() for c in busy))
    assert [c.responses()[0][0] for c in busy] == [200, 200]
