"""Which canary bucket a client key falls in: a keyed hash, so stickiness holds but no client
can choose its bucket.

An unkeyed hash (crc32 before) let a client pick request ids that land on the slot it wants and
steer slow work to the candidate. With a secret key, a client learns where a key goes only by
sending it; it cannot compute it. (It can still probe and keep the keys it likes: that is why
the canary judges latency on paired scoring of the same texts, not on what each slot received.)
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from pathlib import Path

BUCKETS = 10_000
KEY_BYTES = 32
KEY_FILE = "canary.key"
_PERSON = b"bg-canary"


class CanaryKeyError(RuntimeError):
    """The host's key file is unusable (wrong size); raised at start, never at request time."""


def bucket(key: bytes, client_key: str) -> int:
    """The client's bucket in [0, BUCKETS): stable for one key, unpredictable without it."""
    digest = hashlib.blake2b(
        client_key.encode("utf-8", "surrogatepass"), key=key, digest_size=8, person=_PERSON
    ).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def key_from_secret(secret: str) -> bytes:
    """A fleet's shared secret (any length) as a key of the size blake2b takes."""
    return hashlib.blake2b(secret.encode("utf-8"), digest_size=KEY_BYTES, person=_PERSON).digest()


def host_key(state_dir: Path) -> bytes:
    """The key every worker of this host shares when the fleet sets none.

    Created once: the first worker writes random bytes to a private temporary file and
    publishes it with `link`, which fails when another worker won the race, so a reader never
    sees a partial key and every worker ends up with the same one. Mode 0600: anyone who can
    read it can compute the buckets."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / KEY_FILE
    if not path.exists():
        tmp = state_dir / f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(secrets.token_bytes(KEY_BYTES))
                out.flush()
                os.fsync(out.fileno())
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    key = path.read_bytes()
    if len(key) != KEY_BYTES:
        raise CanaryKeyError(
            f"{path} holds {len(key)} bytes, not {KEY_BYTES}: remove it and restart every worker"
        )
    return key


def resolve_key(secret: str | None, state_dir: Path) -> bytes:
    return key_from_secret(secret) if secret else host_key(state_dir)
