"""A small closed-loop load generator for integration tests: N threads, each with its own
HTTP connection, recording every response so tests can count failures and versions."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import attrs
import httpx


@attrs.define
class Sample:
    at: float
    status: int
    version: int | None
    slot: str | None
    latency_s: float
    error: str | None = None


@attrs.define
class LoadResult:
    samples: list[Sample]

    @property
    def failures(self) -> list[Sample]:
        return [s for s in self.samples if s.status != 200]

    def versions(self) -> set[int]:
        return {s.version for s in self.samples if s.version is not None}


class Load:
    """Context manager: `with Load(url, threads=8) as load: ...; result = load.result`."""

    def __init__(
        self,
        base_url: str,
        *,
        threads: int = 8,
        body: Callable[[int, int], tuple[str, dict[str, Any]]] | None = None,
        headers: Callable[[int], dict[str, str]] | None = None,
    ) -> None:
        self.base_url = base_url
        self.threads = threads
        self.body = body or (lambda worker, i: ("/predict", {"text": f"정말 최고의 영화 {i}"}))
        self.headers = headers or (lambda worker: {})
        self._stop = threading.Event()
        self._samples: list[list[Sample]] = [[] for _ in range(threads)]
        self._workers: list[threading.Thread] = []

    def _run(self, worker: int) -> None:
        out = self._samples[worker]
        with httpx.Client(base_url=self.base_url, timeout=30, headers=self.headers(worker)) as c:
            i = 0
            while not self._stop.is_set():
                path, payload = self.body(worker, i)
                i += 1
                started = time.perf_counter()
                try:
                    r = c.post(path, json=payload)
                    version = r.headers.get("x-model-version")
                    sample = Sample(
                        at=time.time(),
                        status=r.status_code,
                        version=int(version) if version else None,
                        slot=r.headers.get("x-model-slot"),
                        latency_s=time.perf_counter() - started,
                        error=None if r.status_code == 200 else r.text[:200],
                    )
                    out.append(sample)
                except httpx.HTTPError as exc:
                    out.append(Sample(time.time(), 0, None, None,
                                      time.perf_counter() - started, repr(exc)))  # fmt: skip

    def __enter__(self) -> Load:
        for worker in range(self.threads):
            thread = threading.Thread(target=self._run, args=(worker,), daemon=True)
            thread.start()
            self._workers.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._workers:
            thread.join(60)

    def per_worker(self) -> list[list[Sample]]:
        return self._samples

    @property
    def result(self) -> LoadResult:
        return LoadResult(sorted((s for w in self._samples for s in w), key=lambda s: s.at))
