"""The interpreter's GIL switch interval, shortened while a version comes in.

While the load and smoke threads run Python beside the event loop, the loop waits for the GIL
each time it wakes until the running thread is made to drop it: up to the switch interval
(5 ms by default). Every request and every timer then waits that long, once per wake-up. A
shorter interval during a swap bounds that wait; outside swaps the loop is the only thread
that runs Python for long, and the default stands.
"""

from __future__ import annotations

import sys


class SwitchInterval:
    def __init__(self, during_swap_s: float) -> None:
        self._during = during_swap_s
        self._saved: float | None = None

    def shorten(self) -> None:
        if self._during > 0 and self._saved is None:
            self._saved = sys.getswitchinterval()
            sys.setswitchinterval(self._during)

    def restore(self) -> None:
        if self._saved is not None:
            sys.setswitchinterval(self._saved)
            self._saved = None
