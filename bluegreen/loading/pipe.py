"""JSON lines over a pipe, read straight from the file descriptor.

Both ends of the loader protocol wait with `select()` and a deadline, so neither may use a
buffered text reader: it can hold a line the next `select()` no longer sees (the settings and
the first request, say, arrive in one read).
"""

from __future__ import annotations

import json
import os
import select
import time
from typing import Any


def send(fd: int, message: dict[str, Any]) -> None:
    data = memoryview((json.dumps(message) + "\n").encode())
    while data:
        data = data[os.write(fd, data) :]


class Lines:
    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._buffer = b""

    def receive(self, timeout_s: float | None = None) -> dict[str, Any] | None:
        """The next message, or None when ``timeout_s`` passes first (None: wait forever);
        EOFError when the other end closed the pipe."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while b"\n" not in self._buffer:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                    return None
            chunk = os.read(self.fd, 65536)
            if not chunk:
                raise EOFError
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        message: dict[str, Any] = json.loads(line)
        return message
