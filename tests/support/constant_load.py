"""Constant, bounded load on a bluegreen endpoint that counts every request and every failure.

A small asyncio/httpx loop in its own thread: `users` clients, each sending at a steady rate
over keep-alive connections, a share of them batches. Every response is checked strictly (status
200, the body's schema and label set, `X-Model-Version` agreeing with the body); anything else,
an exception or a timeout included, is a failure. It stops when told, or by itself after
`max_duration_s`, so a test that fails halfway never leaves it running.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
TEXTS_FILE = REPO / "loadtests" / "texts_ko.txt"
LABELS = frozenset({"부정", "중립/복합", "긍정"})
SLOTS = frozenset({"blue", "green"})


def load_texts() -> list[str]:
    lines = TEXTS_FILE.read_text(encoding="utf-8").splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


@dataclass(frozen=True)
class Record:
    started: float
    """Wall-clock time (time.time) the request was sent; log events use the same clock."""
    ended: float
    route: str
    status: int
    ok: bool
    version: int | None
    served_by: str
    """The proxy's X-Served-By header (which replica answered), or ''."""
    error: str = ""
    server_ms: float | None = None
    """The app's own time (`Server-Timing: app;dur=`), when the response carried it."""


class ConstantLoad:
    def __init__(
        self,
        url: str,
        *,
        users: int = 8,
        rate_per_user: float = 8.0,
        batch_share: float = 0.2,
        max_duration_s: float = 300.0,
        timeout_s: float = 15.0,
        served_by_header: str = "X-Served-By",
        seed: int = 0,
    ) -> None:
        self.url = url
        self.users = users
        self.rate_per_user = rate_per_user
        self.batch_share = batch_share
        self.max_duration_s = max_duration_s
        self.timeout_s = timeout_s
        self.served_by_header = served_by_header
        self._texts = load_texts()
        self._seed = seed
        self.records: list[Record] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.started_at = 0.0
        self.stopped_at = 0.0
        self.crashed: BaseException | None = None

    # --- control ---------------------------------------------------------------------------------
    def start(self) -> None:
        self.started_at = time.time()
        self._thread = threading.Thread(target=self._run, name="constant-load", daemon=True)
        self._thread.start()

    def stop(self) -> list[Record]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout_s + 10)
            if self._thread.is_alive():
                raise RuntimeError("the load generator did not stop")
        self.stopped_at = self.stopped_at or time.time()
        if self.crashed is not None:
            raise RuntimeError("the load generator crashed") from self.crashed
        return self.records

    def __enter__(self) -> ConstantLoad:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout_s + 10)

    # --- counts ----------------------------------------------------------------------------------
    @property
    def requests(self) -> int:
        return len(self.records)

    def failures(self) -> list[Record]:
        return [r for r in list(self.records) if not r.ok]

    def between(self, start: float, end: float) -> Iterator[Record]:
        """Records of requests sent in [start, end)."""
        return (r for r in list(self.records) if start <= r.started < end)

    # --- the loop --------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported by stop(); a daemon thread must not just die
            self.crashed = exc
        finally:
            self.stopped_at = time.time()

    async def _main(self) -> None:
        limits = httpx.Limits(max_connections=self.users, max_keepalive_connections=self.users)
        deadline = time.monotonic() + self.max_duration_s
        async with httpx.AsyncClient(
            base_url=self.url, timeout=self.timeout_s, limits=limits
        ) as client:
            await asyncio.gather(*(self._user(client, i, deadline) for i in range(self.users)))

    async def _user(self, client: httpx.AsyncClient, index: int, deadline: float) -> None:
        rng = random.Random(self._seed * 1000 + index)
        period = 1.0 / self.rate_per_user
        # A stable client key per user: the canary's keyed assignment is sticky per key.
        headers = {"X-Request-ID": f"fleet-user-{index}"}
        next_at = time.monotonic() + rng.random() * period
        while not self._stop.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            next_at += period
            if rng.random() < self.batch_share:
                texts = rng.sample(self._texts, rng.randint(2, 6))
                await self._send(client, "/predict/batch", {"texts": texts}, headers)
            else:
                await self._send(client, "/predict", {"text": rng.choice(self._texts)}, headers)

    async def _send(
        self, client: httpx.AsyncClient, route: str, body: dict[str, Any], headers: dict[str, str]
    ) -> None:
        started = time.time()
        status, version, served_by, error, server_ms = 0, None, "", "", None
        try:
            response = await client.post(route, json=body, headers=headers)
            status = response.status_code
            served_by = response.headers.get(self.served_by_header, "")
            server_ms = app_duration_ms(response.headers.get("server-timing", ""))
            version, error = check_response(route, body, response)
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:300]
        record = Record(
            started, time.time(), route, status, not error, version, served_by, error, server_ms
        )
        self.records.append(record)


def app_duration_ms(header: str) -> float | None:
    """`dur` of the `app` metric in a Server-Timing header, or None."""
    for metric in header.split(","):
        name, _, params = metric.strip().partition(";")
        if name == "app":
            for param in params.split(";"):
                key, _, value = param.strip().partition("=")
                if key == "dur":
                    try:
                        return float(value)
                    except ValueError:
                        return None
    return None


def check_response(
    route: str, body: dict[str, Any], response: httpx.Response
) -> tuple[int | None, str]:
    """(version, error): error is '' only for a well-formed 200 answer."""
    if response.status_code != 200:
        return None, f"HTTP {response.status_code}: {response.text[:200]}"
    try:
        payload = response.json()
        version = payload["model_version"]
        if not isinstance(version, int) or payload["model_slot"] not in SLOTS:
            return None, f"bad version/slot: {payload}"[:300]
        if response.headers.get("X-Model-Version") != str(version):
            return version, "X-Model-Version disagrees with the body"
        if route == "/predict/batch":
            results = payload["results"]
            if len(results) != len(body["texts"]):
                return version, f"{len(results)} results for {len(body['texts'])} texts"
            labels = {r["sentiment"] for r in results}
        else:
            labels = {payload["sentiment"]}
        if not labels <= LABELS:
            return version, f"unknown labels {labels - LABELS}"
    except (ValueError, KeyError, TypeError) as exc:
        return None, f"bad body ({type(exc).__name__}: {exc}): {response.text[:200]}"
    return version, ""
