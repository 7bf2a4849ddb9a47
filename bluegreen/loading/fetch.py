"""A bundle's files from the artifact store: only those its manifest names, one at a time,
each hashed as it arrives, and no faster than the loader's byte rate.

Why not ``download_artifacts`` on the bundle directory: it lists the directory, fetches its
files on parallel threads, and the bundle would then be read once more to verify it. On a
small host that burst is what the serving workers feel of a load. SCHED_IDLE keeps the child
off a core a worker wants, but not out of the caches, the memory bandwidth and the kernel's
page-cache work they share (`bench/interference.py` measures the share). A bounded byte rate
spreads the same bytes over a longer, quieter load.

Through an HTTP artifact proxy (``mlflow server --serve-artifacts``, the usual registry) the
file is streamed: hashed and written chunk by chunk, and cut off where it outgrows the size the
manifest gives it. Any other store (a local directory, S3...) downloads each file through its
own MLflow repository, and the hash pass that follows is the paced part.
"""

from __future__ import annotations

import hashlib
import posixpath
import time
from collections.abc import Callable, Iterator
from http import HTTPStatus
from pathlib import Path
from typing import Any

from bluegreen.model.bundle import MANIFEST, IntegrityError, entry_expected, entry_path

CHUNK = 1 << 20


class Pace:
    """Sleep off what a byte rate leaves of each chunk's time (``bytes_per_s`` 0: unpaced).

    A stall upstream (a slow network, a starved registry) is not paid back later by a burst:
    the schedule restarts once it falls behind by more than ``slack_s``."""

    def __init__(
        self, bytes_per_s: float, *, slack_s: float = 0.05,
        clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
    ) -> None:  # fmt: skip
        self.bytes_per_s = bytes_per_s
        self.slack_s = slack_s
        self._clock, self._sleep = clock, sleep
        self._start = 0.0
        self._sent = 0
        self.slept_s = 0.0

    def __call__(self, nbytes: int) -> None:
        if self.bytes_per_s <= 0:
            return
        now = self._clock()
        if self._sent == 0 or now - self._due() > self.slack_s:
            self._start, self._sent = now, 0
        self._sent += nbytes
        wait = self._due() - now
        if wait > 0:
            self._sleep(wait)
            self.slept_s += wait

    def _due(self) -> float:
        return self._start + self._sent / self.bytes_per_s


def _http_repository(repo: Any) -> Any | None:
    """The HTTP artifact proxy behind ``repo`` (a ``models:/`` URI wraps the store's own), or
    None for any other kind of store."""
    from mlflow.store.artifact.http_artifact_repo import HttpArtifactRepository
    from mlflow.store.artifact.models_artifact_repo import ModelsArtifactRepository

    inner = repo.repo if isinstance(repo, ModelsArtifactRepository) else repo
    return inner if isinstance(inner, HttpArtifactRepository) else None


def _stream(http_repo: Any, remote: str, rel: str) -> Iterator[bytes]:
    """The file's bytes through mlflow's own HTTP client (its auth, TLS and retry settings)."""
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    creds = get_default_host_creds(http_repo.artifact_uri)  # type: ignore[no-untyped-call]
    response = http_request(  # type: ignore[no-untyped-call]
        creds, posixpath.join("/", remote), "GET", stream=True
    )
    try:
        if response.status_code == HTTPStatus.NOT_FOUND:
            raise IntegrityError(f"{rel} is missing")
        response.raise_for_status()
        yield from response.iter_content(chunk_size=CHUNK)
    finally:
        response.close()


def _read(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


def _take(
    chunks: Iterator[bytes], rel: str, size: int, sha: str, *, pace: Pace,
    sink: Callable[[bytes], object] | None = None,
) -> None:  # fmt: skip
    digest, seen = hashlib.sha256(), 0
    for chunk in chunks:
        seen += len(chunk)
        if seen > size:
            raise IntegrityError(f"{rel} is larger than the {size} bytes the manifest says")
        digest.update(chunk)
        if sink is not None:
            sink(chunk)
        pace(len(chunk))
    if seen != size:
        raise IntegrityError(f"{rel} is {seen} bytes, the manifest says {size}")
    if digest.hexdigest() != sha:
        raise IntegrityError(f"{rel} does not match its sha256 in {MANIFEST}")


def fetch_bundle(
    repo: Any, bundle_path: str, manifest: Path, body: dict[str, Any], *, dst: Path, pace: Pace
) -> Path:
    """Every file ``body`` (the manifest at ``manifest``, already checked against the
    registry's hash) lists, verified, under ``dst/bundle_path``; returns that directory.
    `IntegrityError` when any file is missing, of the wrong size or content, or named outside
    the bundle."""
    from mlflow.exceptions import MlflowException

    root = dst / bundle_path
    root.mkdir(parents=True, exist_ok=True)
    http_repo = _http_repository(repo)
    for rel, entry in body["files"].items():
        local = entry_path(root, rel)
        size, sha = entry_expected(rel, entry)
        remote = posixpath.join(bundle_path, rel)
        local.parent.mkdir(parents=True, exist_ok=True)
        if http_repo is not None:
            with open(local, "wb") as out:
                _take(_stream(http_repo, remote, rel), rel, size, sha, pace=pace, sink=out.write)
            continue
        try:
            downloaded = Path(repo.download_artifacts(remote, str(dst)))
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                raise IntegrityError(f"{rel} is missing") from None
            raise  # the store failed, not the version: the child answers it as a fetch error
        if downloaded.resolve() != local.resolve():
            raise IntegrityError(f"{rel} did not download to its place in the bundle")
        _take(_read(local), rel, size, sha, pace=pace)
    (root / MANIFEST).write_bytes(manifest.read_bytes())
    return root
