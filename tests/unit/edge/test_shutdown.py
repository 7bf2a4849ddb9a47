"""SIGTERM with a shutdown delay: stopping is marked at once, uvicorn's handler runs later."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import Any

import pytest

from bluegreen.edge.shutdown import CloseWhileStopping, ShutdownDelay, Stopping


@pytest.fixture
def uvicorn_handler() -> Iterator[list[float]]:
    """Stands in for uvicorn's `handle_exit`: records when the signal reached it."""
    calls: list[float] = []

    def handle_exit(sig: int, frame: FrameType | None) -> None:
        calls.append(time.monotonic())

    before = signal.signal(signal.SIGTERM, handle_exit)
    try:
        yield calls
    finally:
        signal.signal(signal.SIGTERM, before)


async def test_sigterm_marks_stopping_and_reaches_uvicorn_after_the_delay(
    uvicorn_handler: list[float],
) -> None:
    stopping = Stopping()
    delay = ShutdownDelay(0.3, stopping)
    assert delay.install()
    sent = time.monotonic()
    signal.raise_signal(signal.SIGTERM)
    await asyncio.sleep(0.05)
    assert stopping.active
    assert uvicorn_handler == []  # still serving
    await asyncio.sleep(0.5)
    assert len(uvicorn_handler) == 1
    assert uvicorn_handler[0] - sent >= 0.3
    delay.uninstall()
    assert signal.getsignal(signal.SIGTERM) is not delay._on_sigterm


async def test_a_second_sigterm_stops_at_once(uvicorn_handler: list[float]) -> None:
    stopping = Stopping()
    delay = ShutdownDelay(30.0, stopping)
    assert delay.install()
    signal.raise_signal(signal.SIGTERM)
    await asyncio.sleep(0.05)
    assert stopping.active
    assert uvicorn_handler == []
    signal.raise_signal(signal.SIGTERM)
    await asyncio.sleep(0.05)
    assert len(uvicorn_handler) == 1
    delay.uninstall()


async def test_uninstall_restores_the_handler_it_replaced(uvicorn_handler: list[float]) -> None:
    replaced = signal.getsignal(signal.SIGTERM)
    delay = ShutdownDelay(1.0, Stopping())
    assert delay.install()
    assert signal.getsignal(signal.SIGTERM) != replaced
    delay.uninstall()
    assert signal.getsignal(signal.SIGTERM) == replaced


async def test_no_delay_installs_nothing(uvicorn_handler: list[float]) -> None:
    replaced = signal.getsignal(signal.SIGTERM)
    assert not ShutdownDelay(0.0, Stopping()).install()
    assert signal.getsignal(signal.SIGTERM) == replaced


def test_off_the_main_thread_nothing_is_installed() -> None:
    installed: list[bool] = []

    def run() -> None:
        async def install() -> None:
            installed.append(ShutdownDelay(5.0, Stopping()).install())

        asyncio.run(install())

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert installed == [False]


async def _respond(stopping: Stopping) -> dict[bytes, list[bytes]]:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-type", b"text/plain"), (b"connection", b"keep-alive")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})

    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    await CloseWhileStopping(app, stopping)({"type": "http"}, receive, send)
    headers: dict[bytes, list[bytes]] = {}
    for key, value in sent[0]["headers"]:
        headers.setdefault(key, []).append(value)
    assert sent[1]["body"] == b"ok"
    return headers


async def test_responses_say_connection_close_only_while_stopping() -> None:
    stopping = Stopping()
    assert (await _respond(stopping))[b"connection"] == [b"keep-alive"]
    stopping.since = time.monotonic()
    headers = await _respond(stopping)
    assert headers[b"connection"] == [b"close"]
    assert headers[b"content-type"] == [b"text/plain"]
