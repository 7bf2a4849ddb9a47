"""The server's side of the loader child: spawn it, ask it, hold it to a deadline, kill it.

One child per serving process, started on demand and kept between loads until it has been
idle for a while. Any way a request can end badly that is not the version's fault (the
deadline passed, the child crashed or was killed, a newer version superseded it) raises
`TransientLoadError`: the version is retried later, never rejected. The caller blocks on the
manager's load thread, waiting on a pipe with the GIL released; nothing here runs on the event
loop.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import attrs

from bluegreen.loading.pipe import Lines, send
from bluegreen.logging import event
from bluegreen.serving.lifecycle import TransientLoadError

log = logging.getLogger("bluegreen.loader")


@attrs.frozen
class ChildConfig:
    tracking_uri: str
    cache_dir: Path
    nice: int = 10
    sched_idle: bool = True
    log_level: str = "INFO"
    idle_exit_s: float = 600.0


class _Child:
    def __init__(self, config: ChildConfig) -> None:
        req_r, self._req_w = os.pipe()
        ans_r, ans_w = os.pipe()
        self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "bluegreen.loading.child", str(req_r), str(ans_w)],
            pass_fds=(req_r, ans_w),
            stdin=subprocess.DEVNULL,
            # Its own session: a SIGINT to the server's terminal is the server's to handle,
            # and the server decides when the child goes.
            start_new_session=True,
        )
        os.close(req_r)
        os.close(ans_w)
        self._answers = Lines(ans_r)
        self._closed = False
        # The settings go down the pipe, not on the command line: a tracking URI may carry
        # credentials, and any user on the host can read another process's argv.
        self.send({**attrs.asdict(config), "cache_dir": str(config.cache_dir)})

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, request: dict[str, Any]) -> None:
        send(self._req_w, request)

    def receive(self, deadline: float) -> dict[str, Any] | None:
        """The next answer, or None at the deadline; EOFError when the child is gone."""
        return self._answers.receive(max(0.0, deadline - time.monotonic()))

    def kill(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        for fd in (self._req_w, self._answers.fd):
            with contextlib.suppress(OSError):
                os.close(fd)


class _IdleExit(Exception):
    """The child exited on its own (idle) before it read the request."""


class LoaderChild:
    """Thread-safe: `prepare` from a load thread, `abort` from anywhere."""

    def __init__(self, config: ChildConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        """Held by the one `prepare` in progress."""
        self._child: _Child | None = None
        self._ids = itertools.count(1)
        self._aborted = threading.Event()

    @property
    def pid(self) -> int | None:
        child = self._child
        return child.pid if child is not None and child.proc.poll() is None else None

    def start(self) -> None:
        """Spawn now (imports take seconds), so the first load does not wait for them."""
        with self._lock:
            self._ensure()

    def _ensure(self) -> _Child:
        child = self._child
        if child is None or child.proc.poll() is not None:
            if child is not None:
                child.kill()
            child = self._child = _Child(self.config)
            event(log, "loader.spawned", loader_pid=child.pid)
        return child

    def prepare(self, request: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        """Send one request and wait for its answer; transient errors on any child failure."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            self._aborted.clear()
            try:
                return self._ask(self._ensure(), request, deadline, timeout_s)
            except _IdleExit:
                # It ended for being idle just as the request arrived: a new one answers.
                return self._ask(self._ensure(), request, deadline, timeout_s)

    def _ask(
        self, child: _Child, request: dict[str, Any], deadline: float, timeout_s: float
    ) -> dict[str, Any]:
        request_id = next(self._ids)
        try:
            child.send({**request, "id": request_id})
            while True:
                answer = child.receive(deadline)
                if answer is None:
                    self._kill(child, "deadline")
                    raise TransientLoadError(f"load exceeded {timeout_s:g}s; loader child killed")
                if answer.get("id") == request_id:
                    return answer
        except (EOFError, BrokenPipeError, OSError) as exc:
            code = child.proc.wait()
            if code == 0 and not self._aborted.is_set():
                self._forget(child)
                raise _IdleExit from exc
            self._kill(child, "aborted" if self._aborted.is_set() else "crashed")
            why = "aborted" if self._aborted.is_set() else f"crashed (exit {code})"
            raise TransientLoadError(f"loader child {why}: {type(exc).__name__}") from exc

    def _forget(self, child: _Child) -> None:
        child.kill()  # already exited: reaps it and closes the pipes
        if self._child is child:
            self._child = None

    def _kill(self, child: _Child, why: str) -> None:
        self._forget(child)
        event(log, "loader.killed", logging.WARNING, loader_pid=child.pid, why=why,
              returncode=child.proc.returncode)  # fmt: skip

    def abort(self) -> None:
        """Kill the child mid-load (a newer version supersedes it); `prepare` then raises."""
        child = self._child
        if child is not None and self._lock.locked():
            self._aborted.set()
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGKILL)

    def close(self) -> None:
        child, self._child = self._child, None
        if child is not None:
            child.kill()
