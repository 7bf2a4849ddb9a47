"""Open-file limits: every connection is a file descriptor, and accept() failing with EMFILE
would refuse new clients while idle ones hold the descriptors."""

from __future__ import annotations

import resource

# Descriptors kept for everything that is not a client connection: the listening socket, the
# event loop's own, log and metric files, the loader child's pipes, mlflow's HTTP clients.
FD_RESERVE = 256


def raise_open_files_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (children inherit it); returns the soft
    limit now in force. A platform that refuses keeps its current limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard in (soft, resource.RLIM_INFINITY):  # no higher finite limit to go to
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        return soft
    return hard


def open_files_limit() -> int | None:
    """The soft RLIMIT_NOFILE of this process; None when unlimited."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


def connection_cap(requested: int, soft_limit: int | None) -> int:
    """`requested`, lowered so that connections alone never exhaust the descriptors."""
    if soft_limit is None:
        return requested
    room = soft_limit - min(FD_RESERVE, soft_limit // 2)
    return max(1, min(requested, room))
