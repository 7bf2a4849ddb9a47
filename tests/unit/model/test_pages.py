"""populate(): after it, every page of the mapping is in this process's page tables."""

from __future__ import annotations

import mmap
from pathlib import Path

import numpy as np
import pytest

from bluegreen.model import pages

PAGES = 2048


def resident_kib(array: np.ndarray) -> int:
    """Rss of the mapping that holds ``array``, from /proc/self/smaps."""
    address = array.ctypes.data
    inside = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()[0]
        if "-" in head and ":" not in head:
            lo, hi = (int(x, 16) for x in head.split("-"))
            inside = lo <= address < hi
        elif inside and head == "Rss:":
            return int(line.split()[1])
    raise AssertionError("mapping not found")


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    path = tmp_path / "a.npy"
    np.save(path, np.arange(PAGES * mmap.PAGESIZE // 8, dtype=np.float64))
    return path


def test_a_fresh_mapping_is_not_resident(saved: Path) -> None:
    # the control: np.load maps the file without touching its pages
    assert resident_kib(np.load(saved, mmap_mode="r")) < PAGES * mmap.PAGESIZE // 1024 // 4


@pytest.mark.parametrize("madvise", [True, False], ids=["madvise", "chunked-touch"])
def test_populated_mapping_is_resident(
    saved: Path, madvise: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not madvise:
        monkeypatch.setattr(pages, "_madvise", lambda: None)
    array = np.load(saved, mmap_mode="r")
    pages.populate(array)
    assert resident_kib(array) >= PAGES * mmap.PAGESIZE // 1024
    assert float(array[-1]) == PAGES * mmap.PAGESIZE // 8 - 1


def test_empty_array() -> None:
    pages.populate(np.zeros(0))
