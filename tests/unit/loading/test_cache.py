"""The host's version cache: leases, stages and the sweep, with real files and real flocks
held by real processes (a lock held by this process would not stop its own sweep)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bluegreen.loading.cache import LEASE, READY, VersionCache


def _prepared(cache: VersionCache, version: int, sha: str = "ab" * 32) -> Path:
    staging = cache.root / f"tmp-{version}"
    staging.mkdir(parents=True)
    (staging / "packed.npy").write_bytes(b"x" * 64)
    return cache.publish(staging, cache.entry(version, sha))


def _age(path: Path, seconds: float) -> None:
    old = time.time() - seconds
    os.utime(path, (old, old))


HOLD = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
fcntl.flock(fd, fcntl.LOCK_SH if sys.argv[2] == "sh" else fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(60)
"""


def _hold(path: Path, mode: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path), mode],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_publish_makes_a_ready_read_only_entry(tmp_path: Path) -> None:
    cache = VersionCache(tmp_path)
    entry = _prepared(cache, 3)
    assert entry.name == "v3-" + "ab" * 8
    assert cache.is_ready(entry)
    assert (entry / "packed.npy").stat().st_mode & 0o222 == 0
    assert (entry / READY).is_file()


def test_sweep_keeps_leased_and_young_entries_and_removes_the_rest(tmp_path: Path) -> None:
    cache = VersionCache(tmp_path)
    leased, young, old = _prepared(cache, 1), _prepared(cache, 2), _prepared(cache, 3)
    for entry in (leased, old):
        _age(entry / LEASE, 3600)
    holder = _hold(leased / LEASE, "sh")  # a sibling worker maps version 1
    try:
        removed = cache.sweep(grace_s=60)
    finally:
        holder.kill()
        holder.wait()
    assert removed == [old.name]
    assert leased.is_dir()
    assert young.is_dir()  # just published: a sibling may not have leased it yet
    assert cache.sweep(grace_s=60) == [leased.name]  # the holder died: its lock went with it


def test_sweep_removes_abandoned_stages_only(tmp_path: Path) -> None:
    cache = VersionCache(tmp_path)
    with cache.stage(5) as ours:
        (ours / "half-downloaded").write_bytes(b"...")
        other = Path(str(ours).replace("-v5-", "-v6-"))
        other.mkdir()
        (other / ".lock").touch()  # a killed loader's stage: nobody holds its lock
        newborn = Path(str(ours).replace("-v5-", "-v7-"))
        newborn.mkdir()
        (newborn / ".lock").touch()  # made a moment ago: its loader has not locked it yet
        _age(other / ".lock", 3600)
        _age(ours / ".lock", 3600)
        removed = cache.sweep(grace_s=60)
        assert removed == [other.name]
        assert newborn.is_dir()
        # In use: a flock belongs to an open file description, so the sweep's own open of the
        # lock conflicts with the stage's, as another process's would.
        assert ours.is_dir()
    assert not ours.exists()  # a finished stage removes itself


def test_a_lease_keeps_the_entry_and_ends_with_release(tmp_path: Path) -> None:
    cache = VersionCache(tmp_path)
    entry = _prepared(cache, 4)
    _age(entry / LEASE, 3600)
    lease = cache.lease(entry)
    assert lease.held
    assert (entry / LEASE).stat().st_mtime > time.time() - 60  # leasing counts as use
    lease.release()
    assert not lease.held
    lease.release()  # idempotent


def test_leasing_a_missing_entry_fails(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        VersionCache(tmp_path).lease(tmp_path / "v9-0000")
