"""Test doubles for unit tests only (integration tests use a real mlflow server)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bluegreen.registry import (
    HISTORY_TAG_PREFIX,
    ControlView,
    RegistryUnavailable,
    Target,
    UnknownVersion,
    VersionInfo,
)
from bluegreen.serving.contract import LABELS
from bluegreen.serving.lifecycle import CanaryPassed, Loader, ManagerEvent, Rejected, SlotManager
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
    """In-memory registry with the `bluegreen.registry.Registry` interface.

    `down` makes every call raise `RegistryUnavailable`; `hang` (a set of method names) makes
    those calls block until `release` is set, as a registry that never answers does."""

    alias_name = "production"

    def __init__(self, model_name: str = "ensemble-sentiment-model") -> None:
        self.model_name = model_name
        self.versions: dict[int, dict[str, str]] = {}
        self.alias: int | None = None
        self.canary_percent: float | None = None
        self.model_tags: dict[str, str] = {}
        self.down = False
        self.calls = 0
        self.hang: set[str] = set()
        self.release = threading.Event()
        self.hanging = 0
        """Calls blocked in `hang` right now."""
        self.fail_alias_moves = False
        """`set_alias` raises (a tag written, the alias move lost: the half-done rejection)."""

    def _check(self, name: str = "") -> None:
        self.calls += 1
        if name in self.hang:
            self.hanging += 1
            try:
                self.release.wait(30)
            finally:
                self.hanging -= 1
        if self.down:
            raise RegistryUnavailable("connection refused")

    def add(self, version: int, *, alias: bool = True) -> None:
        self.versions[version] = {}
        if alias:
            self.alias = version

    def model_uri(self, version: int) -> str:
        return f"models:/{self.model_name}/{version}"

    def _target(self, version: int, source: str) -> Target:
        tags = self.versions[version]
        return Target(
            version, None, source, tags.get("bluegreen.rejected"),
            tags.get("bluegreen.promoted_by"),
        )  # fmt: skip

    def resolve(self) -> Target | None:
        self._check("resolve")
        if self.alias is None:
            return None
        return self._target(self.alias, "alias:production")

    def control_view(self) -> ControlView:
        self._check("control_view")
        history = tuple(
            sorted((k, v) for k, v in self.model_tags.items() if k.startswith(HISTORY_TAG_PREFIX))
        )
        return ControlView(self.alias, self.canary_percent, history)

    def list_versions(self) -> list[VersionInfo]:
        self._check("list_versions")
        return [
            VersionInfo(v, tags.get("bluegreen.rejected"), float(v))
            for v, tags in sorted(self.versions.items(), reverse=True)
        ]

    def alias_version(self) -> int | None:
        return self.control_view().alias_version

    def get(self, version: int) -> Target:
        self._check("get")
        if version not in self.versions:
            raise UnknownVersion(str(version))
        return self._target(version, "pinned")

    def has_versions(self) -> bool:
        self._check("has_versions")
        return bool(self.versions)

    def tag_rejected(self, version: int, reason: str) -> None:
        self._check("tag_rejected")
        self.versions[version]["bluegreen.rejected"] = reason

    def clear_rejected(self, version: int, *, audit: str) -> None:
        self._check("clear_rejected")
        tags = self.versions[version]
        tags["bluegreen.unrejected"] = audit
        tags.pop("bluegreen.rejected", None)

    def set_alias(self, version: int, *, who: str, why: str) -> None:
        self._check("set_alias")
        self.versions[version]["bluegreen.promoted_by"] = f"{who}: {why}"
        if self.fail_alias_moves:
            raise RegistryUnavailable("alias move lost")
        self.alias = version

    def mark_promoted(self, version: int, *, who: str, why: str) -> None:
        self._check("mark_promoted")
        self.versions[version]["bluegreen.promoted_by"] = f"{who}: {why}"

    def restore_alias(self, good_version: int, rejected_version: int) -> None:
        self.set_alias(good_version, who="bluegreen", why=f"{rejected_version} rejected")

    def set_canary_percent(self, percent: float) -> None:
        self._check("set_canary_percent")
        self.canary_percent = percent

    def append_history(
        self,
        entry_json: str,
        keep: int,
        current: tuple[tuple[str, str], ...] | None = None,
        *,
        event_id: str | None = None,
    ) -> str:
        self._check("append_history")
        keys = sorted(k for k in self.model_tags if k.startswith(HISTORY_TAG_PREFIX))
        seq = int(keys[-1][len(HISTORY_TAG_PREFIX) :].split("-")[0]) + 1 if keys else 1
        key = f"{HISTORY_TAG_PREFIX}{seq:010d}-000000"
        self.model_tags[key] = entry_json
        for old in [*keys, key][: max(0, len(keys) + 1 - keep)]:
            del self.model_tags[old]
        return key

    def history_versions(self) -> list[tuple[str, int]]:
        """(action, version) of each stored history entry, oldest first (for assertions)."""
        import json

        return [
            (json.loads(v)["action"], json.loads(v)["version"])
            for k, v in sorted(self.model_tags.items())
            if k.startswith(HISTORY_TAG_PREFIX)
        ]


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
    """Records every rejection and canary pass a watched SlotManager puts on its event queue
    (reading `rejected` or `passed` drains the queue)."""

    def __init__(self) -> None:
        self._rejected: list[tuple[int, str, str]] = []
        self._passed: list[tuple[int, str]] = []
        self._managers: list[SlotManager] = []

    def watch(self, manager: SlotManager) -> None:
        self._managers.append(manager)

    def _drain(self) -> None:
        for manager in self._managers:
            while not manager.events.empty():
                item: ManagerEvent = manager.events.get_nowait()
                if isinstance(item, Rejected):
                    self._rejected.append((item.ref.version, item.reason, item.stage))
                elif isinstance(item, CanaryPassed):
                    self._passed.append((item.ref.version, item.reason))

    @property
    def rejected(self) -> list[tuple[int, str, str]]:
        self._drain()
        return self._rejected

    @property
    def passed(self) -> list[tuple[int, str]]:
        self._drain()
        return self._passed


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
