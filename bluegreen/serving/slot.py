"""A slot: one place a model version can live, with its state machine and request leases.

All mutation happens on the event loop thread (leases are released through
`loop.call_soon_threadsafe` when a prediction ran in a worker thread), so no locks are needed.
"""

from __future__ import annotations

import collections
import enum
import time
from collections.abc import Iterable
from typing import Any

import attrs

from bluegreen import metrics
from bluegreen.serving.model_handle import LoadedModel, ModelRef


class SlotState(enum.StrEnum):
    EMPTY = "empty"
    LOADING = "loading"
    SMOKE = "smoke"
    CANARY = "canary"
    LIVE = "live"
    DRAINING = "draining"
    RETAINED = "retained"
    """Previous version kept warm for instant rollback (BLUEGREEN_RETAIN_PREVIOUS)."""


_ALLOWED: dict[SlotState, frozenset[SlotState]] = {
    SlotState.EMPTY: frozenset({SlotState.LOADING}),
    SlotState.LOADING: frozenset({SlotState.SMOKE, SlotState.EMPTY}),
    SlotState.SMOKE: frozenset({SlotState.CANARY, SlotState.LIVE, SlotState.EMPTY}),
    SlotState.CANARY: frozenset({SlotState.LIVE, SlotState.DRAINING}),
    SlotState.LIVE: frozenset({SlotState.DRAINING}),
    SlotState.DRAINING: frozenset({SlotState.EMPTY, SlotState.RETAINED}),
    SlotState.RETAINED: frozenset({SlotState.LIVE, SlotState.EMPTY}),
}


class InvalidTransition(RuntimeError):
    pass


def p95(values: Iterable[float]) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


@attrs.define(eq=False)
class PairedLatencies:
    """Latencies of the same texts scored on live and on the candidate, back to back: the
    canary's latency evidence, which no client can skew by choosing what each slot receives."""

    pairs: collections.deque[tuple[float, float]] = attrs.field(
        factory=lambda: collections.deque(maxlen=5_000)
    )
    """(live seconds, candidate seconds)"""

    def record(self, live_s: float, candidate_s: float) -> None:
        self.pairs.append((live_s, candidate_s))

    def __len__(self) -> int:
        return len(self.pairs)

    def p95s(self) -> tuple[float, float]:
        """(live p95, candidate p95) over the pairs."""
        return p95(live for live, _ in self.pairs), p95(cand for _, cand in self.pairs)


@attrs.define(eq=False)
class TrafficWindow:
    """Requests, errors and latencies a slot saw since the window opened (canary judging).
    A candidate's window also holds its latencies paired with live's on the same inputs."""

    started_at: float = attrs.field(factory=time.monotonic)
    requests: int = 0
    errors: int = 0
    latencies: collections.deque[float] = attrs.field(
        factory=lambda: collections.deque(maxlen=20_000)
    )
    pairs: PairedLatencies = attrs.field(factory=PairedLatencies)

    def record(self, latency_s: float, ok: bool) -> None:
        self.requests += 1
        if ok:
            self.latencies.append(latency_s)
        else:
            self.errors += 1

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def p95(self) -> float:
        return p95(self.latencies)


@attrs.define(eq=False)
class Slot:
    name: str
    state: SlotState = SlotState.EMPTY
    model: LoadedModel | None = None
    ref: ModelRef | None = None
    loaded_at: float | None = None
    """Unix time the current model finished loading."""
    inflight: int = 0
    requests: int = 0
    errors: int = 0
    last_failure: str | None = None
    window: TrafficWindow = attrs.field(factory=TrafficWindow)
    _inflight_gauge: Any = attrs.field(init=False, default=None, repr=False)
    """This slot's child of SLOT_INFLIGHT: `.labels()` costs a lock and a dict per call."""

    def __attrs_post_init__(self) -> None:
        self._inflight_gauge = metrics.SLOT_INFLIGHT.labels(self.name)
        self._publish_state(None)

    @property
    def version(self) -> int | None:
        return self.ref.version if self.ref else None

    def transition(self, new: SlotState) -> None:
        if new not in _ALLOWED[self.state]:
            raise InvalidTransition(f"slot {self.name}: {self.state} -> {new} is not allowed")
        old, self.state = self.state, new
        self._publish_state(old)

    def _publish_state(self, old: SlotState | None) -> None:
        if old is not None:
            metrics.SLOT_STATE.labels(self.name, old.value).set(0)
        metrics.SLOT_STATE.labels(self.name, self.state.value).set(1)

    def acquire(self) -> LoadedModel:
        """Lease the slot for one request. Callers must `release()` exactly once."""
        model = self.model
        if model is None:
            raise InvalidTransition(f"slot {self.name} has no model to lease")
        self.inflight += 1
        self._inflight_gauge.inc()
        return model

    def release(self, latency_s: float, ok: bool) -> None:
        self.release_lease()
        self.requests += 1
        if not ok:
            self.errors += 1
        self.window.record(latency_s, ok)

    def release_lease(self) -> None:
        """End a lease that was not a request (paired scoring): the drain waits for it, the
        canary window does not count it."""
        self.inflight -= 1
        self._inflight_gauge.dec()

    def reset_window(self) -> None:
        self.window = TrafficWindow()

    def install(self, model: LoadedModel) -> None:
        self.model = model
        self.ref = model.ref
        self.loaded_at = time.time()
        self.requests = self.errors = 0
        self.reset_window()

    def take_model(self) -> LoadedModel | None:
        """Detach the model (for freeing); the slot keeps nothing that pins its memory."""
        model, self.model = self.model, None
        self.ref = None
        self.loaded_at = None
        return model

    def describe(self) -> dict[str, object]:
        return {
            "slot": self.name,
            "state": self.state.value,
            "version": self.version,
            "run_id": self.ref.run_id if self.ref else None,
            "loaded_at": self.loaded_at,
            "in_flight": self.inflight,
            "requests": self.requests,
            "errors": self.errors,
            "last_failure": self.last_failure,
        }
