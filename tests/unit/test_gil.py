"""SwitchInterval: shortened once, restored to what it was, off when configured 0."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from bluegreen.gil import SwitchInterval


@pytest.fixture(autouse=True)
def _keep_interval() -> Iterator[None]:
    before = sys.getswitchinterval()
    yield
    sys.setswitchinterval(before)


def test_shorten_then_restore() -> None:
    sys.setswitchinterval(0.004)
    interval = SwitchInterval(0.0005)
    interval.shorten()
    assert sys.getswitchinterval() == pytest.approx(0.0005)
    interval.shorten()  # a second window opening changes nothing
    interval.restore()
    assert sys.getswitchinterval() == pytest.approx(0.004)
    interval.restore()  # nothing saved: nothing to do
    assert sys.getswitchinterval() == pytest.approx(0.004)


def test_zero_leaves_the_interpreter_alone() -> None:
    sys.setswitchinterval(0.004)
    interval = SwitchInterval(0.0)
    interval.shorten()
    assert sys.getswitchinterval() == pytest.approx(0.004)
