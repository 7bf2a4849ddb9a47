"""Daemon thread pools: work that may hang must never keep a stopping process alive."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from functools import partial
from typing import Any, TypeVar

T = TypeVar("T")


class DaemonExecutor(Executor):
    """A fixed pool of daemon threads. ThreadPoolExecutor's threads are joined at interpreter
    exit, so a model load or smoke run (minutes for a slow version) or a hung registry call
    would keep a SIGTERMed process alive past its drain timeout; work here is abandoned
    instead (it only ever fills an idle slot or reads the registry)."""

    def __init__(self, max_workers: int, name: str) -> None:
        self._queue: queue.SimpleQueue[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]
                                       | None] = queue.SimpleQueue()  # fmt: skip
        self._shutdown = False
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}_{i}", daemon=True)
            for i in range(max_workers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        future: Future[T] = Future()
        self._queue.put((future, partial(fn, **kwargs) if kwargs else fn, args))
        return future

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            future, fn, args = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args)
            except BaseException as exc:  # handed to the caller
                future.set_exception(exc)
            else:
                future.set_result(result)
            # An idle thread must not pin its last job (a loaded model) until the next one.
            del item, future, fn, args
            result = None
        self._queue.put(None)  # wake the next thread

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._shutdown = True
        if cancel_futures:
            with contextlib.suppress(queue.Empty):
                while True:
                    item = self._queue.get_nowait()
                    if item is not None:
                        item[0].cancel()
        self._queue.put(None)
        if wait:
            for thread in self._threads:
                thread.join()
