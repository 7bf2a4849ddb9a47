"""The keyed canary assignment: sticky for one key, unpredictable without it, and one key per
host shared by every worker (created once, private, by whichever worker comes first)."""

from __future__ import annotations

import stat
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from bluegreen.serving.assignment import (
    BUCKETS,
    KEY_BYTES,
    KEY_FILE,
    CanaryKeyError,
    bucket,
    host_key,
    key_from_secret,
    resolve_key,
)

KEY_A = bytes(range(32))
KEY_B = bytes(range(1, 33))
N = 4000


def test_bucket_is_stable_for_one_key_and_in_range() -> None:
    for i in range(500):
        client = f"user-{i}"
        first = bucket(KEY_A, client)
        assert 0 <= first < BUCKETS
        assert bucket(KEY_A, client) == first


def test_buckets_differ_across_keys() -> None:
    clients = [f"user-{i}" for i in range(N)]
    same = sum(bucket(KEY_A, c) == bucket(KEY_B, c) for c in clients)
    # Independent keys agree by chance (1 in BUCKETS), never systematically.
    assert same <= 5, same
    # And the half a client falls in under one key says nothing about the other.
    halves_agree = sum(
        (bucket(KEY_A, c) < BUCKETS // 2) == (bucket(KEY_B, c) < BUCKETS // 2) for c in clients
    )
    assert abs(halves_agree / N - 0.5) < 0.05, halves_agree / N


def test_a_client_that_computes_buckets_cannot_target_the_candidate() -> None:
    """The old assignment was crc32 of the key: a client could pick request ids that all land
    on the candidate. Picked the same way, or with any guessed key, they now land on the
    candidate at the canary's share, like anyone's."""
    share = 0.1
    crc_targeted = [
        f"attack-{i}" for i in range(200_000) if zlib.crc32(f"attack-{i}".encode()) % BUCKETS < 1000
    ][:N]
    assert len(crc_targeted) == N
    guessed_key = bytes(KEY_BYTES)  # an attacker's guess at the secret: all zeros
    key_targeted = [c for c in (f"g-{i}" for i in range(100_000)) if bucket(guessed_key, c) < 1000]
    for chosen in (crc_targeted, key_targeted[:N]):
        hit = sum(bucket(KEY_A, c) < share * BUCKETS for c in chosen) / len(chosen)
        assert abs(hit - share) < 0.03, hit  # chance, not 100 %


def test_non_ascii_and_surrogate_client_keys_hash() -> None:
    for client in ["한국어-요청", "😀", "\udcff-lone-surrogate", "x" * 8000]:
        assert bucket(KEY_A, client) == bucket(KEY_A, client)


def test_a_fleet_secret_gives_the_same_key_everywhere(tmp_path: Path) -> None:
    assert key_from_secret("fleet-secret-0123456789") == key_from_secret("fleet-secret-0123456789")
    assert key_from_secret("fleet-secret-0123456789") != key_from_secret("fleet-secret-012345678X")
    assert len(key_from_secret("s" * 100)) == KEY_BYTES
    assert resolve_key("fleet-secret-0123456789", tmp_path) == key_from_secret(
        "fleet-secret-0123456789"
    )
    assert not (tmp_path / KEY_FILE).exists()  # a fleet secret writes no host key


def test_host_key_is_created_once_private_and_reused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = host_key(state)
    path = state / KEY_FILE
    assert len(first) == KEY_BYTES
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert host_key(state) == first
    assert resolve_key(None, state) == first
    assert [p.name for p in state.iterdir()] == [KEY_FILE]  # no temporary file left behind
    assert host_key(tmp_path / "other") != first


WORKER = """
import sys
from pathlib import Path
from bluegreen.serving.assignment import host_key
sys.stdin.readline()  # start together
print(host_key(Path(sys.argv[1])).hex(), flush=True)
"""


def test_workers_starting_together_agree_on_one_host_key(tmp_path: Path) -> None:
    state = tmp_path / "state"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(state)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    keys = {proc.communicate(timeout=60)[0].strip() for proc in procs}
    assert all(proc.returncode == 0 for proc in procs)
    assert len(keys) == 1
    assert bytes.fromhex(keys.pop()) == (state / KEY_FILE).read_bytes()


def test_a_damaged_host_key_fails_at_start(tmp_path: Path) -> None:
    tmp_path.joinpath(KEY_FILE).write_bytes(b"short")
    with pytest.raises(CanaryKeyError, match="5 bytes"):
        host_key(tmp_path)
