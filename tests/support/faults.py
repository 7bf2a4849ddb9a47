"""Fault injection helpers for integration tests: a switchable TCP proxy in front of the
registry, a background load generator that records every request, metric scraping and
/proc sampling. All real sockets and processes; nothing here is a fake."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import attrs
import httpx

from tests.support.servers import free_port, wait_http

LONG_TEXT = "정말 최고의 영화 추천합니다 " * 20
"""Over BLUEGREEN_INLINE_PREDICT_MAX_CHARS (300): scored on the prediction executor."""


class TcpProxy:
    """Forwards a fixed local port to a target port; `down()` closes the listener and every
    open connection (clients get "connection refused"), `up()` listens on the same port again.
    Stands in for a registry host that goes away and comes back at the same address."""

    def __init__(self, target_port: int, port: int | None = None) -> None:
        self.target_port = target_port
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            conns, self._conns = self._conns, set()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns.update((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(65536):
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            with self._lock:
                self._conns.discard(src)
                self._conns.discard(dst)


@attrs.define
class Record:
    client: int
    started: float
    ended: float
    status: int | None
    """HTTP status, or None when the request raised (connection error, timeout)."""
    error: str = ""
    version: int | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200


@attrs.define
class LoadReport:
    records: list[Record]

    @property
    def total(self) -> int:
        return len(self.records)

    @property
    def failures(self) -> list[Record]:
        return [r for r in self.records if not r.ok]

    def versions(self) -> set[int]:
        return {r.version for r in self.records if r.version is not None}

    def sequence(self, client: int) -> list[int]:
        return [r.version for r in self.records if r.client == client and r.version is not None]

    def summary(self) -> str:
        kinds: dict[str, int] = {}
        for r in self.failures:
            key = str(r.status) if r.status is not None else r.error
            kinds[key] = kinds.get(key, 0) + 1
        return f"{self.total} requests, {len(self.failures)} failed: {kinds}"


class Load:
    """N client threads, each with its own httpx.Client, posting until stopped."""

    def __init__(
        self,
        url: str,
        *,
        clients: int = 4,
        path: str = "/predict",
        body: Callable[[int], dict[str, Any]] | None = None,
        timeout: float = 15.0,
        pause_s: float = 0.0,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.url = url.rstrip("/") + path
        self.clients = clients
        self.body = body or (lambda i: {"text": f"정말 최고의 영화 {i}"})
        self.timeout = timeout
        self.pause_s = pause_s
        self.headers = headers or {}
        self._stop = threading.Event()
        self._records: list[Record] = []
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def _client_loop(self, client: int) -> None:
        n = 0
        with httpx.Client(timeout=self.timeout, headers=self.headers) as http:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    response = http.post(self.url, json=self.body(n))
                    version = response.headers.get("x-model-version")
                    record = Record(client, started, time.monotonic(), response.status_code,
                                    "" if response.status_code == 200 else response.text[:200],
                                    int(version) if version else None)  # fmt: skip
                except httpx.HTTPError as exc:
                    record = Record(client, started, time.monotonic(), None, type(exc).__name__)
                with self._lock:
                    self._records.append(record)
                n += 1
                if self.pause_s:
                    time.sleep(self.pause_s)

    def start(self) -> Load:
        self._pool = ThreadPoolExecutor(self.clients, "load")
        self._futures = [self._pool.submit(self._client_loop, i) for i in range(self.clients)]
        return self

    def snapshot(self) -> LoadReport:
        with self._lock:
            return LoadReport(list(self._records))

    def stop(self) -> LoadReport:
        self._stop.set()
        if self._pool is not None:
            for future in self._futures:
                future.result(timeout=self.timeout + 10)
            self._pool.shutdown()
        return self.snapshot()

    def __enter__(self) -> Load:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def metric(url: str, name: str, **labels: str) -> float:
    """Sum of every sample of `name` whose labels include `labels`."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if not (line.startswith(name + "{") or line.startswith(name + " ")):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def wait_until(
    predicate: Callable[[], Any], *, timeout: float, interval: float = 0.2, what: str = ""
) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            last = predicate()
            if last:
                return last
        time.sleep(interval)
    raise TimeoutError(f"not true after {timeout}s: {what} (last: {last!r})")


def served_version(url: str) -> int | None:
    response = httpx.post(f"{url}/predict", json={"text": "최고"}, timeout=10)
    return int(response.headers["x-model-version"]) if response.status_code == 200 else None


@attrs.frozen
class ProcStats:
    rss: int
    threads: int
    fds: int


def proc_stats(pid: int) -> ProcStats:
    """Read /proc/<pid>/ directly: RSS, thread count, open file descriptors."""
    with open(f"/proc/{pid}/statm") as fh:
        rss_pages = int(fh.read().split()[1])
    return ProcStats(
        rss_pages * os.sysconf("SC_PAGE_SIZE"),
        len(os.listdir(f"/proc/{pid}/task")),
        len(os.listdir(f"/proc/{pid}/fd")),
    )


def live_worker_pids(parent: int) -> list[int]:
    """uvicorn worker pids under `parent`, without zombies (a killed worker until it is reaped),
    multiprocessing's resource tracker or the workers' loader children."""
    import psutil

    pids = []
    for child in psutil.Process(parent).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if child.status() == psutil.STATUS_ZOMBIE:
                continue
            cmdline = " ".join(child.cmdline())
            if "resource_tracker" in cmdline or "bluegreen.loading.child" in cmdline:
                continue
            pids.append(child.pid)
    return pids


_TRACEBACK = re.compile(r"Traceback \(most recent call last\)")


def tracebacks(log_text: str) -> list[str]:
    return [line for line in log_text.splitlines() if _TRACEBACK.search(line)]


@contextlib.contextmanager
def proxy_running(target_port: int, port: int | None = None) -> Iterator[TcpProxy]:
    proxy = TcpProxy(target_port, port)
    proxy.up()
    try:
        yield proxy
    finally:
        proxy.down()


__all__ = [
    "LONG_TEXT", "Load", "LoadReport", "ProcStats", "Record", "TcpProxy", "live_worker_pids",
    "metric", "proc_stats", "proxy_running", "served_version", "tracebacks", "wait_http",
    "wait_until",
]  # fmt: skip
