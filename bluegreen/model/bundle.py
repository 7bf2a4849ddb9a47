"""The data-only model format: a directory of arrays, vocabulary and metadata, and a manifest.

Format 2 (what training writes) holds the serving arrays themselves, as ``.npy`` files
(``CompiledEnsemble.save_prepared`` without tables): a loader verifies them, builds the
kernels' hash tables beside them and maps them as they are. Format 1 (versions registered
before it) holds the compressed form (``arrays.npz``), which a loader decompresses and packs
first: it still loads, at the cost of that work on the serving host.

``manifest.json`` lists the sha256 and size of every other file. Training writes it; a loader
checks every file against it before reading any of them, and the sha256 of the manifest itself
is recorded in the registry (model-version tag ``bluegreen.manifest_sha256``) and in the logged
model's ``MLmodel`` metadata. Nothing in the directory is executed: the code that reads it is
the server's own (``inference.CompiledEnsemble``).

``smoke.tsv`` (optional) is the version's own smoke set: (text, expected label) cases the server
checks on load in addition to its golden set. It is a bundle file like any other, so the
manifest covers it and nobody can change a version's cases without changing its hash.

Trust: a writer of the artifact store alone cannot change a version unnoticed (the manifest's
hash sits in the registry); a writer of the registry can register any bundle, but a bundle
holds only numbers and words, so it can make the model wrong, never run code.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from .labels import LABELS

MANIFEST = "manifest.json"
FORMAT = "bluegreen-ensemble-bundle/2"
FORMAT_V1 = "bluegreen-ensemble-bundle/1"
FORMATS = (FORMAT, FORMAT_V1)
MANIFEST_TAG = "bluegreen.manifest_sha256"
"""Registry model-version tag (and MLmodel metadata key) holding the manifest's sha256."""
FORMAT_KEY = "bluegreen.format"
BUNDLE_PATH_KEY = "bluegreen.bundle_path"
"""MLmodel metadata: where the bundle lies inside the logged model directory."""

SMOKE_SET = "smoke.tsv"
SMOKE_SET_HEADER = "text\texpected_label"
MAX_SMOKE_CASES = 200
"""A version's own cases run on every load beside live traffic: a bounded batch."""

_CHUNK = 1 << 20


class IntegrityError(ValueError):
    """A bundle's files do not match its manifest (tampered, truncated or missing)."""


def file_sha256(path: Path) -> str:
    # hashlib drops the GIL for large updates, so this never stalls a server's threads
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(directory: str | Path, fmt: str = FORMAT) -> str:
    """Write ``manifest.json`` over every file in ``directory``; return the manifest's sha256."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown bundle format {fmt!r}")
    d = Path(directory)
    files: dict[str, Any] = {}
    for path in sorted(p for p in d.rglob("*") if p.is_file() and p.name != MANIFEST):
        rel = path.relative_to(d).as_posix()
        files[rel] = {"sha256": file_sha256(path), "size": path.stat().st_size}
    body = json.dumps({"format": fmt, "files": files}, indent=1, sort_keys=True)
    (d / MANIFEST).write_text(body + "\n", encoding="utf-8")
    return hashlib.sha256((d / MANIFEST).read_bytes()).hexdigest()


def manifest_sha256(directory: str | Path) -> str:
    return file_sha256(Path(directory) / MANIFEST)


def read_manifest(manifest: Path, expected_sha256: str | None = None) -> dict[str, Any]:
    """Parse a manifest, first checking its own hash when the registry recorded one."""
    try:
        raw = manifest.read_bytes()
    except OSError as exc:
        raise IntegrityError(f"{MANIFEST} missing: {exc}") from None
    actual = hashlib.sha256(raw).hexdigest()
    if expected_sha256 and actual != expected_sha256:
        raise IntegrityError(
            f"{MANIFEST} sha256 {actual[:16]}… is not the registered {expected_sha256[:16]}…"
        )
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise IntegrityError(f"{MANIFEST} is not JSON: {exc}") from None
    if not isinstance(body, dict) or body.get("format") not in FORMATS:
        raise IntegrityError(f"{MANIFEST} is not a manifest of {' or '.join(FORMATS)}")
    files = body.get("files")
    if not isinstance(files, dict) or not files:
        raise IntegrityError(f"{MANIFEST} lists no files")
    return body


def entry_path(root: Path, rel: object) -> Path:
    """Where a manifest entry lies under ``root``; a name that could leave it is refused."""
    pure = PurePosixPath(rel) if isinstance(rel, str) and rel and "\\" not in rel else None
    if pure is None or pure.is_absolute() or any(p in {".", ".."} for p in pure.parts):
        raise IntegrityError(f"{MANIFEST} names a file outside the bundle: {rel!r}")
    return root.joinpath(*pure.parts)


def entry_expected(rel: str, entry: object) -> tuple[int, str]:
    """A manifest entry's (size, sha256)."""
    size = entry.get("size") if isinstance(entry, dict) else None
    sha = entry.get("sha256") if isinstance(entry, dict) else None
    if not isinstance(size, int) or size < 0 or not isinstance(sha, str):
        raise IntegrityError(f"{MANIFEST} entry for {rel} has no size and sha256")
    return size, sha


