"""The routing snapshot: immutable, atomic to swap, and a sticky, accurate canary split."""

from __future__ import annotations

import math
import random
import uuid

import attrs
import pytest

from bluegreen.serving.router import Router, Snapshot
from bluegreen.serving.slot import Slot

N = 20_000
SHARE = 0.20
TOLERANCE = 0.015


@pytest.fixture
def live() -> Slot:
    return Slot(f"live-{uuid.uuid4().hex[:6]}")


@pytest.fixture
def cand() -> Slot:
    return Slot(f"cand-{uuid.uuid4().hex[:6]}")


def test_snapshot_is_immutable(live: Slot, cand: Slot) -> None:
    snap = Snapshot(live=live, candidate=cand, canary_share=0.1)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        snap.live = cand  # type: ignore[misc]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        snap.canary_share = 1.0  # type: ignore[misc]
    assert snap.live is live
    assert snap.canary_share == 0.1


def test_router_starts_empty_and_publish_replaces_the_reference(live: Slot, cand: Slot) -> None:
    router = Router()
    assert router.snapshot.live is None
    assert router.snapshot.choose("key") is None
    before = router.snapshot
    new = Snapshot(live=live)
    router.publish(new)
    assert router.snapshot is new
    # A reader holding the old snapshot keeps seeing the old world.
    assert before.live is None
    router.publish(Snapshot(live=cand))
    assert new.live is live


def test_router_has_no_mutable_attributes_besides_snapshot() -> None:
    router = Router()
    with pytest.raises(AttributeError):
        router.other = 1  # type: ignore[attr-defined]


@pytest.mark.parametrize("key", [None, "", "abc", "x" * 50])
def test_share_zero_always_live(live: Slot, cand: Slot, key: str | None) -> None:
    snap = Snapshot(live=live, candidate=cand, canary_share=0.0)
    rng = random.Random(1)
    assert all(snap.choose(key, rng) is live for _ in range(200))


@pytest.mark.parametrize("key", [None, "abc"])
def test_share_one_always_candidate(live: Slot, cand: Slot, key: str | None) -> None:
    snap = Snapshot(live=live, candidate=cand, canary_share=1.0)
    rng = random.Random(1)
    assert all(snap.choose(key, rng) is cand for _ in range(200))
    assert all(snap.choose(f"k{i}") is cand for i in range(200))


def test_no_candidate_always_live_even_with_share(live: Slot) -> None:
    snap = Snapshot(live=live, candidate=None, canary_share=0.5)
    rng = random.Random(2)
    assert all(snap.choose(None, rng) is live for _ in range(200))
    assert all(snap.choose(f"k{i}") is live for i in range(200))


def test_candidate_without_live_takes_everything(cand: Slot) -> None:
    snap = Snapshot(live=None, candidate=cand, canary_share=0.1)
    assert snap.choose("k") is cand
    assert snap.choose(None, random.Random(0)) is cand


def test_empty_snapshot_chooses_nothing() -> None:
    assert Snapshot().choose(None, random.Random(0)) is None
    assert Snapshot().choose("k") is None


def test_keyed_split_ratio_within_bounds(live: Slot, cand: Slot) -> None:
    snap = Snapshot(live=live, candidate=cand, canary_share=SHARE)
    rng = random.Random(20240101)
    keys = [uuid.UUID(int=rng.getrandbits(128)).hex for _ in range(N)]
    to_candidate = sum(snap.choose(k) is cand for k in keys)
    assert abs(to_candidate / N - SHARE) <= TOLERANCE, to_candidate / N


def test_random_split_ratio_within_bounds(live: Slot, cand: Slot) -> None:
    snap = Snapshot(live=live, candidate=cand, canary_share=SHARE)
    rng = random.Random(7)
    to_candidate = sum(snap.choose(None, rng) is cand for _ in range(N))
    assert abs(to_candidate / N - SHARE) <= TOLERANCE, to_candidate / N


