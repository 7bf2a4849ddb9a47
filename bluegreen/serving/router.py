"""The routing snapshot: which slot answers a request, swapped by one reference assignment."""

from __future__ import annotations

import random
import secrets

import attrs

from bluegreen.serving.assignment import BUCKETS, KEY_BYTES, bucket
from bluegreen.serving.slot import Slot

_PROCESS_KEY = secrets.token_bytes(KEY_BYTES)
"""For snapshots built without a key (tests, the empty start): sticky within this process."""


@attrs.frozen
class Snapshot:
    """Immutable: a request reads `router.snapshot` once and never sees two versions."""

    live: Slot | None = None
    candidate: Slot | None = None
    canary_share: float = 0.0
    """0..1 share of traffic the candidate answers."""
    key: bytes = attrs.field(default=_PROCESS_KEY, repr=False)
    """Secret of the keyed hash that places a client key in a bucket (see `assignment`)."""

    def choose(self, client_key: str | None, rng: random.Random | None = None) -> Slot | None:
        """Pick the slot for one request: sticky by `client_key` when given, random otherwise."""
        if self.candidate is None or self.canary_share <= 0:
            return self.live
        if self.live is None or self.canary_share >= 1:
            return self.candidate
        if client_key:
            to_candidate = bucket(self.key, client_key) < self.canary_share * BUCKETS
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