def verify(directory: str | Path, expected_sha256: str | None = None) -> dict[str, Any]:
    """Check every file the manifest lists (size, then sha256); return the manifest.

    Paths are checked to stay inside ``directory``: a manifest naming ``../x`` is refused."""
    d = Path(directory).resolve()
    body = read_manifest(d / MANIFEST, expected_sha256)
    for rel, entry in body["files"].items():
        path = entry_path(d, rel)
        size, sha = entry_expected(rel, entry)
        if d not in path.resolve().parents:  # a link inside that points out
            raise IntegrityError(f"{MANIFEST} names a file outside the bundle: {rel!r}")
        try:
            actual = os.stat(path).st_size
        except OSError:
            raise IntegrityError(f"{rel} is missing") from None
        if actual != size:
            raise IntegrityError(f"{rel} is {actual} bytes, the manifest says {size}")
        if file_sha256(path) != sha:
            raise IntegrityError(f"{rel} does not match its sha256 in {MANIFEST}")
    return body


def write_smoke_set(directory: str | Path, cases: Sequence[tuple[str, str]]) -> Path:
    """Write ``smoke.tsv`` into a bundle directory (before `write_manifest`, so it is covered)."""
    path = Path(directory) / SMOKE_SET
    path.write_text(format_smoke_set(cases), encoding="utf-8")
    return path


def format_smoke_set(cases: Sequence[tuple[str, str]]) -> str:
    lines = [SMOKE_SET_HEADER]
    for text, label in cases:
        if not text.strip() or "\t" in text or "\n" in text or "\r" in text:
            raise ValueError(f"a smoke case text must be one non-empty line without tabs: {text!r}")
        if label not in LABELS:
            raise ValueError(f"smoke case label {label!r} is not one of {LABELS}")
        lines.append(f"{text}\t{label}")
    if len(lines) - 1 > MAX_SMOKE_CASES:
        raise ValueError(f"{len(lines) - 1} smoke cases, at most {MAX_SMOKE_CASES}")
    return "\n".join(lines) + "\n"


def read_smoke_set(path: str | Path) -> tuple[tuple[str, str], ...]:
    """Parse a ``smoke.tsv``; ``ValueError`` naming the line when any case is unreadable: a
    case that were dropped quietly would be a check that never runs."""
    cases: list[tuple[str, str]] = []
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip() or (number == 1 and line == SMOKE_SET_HEADER):
            continue
        text, sep, label = line.partition("\t")
        if not sep or not text.strip() or label not in LABELS:
            raise ValueError(
                f"{SMOKE_SET} line {number} is not `text<TAB>label` with a label of {LABELS}"
            )
        cases.append((text, label))
    if len(cases) > MAX_SMOKE_CASES:
        raise ValueError(f"{SMOKE_SET} holds {len(cases)} cases, at most {MAX_SMOKE_CASES}")
    return tuple(cases)
