"""Training progress: which stage runs, how far it is and when the whole training should end.

A long (full-profile) training logs a line at least every ``every`` seconds::

    train progress: stage members (2/5) 41% of the run, stage 380/1500 s, eta 1204 s

Stages that report their own progress (the CNN's epochs and steps) give an exact fraction;
the others (a scipy/sklearn solver) are estimated from the stage's expected duration, which the
profile states and the log line marks as an estimate (``~``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

log = logging.getLogger("bluegreen.model.progress")


class Progress:
    def __init__(self, stages: Sequence[tuple[str, float]], every: float = 10.0) -> None:
        """``stages``: (name, expected seconds) in order."""
        self._stages = list(stages)
        self._every = every
        self._index = -1
        self._stage_start = time.perf_counter()
        self._fraction: float | None = None
        self._eta: float | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _expected(self, i: int) -> float:
        return self._stages[i][1]

    def line(self) -> str:
        with self._lock:
            i = self._index
            if i < 0:
                return "train progress: starting"
            name, expected = self._stages[i]
            elapsed = time.perf_counter() - self._stage_start
            exact = self._fraction is not None
            if exact:
                left = self._eta if self._eta is not None else 0.0
            else:
                left = max(expected - elapsed, 0.05 * expected)
            later = sum(self._expected(j) for j in range(i + 1, len(self._stages)))
            done = sum(self._expected(j) for j in range(i))
            total = done + elapsed + left + later
            pct = 100.0 * (done + elapsed) / total if total > 0 else 0.0
            mark = "" if exact else "~"
            stage_pct = f" {100.0 * (self._fraction or 0.0):.0f}%" if exact else ""
            return (
                f"train progress: stage {name} ({i + 1}/{len(self._stages)}){stage_pct} "
                f"{pct:.0f}% of the run, stage {elapsed:.0f}/{mark}{elapsed + left:.0f} s, "
                f"eta {mark}{left + later:.0f} s"
            )

    def report(self, fraction: float, eta_seconds: float) -> None:
        """The running stage's own progress (0..1) and its remaining seconds."""
        with self._lock:
            self._fraction, self._eta = fraction, eta_seconds

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        names = [n for n, _ in self._stages]
        with self._lock:
            self._index = names.index(name)
            self._stage_start = time.perf_counter()
            self._fraction = self._eta = None
        log.info("%s", self.line())
        try:
            yield
        finally:
            log.info("train progress: stage %s done in %.0f s", name,
                     time.perf_counter() - self._stage_start)  # fmt: skip

    def __enter__(self) -> Progress:
        def beat() -> None:
            while not self._stop.wait(self._every):
                log.info("%s", self.line())

        self._thread = threading.Thread(target=beat, name="train-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
