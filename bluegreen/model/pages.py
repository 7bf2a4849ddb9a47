"""Filling a read-only mapping's page tables without holding the GIL.

A new version's first requests would otherwise take a minor fault for every page they touch,
and its canary would look slower than live for no reason of its own. Touching the pages from
Python is one long numpy call that holds the GIL, which stalls the event loop of the process
doing it for as long as the faults take: ``madvise(MADV_POPULATE_READ)`` through ctypes does
the same work with the GIL released.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import mmap
from typing import Any

import numpy as np

MADV_POPULATE_READ = 22
"""Linux 5.14+; older kernels answer EINVAL and the pages are touched in chunks instead."""
_CHUNK_PAGES = 256
"""Pages touched per numpy call on the fallback path: each call holds the GIL, and between
calls the interpreter can hand it to the event loop."""


@functools.cache
def _madvise() -> Any:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        fn = ctypes.CDLL(name, use_errno=True).madvise  # CDLL: the call releases the GIL
    except (OSError, AttributeError):
        return None
    fn.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    fn.restype = ctypes.c_int
    return fn


def populate(array: np.ndarray[Any, Any]) -> None:
    """Map every page of ``array`` (a read-only memmap) into this process's page tables."""
    if array.nbytes == 0:
        return
    page = mmap.PAGESIZE
    start = array.ctypes.data & ~(page - 1)
    end = array.ctypes.data + array.nbytes
    madvise = _madvise()
    if madvise is not None and madvise(start, end - start, MADV_POPULATE_READ) == 0:
        return
    flat = array.reshape(-1).view(np.uint8)
    step = page * _CHUNK_PAGES
    for offset in range(0, flat.size, step):
        int(flat[offset : offset + step : page].sum())
