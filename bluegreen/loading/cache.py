"""The host-local cache of prepared versions, shared by every worker on the host.

Layout under the cache root (``<state dir>/models``)::

    v7.lock                  held exclusively while one process prepares version 7
    v7-<manifest sha16>/     a prepared version: read-only .npy files, READY, .lease
    .stage-v8-<pid>-<rand>/  a load in progress (downloads, preparation); .lock held by it

Who still uses what is told by ``flock`` alone, which the kernel releases when a process dies:
a mapping process holds a shared lock on the entry's ``.lease`` for as long as it maps it, and a
loader holds an exclusive one on its stage's ``.lock``. The sweep removes only what it can lock
exclusively, so it never pulls files from under a sibling worker; it runs at start and after
each load, so what a killed load left behind, and versions no process maps, do not pile up.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import attrs

READY = "READY"
LEASE = ".lease"
_STAGE_PREFIX = ".stage-"
SWEEP_GRACE_S = 30.0
"""An unleased entry younger than this survives a sweep: a sibling's loader may just have
published it and its server not yet taken the lease."""


def _try_lock(path: Path, mode: int) -> int | None:
    """An fd holding ``flock(mode | LOCK_NB)`` on ``path``, or None when someone else holds it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


@attrs.define(eq=False)
class Lease:
    """A shared lock on a prepared entry: while it is held, no sweep removes the entry."""

    path: Path
    _fd: int | None

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    @property
    def held(self) -> bool:
        return self._fd is not None


@attrs.define
class VersionCache:
    root: Path

    def entry(self, version: int, manifest_sha256: str) -> Path:
        return self.root / f"v{version}-{manifest_sha256[:16]}"

    @staticmethod
    def is_ready(entry: Path) -> bool:
        return (entry / READY).is_file()

    @contextlib.contextmanager
    def preparing(self, version: int) -> Iterator[None]:
        """One preparer of ``version`` per host: the others wait here, then find it ready."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / f"v{version}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    @contextlib.contextmanager
    def stage(self, version: int) -> Iterator[Path]:
        """A private working directory for one load, locked while in use, removed after."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / f"{_STAGE_PREFIX}v{version}-{os.getpid()}-{secrets.token_hex(4)}"
        path.mkdir()
        lock_path = path / ".lock"
        lock_path.touch()
        fd = os.open(lock_path, os.O_RDONLY)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)
            os.close(fd)

    def publish(self, prepared: Path, entry: Path) -> Path:
        """Make a prepared directory an entry: files read-only, READY last, one rename."""
        (prepared / LEASE).touch()
        for f in prepared.iterdir():
            if f.name != LEASE:
                f.chmod(0o444)
        (prepared / READY).touch()
        try:
            os.rename(prepared, entry)
        except OSError:
            if not self.is_ready(entry):  # a stale, unready entry of the same key
                shutil.rmtree(entry, ignore_errors=True)
                os.rename(prepared, entry)
        return entry

    def lease(self, entry: Path) -> Lease:
        fd = _try_lock(entry / LEASE, fcntl.LOCK_SH)
        if fd is None:
            raise FileNotFoundError(f"{entry} cannot be leased (swept, or never prepared)")
        with contextlib.suppress(OSError):
            os.utime(entry / LEASE)  # the sweep's grace counts from the last mapping
        return Lease(entry, fd)

    def sweep(self, *, grace_s: float = SWEEP_GRACE_S) -> list[str]:
        """Remove abandoned stages and unleased entries; return what was removed."""
        removed: list[str] = []
        if not self.root.is_dir():
            return removed
        now = time.time()
        for path in self.root.iterdir():
            stage = path.name.startswith(_STAGE_PREFIX)
            lock = path / (".lock" if stage else LEASE)
            try:
                # A stage is locked a moment after it is made, an entry leased a moment after
                # it is published: anything younger than the grace period is left alone.
                if (
                    not path.is_dir()
                    or now - (lock if lock.exists() else path).stat().st_mtime < grace_s
                ):
                    continue
            except OSError:
                continue  # removed under us
            fd = _try_lock(lock, fcntl.LOCK_EX)
            if fd is None and lock.exists():
                continue  # in use
            try:
                # the files are read-only, the directory is not: that is all unlink needs
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path.name)
            finally:
                if fd is not None:
                    os.close(fd)
        return removed
