"""Test doubles for unit tests only (integration tests use a real mlflow server)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bluegreen.registry import ControlView, RegistryUnavailable, Target, UnknownVersion
from bluegreen.serving.contract import LABELS
from bluegreen.serving.lifecycle import Loader
from bluegreen.serving.model_handle import LoadedModel, ModelRef
from bluegreen.settings import Settings

POSITIVE_WORDS = ("최고", "재밌", "재미있", "감동", "추천", "명작", "꿀잼", "훌륭")
NEGATIVE_WORDS = ("최악", "지루", "재미없", "낭비", "쓰레기", "노잼", "엉망", "아깝")


class KeywordModel:
    """A tiny deterministic 'model' that passes the smoke gate."""

    labels = LABELS

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.calls = 0

    def predict_texts(self, texts: Sequence[str]) -> NDArray[np.float64]:
        self.calls += 1
        if self.delay_s:
            time.sleep(self.delay_s)
        out = np.empty((len(texts), 3))
        for i, text in enumerate(texts):
            pos = sum(w in text for w in POSITIVE_WORDS)
            neg = sum(w in text for w in NEGATIVE_WORDS)
            logits = np.array([neg, 0.5, pos], dtype=np.float64)
            e = np.exp(logits - logits.max())
            out[i] = e / e.sum()
        return out


class BrokenModel(KeywordModel):
    """Misbehaves in a chosen way: raise, nan, negative, unnormalised, wrong_shape."""

    def __init__(self, mode: str, delay_s: float = 0.0) -> None:
        super().__init__(delay_s)
        self.mode = mode

    def predict_texts(self, texts: Sequence[str]) -> NDArray[np.float64]:
        good = super().predict_texts(texts)
        if self.mode == "raise":
            raise RuntimeError("model exploded")
        if self.mode == "nan":
            good[:, 0] = np.nan
        elif self.mode == "negative":
            good[:, 0] = -0.5
        elif self.mode == "unnormalised":
            good = good * 3
        elif self.mode == "wrong_shape":
            good = good[:, :2]
        elif self.mode == "swapped":
            good = good[:, ::-1].copy()
        return good


class CachingModel(KeywordModel):
    """Caches single texts as the ensemble does; `uncached` is its cache-free entry point.
    `delay_s` is the cost of scoring (a cache hit costs nothing)."""

    def __init__(self, delay_s: float = 0.0) -> None:
        super().__init__(delay_s)
        self.cache: dict[str, NDArray[np.float64]] = {}
        self.cached_calls = 0
        self.uncached_calls: list[int] = []
        """Number of texts of each uncached call."""
        self.lock = threading.Lock()

    def predict_texts(self, texts: Sequence[str]) -> NDArray[np.float64]:
        self.cached_calls += 1
        if len(texts) == 1 and texts[0] in self.cache:
            return self.cache[texts[0]].copy()
        out = super().predict_texts(texts)
        if len(texts) == 1:
            self.cache[texts[0]] = out.copy()
        return out

    def uncached(self, texts: Sequence[str]) -> NDArray[np.float64]:
        with self.lock:
            self.uncached_calls.append(len(texts))
        return super().predict_texts(texts)


def loaded(version: int, model: Any = None, name: str = "m") -> LoadedModel:
    model = model or KeywordModel()
    ref = ModelRef(name, version, f"models:/{name}/{version}", run_id=f"run{version}")
    return LoadedModel(
        ref, model.predict_texts, None, True, keepalive=model,
        uncached_fn=getattr(model, "uncached", None),
    )  # fmt: skip


class FakeLoader:
    """Maps versions to model factories; unknown versions load a KeywordModel."""

    def __init__(self) -> None:
        self.factories: dict[int, Callable[[], Any]] = {}
        self.failures: dict[int, Exception] = {}
        self.load_delay_s = 0.0
        self.loaded: list[int] = []
        self.gate: threading.Event | None = None
        self.hangs: set[int] = set()
        """Versions whose load blocks until `unblock` is set (a `load_context` that hangs)."""
        self.unblock = threading.Event()
        self.aborts = 0

    def __call__(self, ref: ModelRef) -> LoadedModel:
        if self.gate is not None:
            self.gate.wait(10)
        if ref.version in self.hangs:
            self.unblock.wait(30)
        if self.load_delay_s:
            time.sleep(self.load_delay_s)
        self.loaded.append(ref.version)
        if ref.version in self.failures:
            raise self.failures[ref.version]
        model = self.factories.get(ref.version, KeywordModel)()
        return LoadedModel(
            ref, model.predict_texts, None, True, keepalive=model,
            uncached_fn=getattr(model, "uncached", None),
        )  # fmt: skip

    def abort(self) -> None:
        self.aborts += 1

    def factory(self, settings: Settings, registry: Any) -> Loader:
        return self


class FakeRegistry:
    """In-memory registry with the `bluegreen.registry.Registry` interface."""

    def __init__(self, model_name: str = "ensemble-sentiment-model") -> None:
        self.model_name = model_name
        self.versions: dict[int, dict[str, str]] = {}
        self.alias: int | None = None
        self.canary_percent: float | None = None
        self.down = False
        self.calls = 0

    def _check(self) -> None:
        self.calls += 1
        if self.down:
            raise RegistryUnavailable("connection refused")

    def add(self, version: int, *, alias: bool = True) -> None:
        self.versions[version] = {}
        if alias:
            self.alias = version

    def model_uri(self, version: int) -> str:
        return f"models:/{self.model_name}/{version}"

    def resolve(self) -> Target | None:
        self._check()
        if self.alias is None:
            return None
        tags = self.versions[self.alias]
        return Target(
            self.alias,
            None,
            "alias:production",
            tags.get("bluegreen.rejected"),
            tags.get("bluegreen.promoted_by"),
        )

    def control_view(self) -> ControlView:
        self._check()
        return ControlView(self.alias, self.canary_percent)

    def alias_version(self) -> int | None:
        return self.control_view().alias_version

    def get(self, version: int) -> Target:
        self._check()
        if version not in self.versions:
            raise UnknownVersion(str(version))
        return Target(version, None, "pinned", self.versions[version].get("bluegreen.rejected"))

    def has_versions(self) -> bool:
        self._check()
        return bool(self.versions)

    def tag_rejected(self, version: int, reason: str) -> None:
        self._check()
        self.versions[version]["bluegreen.rejected"] = reason

    def set_alias(self, version: int, *, who: str, why: str) -> None:
        self._check()
        self.alias = version
        self.versions[version]["bluegreen.promoted_by"] = f"{who}: {why}"

    def mark_promoted(self, version: int, *, who: str, why: str) -> None:
        self._check()
        self.versions[version]["bluegreen.promoted_by"] = f"{who}: {why}"

    def restore_alias(self, live_version: int, rejected_version: int) -> None:
        self.set_alias(live_version, who="bluegreen", why=f"{rejected_version} rejected")

    def set_canary_percent(self, percent: float) -> None:
        self._check()
        self.canary_percent = percent


class SwitchableModel(KeywordModel):
    """A KeywordModel that passes smoke and starts raising once `failing` is set."""

    def __init__(self, delay_s: float = 0.0) -> None:
        super().__init__(delay_s)
        self.failing = False

    def predict_texts(self, texts: Sequence[str]) -> NDArray[np.float64]:
        if self.failing:
            self.calls += 1
            raise RuntimeError("candidate broke under traffic")
        return super().predict_texts(texts)


class RecordingListener:
    """A lifecycle `Listener` that records every rejection and canary pass it is told about."""

    def __init__(self) -> None:
        self.rejected: list[tuple[int, str, str]] = []
        self.passed: list[tuple[int, str]] = []

    async def on_rejected(self, ref: ModelRef, reason: str, stage: str) -> None:
        self.rejected.append((ref.version, reason, stage))

    async def on_canary_passed(self, ref: ModelRef, reason: str) -> None:
        self.passed.append((ref.version, reason))


class CountingExecutor(ThreadPoolExecutor):
    """A real thread pool that counts `submit` calls (to prove which path a request took)."""

    def __init__(self, max_workers: int = 2) -> None:
        super().__init__(max_workers, "counting")
        self.submitted = 0

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.submitted += 1
        return super().submit(fn, *args, **kwargs)


class FakeTransport:
    """The parts of an asyncio TCP transport that uvicorn's HTTP protocols use, recording what
    the server wrote and whether it half-closed (write_eof) or closed the connection. Closing
    delivers `connection_lost` on the next loop iteration, as a real transport does."""

    def __init__(self, peer: tuple[str, int] = ("127.0.0.1", 50000)) -> None:
        self.peer = peer
        self.written = bytearray()
        self.closed = False
        self.eof_written = False
        self.reading = True
        self.protocol: Any = None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": self.peer, "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def write(self, data: bytes) -> None:
        assert not self.eof_written, "write after write_eof"
        self.written += data

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof_written = True

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.protocol is not None:
                import asyncio

                asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol
