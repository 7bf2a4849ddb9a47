"""Returning freed heap pages to the operating system."""

from __future__ import annotations

import ctypes
import ctypes.util


def malloc_trim() -> None:
    """glibc only; without it RSS never goes down after a model is freed. ctypes drops the
    GIL for the call, so other threads keep running."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return
    try:
        ctypes.CDLL(libc_name).malloc_trim(0)
    except (OSError, AttributeError):  # musl/macOS: no malloc_trim
        return
