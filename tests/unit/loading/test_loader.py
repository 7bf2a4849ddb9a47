"""`map_bundle`: a prepared entry of the real ensemble mapped into a `LoadedModel`, with the
uncached entry point the canary's paired timing uses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bluegreen.loading.cache import VersionCache
from bluegreen.loading.loader import map_bundle
from bluegreen.model import bundle
from bluegreen.model.inference import CompiledEnsemble
from bluegreen.serving.model_handle import ModelRef


def _entry(cache: VersionCache, smoke: tuple[tuple[str, str], ...] = ()) -> Path:
    rng = np.random.default_rng(5)
    compiled = CompiledEnsemble(
        char_hashes=np.arange(1, 200, dtype=np.uint64), char_range=(1, 2),
        word_keys=["최고", "최악", "영화"], word_n=1, member_names=["m"],
        idf=np.ones((1, 202)), weights=rng.normal(size=(1, 202, 3)), bias=np.zeros(3),
        binary=[False], sublinear=[True], l2=[True],
    )  # fmt: skip
    staging = cache.root / "stage"
    staging.mkdir(parents=True)
    compiled.save_prepared(staging)
    if smoke:
        bundle.write_smoke_set(staging, smoke)
    return cache.publish(staging, cache.entry(1, "cd" * 32))


def test_the_uncached_entry_computes_every_time_and_agrees_with_predict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = VersionCache(tmp_path / "models")
    model = map_bundle(ModelRef("m", 1, "models:/m/1"), _entry(cache), cache)
    compiled: Any = model.keepalive.compiled  # type: ignore[attr-defined]
    computed: list[int] = []
    real_logits = compiled.logits

    def counting(texts: Any) -> Any:
        computed.append(len(texts))
        return real_logits(texts)

    monkeypatch.setattr(compiled, "logits", counting)
    text = "정말 최고의 영화"
    cached = model.predict([text])
    assert model.predict([text]).tolist() == cached.tolist()
    assert computed == [1]  # the second answer came from the per-text cache
    for _ in range(3):
        assert np.allclose(model.predict_uncached([text]), cached)
    assert computed == [1, 1, 1, 1]  # the uncached entry never answers from it
    batch = model.predict_uncached([text, "최악", "영화"])
    assert batch.shape == (3, 3)
    assert np.allclose(batch.sum(axis=1), 1.0)


def test_the_version_smoke_set_in_the_entry_rides_on_the_ref(tmp_path: Path) -> None:
    cache = VersionCache(tmp_path / "models")
    own = (("최고", "긍정"), ("최악", "부정"))
    model = map_bundle(ModelRef("m", 1, "models:/m/1"), _entry(cache, own), cache)
    assert model.ref.smoke_set == own
    assert model.ref.version == 1


def test_an_entry_without_a_smoke_set_leaves_the_ref_alone(tmp_path: Path) -> None:
    cache = VersionCache(tmp_path / "models")
    ref = ModelRef("m", 1, "models:/m/1")
    assert map_bundle(ref, _entry(cache), cache).ref is ref