def test_random_split_is_reproducible_with_a_seeded_rng(live: Slot, cand: Slot) -> None:
    snap = Snapshot(live=live, candidate=cand, canary_share=0.3)
    rng_a, rng_b = random.Random(11), random.Random(11)
    run_a = [snap.choose(None, rng_a) is cand for _ in range(500)]
    run_b = [snap.choose(None, rng_b) is cand for _ in range(500)]
    assert run_a == run_b
    assert 0 < sum(run_a) < 500  # genuinely random, not constant


@pytest.mark.parametrize("share", [0.01, 0.05, 0.5, 0.95])
def test_keyed_split_tracks_other_shares(live: Slot, cand: Slot, share: float) -> None:
    snap = Snapshot(live=live, candidate=cand, canary_share=share)
    keys = [f"req-{i}-{uuid.uuid4().hex}" for i in range(N)]
    ratio = sum(snap.choose(k) is cand for k in keys) / N
    # 4 sigma of a binomial proportion: fails only on a real bias.
    bound = 4 * math.sqrt(share * (1 - share) / N)
    assert abs(ratio - share) <= bound, (share, ratio)


def test_sticky_same_request_id_same_slot(live: Slot, cand: Slot) -> None:
    snap = Snapshot(live=live, candidate=cand, canary_share=0.5)
    rng = random.Random(3)
    keys = [f"req-{rng.random()}" for _ in range(500)]
    for key in keys:
        first = snap.choose(key, random.Random(0))
        for seed in range(1, 6):
            assert snap.choose(key, random.Random(seed)) is first
    chosen = {snap.choose(k) for k in keys}
    assert chosen == {live, cand}  # both sides are reachable


def test_sticky_key_survives_a_new_snapshot_with_the_same_share(live: Slot, cand: Slot) -> None:
    first = Snapshot(live=live, candidate=cand, canary_share=0.2)
    second = Snapshot(live=live, candidate=cand, canary_share=0.2)
    keys = [f"client-{i}" for i in range(2000)]
    assert [first.choose(k) for k in keys] == [second.choose(k) for k in keys]


def test_raising_the_share_only_moves_keys_towards_the_candidate(live: Slot, cand: Slot) -> None:
    low = Snapshot(live=live, candidate=cand, canary_share=0.1)
    high = Snapshot(live=live, candidate=cand, canary_share=0.3)
    keys = [f"client-{i}" for i in range(5000)]
    for key in keys:
        if low.choose(key) is cand:
            assert high.choose(key) is cand


def test_non_ascii_and_surrogate_keys_do_not_crash(live: Slot, cand: Slot) -> None:
    snap = Snapshot(live=live, candidate=cand, canary_share=0.5)
    for key in ["한국어-요청", "😀", "\udcff-lone-surrogate"]:
        assert snap.choose(key) in (live, cand)
        assert snap.choose(key) is snap.choose(key)


def test_assignment_follows_the_snapshot_key(live: Slot, cand: Slot) -> None:
    keys = [f"client-{i}" for i in range(N)]
    a = Snapshot(live=live, candidate=cand, canary_share=0.5, key=b"a" * 32)
    same = Snapshot(live=live, candidate=cand, canary_share=0.5, key=b"a" * 32)
    other = Snapshot(live=live, candidate=cand, canary_share=0.5, key=b"b" * 32)
    assert [a.choose(k) for k in keys] == [same.choose(k) for k in keys]
    moved = sum(a.choose(k) is not other.choose(k) for k in keys) / N
    assert abs(moved - 0.5) < 0.03, moved  # another key: an independent split


def test_the_key_is_not_in_the_snapshot_repr(live: Slot, cand: Slot) -> None:
    snap = Snapshot(live=live, candidate=cand, canary_share=0.5, key=b"\x01" * 32)
    assert "key" not in repr(snap)
    assert "\\x01" not in repr(snap)
