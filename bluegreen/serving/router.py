"""The routing snapshot: which slot answers a request, swapped by one reference assignment."""

from __future__ import annotations

import random
import zlib

import attrs

from bluegreen.serving.slot import Slot

_BUCKETS = 10_000


@attrs.frozen
class Snapshot:
    """Immutable: a request reads `router.snapshot` once and never sees two versions."""

    live: Slot | None = None
    candidate: Slot | None = None
    canary_share: float = 0.0
    """0..1 share of traffic the candidate answers."""

    def choose(self, client_key: str | None, rng: random.Random | None = None) -> Slot | None:
        """Pick the slot for one request: sticky by `client_key` when given, random otherwise."""
        if self.candidate is None or self.canary_share <= 0:
            return self.live
        if self.live is None or self.canary_share >= 1:
            return self.candidate
        if client_key:
            bucket = zlib.crc32(client_key.encode("utf-8", "surrogatepass")) % _BUCKETS
            to_candidate = bucket < self.canary_share * _BUCKETS
        else:
            to_candidate = (rng or random).random() < self.canary_share
        return self.candidate if to_candidate else self.live


class Router:
    __slots__ = ("snapshot",)

    def __init__(self) -> None:
        self.snapshot = Snapshot()

    def publish(self, snapshot: Snapshot) -> None:
        # One reference assignment: atomic for readers on any thread.
        self.snapshot = snapshot
