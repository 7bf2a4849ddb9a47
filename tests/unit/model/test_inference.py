from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bluegreen.model import LABELS
from bluegreen.model.inference import CompiledEnsemble, EnsembleSentimentModel
from bluegreen.model.training import fit_ensemble

ODD_TEXTS = [
    "",
    " ",
    "\t\n  \u200b",
    "🙂🙂🙂👍",
    "ㅋ" * 5000,
    "정말 최고의 영화 " * 400,
    "\x00\x01\x7f",
    "A" * 3,
    "이 영화 진짜 별로... 돈 아까움",
    '"따옴표" 포함 \\ 백슬래시',
    "\ud7a3\uffff",
    "mixed English and 한국어 text 123",
]


def _check_proba(p: np.ndarray, n: int) -> None:
    assert p.dtype == np.float64
    assert p.shape == (n, 3)
    assert np.all(np.isfinite(p))
    assert np.all(p >= 0)
    assert np.allclose(p.sum(axis=1), 1.0, atol=1e-12)


def test_labels(model: EnsembleSentimentModel) -> None:
    assert model.labels == LABELS == ("부정", "중립/복합", "긍정")


def test_fast_path_equals_pyfunc_path(model: EnsembleSentimentModel, tiny_test) -> None:  # type: ignore[no-untyped-def]
    texts = tiny_test.texts[:300] + ODD_TEXTS
    fast = model.predict_texts(texts)
    frame = model.predict(None, pd.DataFrame({"text": texts}))
    assert list(frame.columns) == list(LABELS)
    assert np.allclose(frame.to_numpy(), fast, atol=1e-6, rtol=0)
    # single-text (dense gather) path equals the batched (sparse) path
    singles = np.vstack([model.predict_texts([t]) for t in texts])
    assert np.allclose(singles, fast, atol=1e-9, rtol=0)


def test_odd_texts_give_normalised_probabilities(model: EnsembleSentimentModel) -> None:
    _check_proba(model.predict_texts(ODD_TEXTS), len(ODD_TEXTS))
    for t in ODD_TEXTS:
        _check_proba(model.predict_texts([t]), 1)
    _check_proba(model.predict_texts([]), 0)
    # empty text -> prior only (the folded bias)
    assert np.allclose(model.predict_texts([""]), model.predict_texts(["\u200b "]))


def test_pyfunc_input_shapes(model: EnsembleSentimentModel) -> None:
    a = model.predict(None, pd.DataFrame({"text": ["좋다", None, float("nan")]}))
    assert a.shape == (3, 3)
    b = model.predict(None, ["좋다"])
    c = model.predict(None, {"text": ["좋다"]})
    assert np.allclose(a.iloc[:1].to_numpy(), b.to_numpy())
    assert np.allclose(b, c)
    with pytest.raises(ValueError):
        model.predict(None, pd.DataFrame({"review": ["x"]}))


def test_cache_returns_copies(model: EnsembleSentimentModel) -> None:
    a = model.predict_texts(["캐시 테스트"])
    a[:] = 0
    assert np.isclose(model.predict_texts(["캐시 테스트"]).sum(), 1.0)


def test_predictions_make_sense(model: EnsembleSentimentModel, tiny_test) -> None:  # type: ignore[no-untyped-def]
    from bluegreen.model.evaluate import all_metrics, log_proba

    offset = model.compiled.meta["binary_offset"]
    m = all_metrics(log_proba(model.predict_texts(tiny_test.texts)), tiny_test.labels, 0, offset)
    assert m["binary_acc"] > 0.75
    assert m["macro_f1"] > 0.5


def test_save_load_roundtrip(
    saved_dir: Path, model: EnsembleSentimentModel, tmp_path: Path
) -> None:
    again = CompiledEnsemble.load(model.compiled.save(tmp_path / "again"))
    texts = ["최고", "최악", "그냥 그래요"]
    assert np.array_equal(again.predict_proba(texts), model.compiled.predict_proba(texts))
    assert sorted(p.name for p in saved_dir.iterdir()) == ["arrays.npz", "meta.json", "words.txt"]


def test_unloaded_model_raises_and_pickles_small() -> None:
    import pickle

    m = EnsembleSentimentModel()
    with pytest.raises(RuntimeError):
        m.predict_texts(["x"])
    assert len(pickle.dumps(m)) < 2000


def test_reproducible_with_same_seed(tiny_train, tiny_fit) -> None:  # type: ignore[no-untyped-def]
    from tests.unit.model.conftest import TINY

    again = fit_ensemble(tiny_train, TINY, seed=3)
    a, b = tiny_fit[0], again[0]
    assert np.array_equal(a.extractor.char_hashes, b.extractor.char_hashes)
    assert a.extractor.word_keys == b.extractor.word_keys
    assert np.array_equal(a.weights, b.weights)
    assert np.array_equal(a.bias, b.bias)
    assert tiny_fit[3] == again[3] or all(
        np.isclose(tiny_fit[3][k], again[3][k]) for k in tiny_fit[3] if "seconds" not in k
    )


def test_text_cache_is_bounded_in_bytes(model: EnsembleSentimentModel) -> None:
    import sys
    import tracemalloc

    budget = 256 << 10
    bounded = EnsembleSentimentModel(model.compiled, cache_size=4096, cache_max_bytes=budget)
    # four-byte characters: each key is ~4 KiB, so 4096 entries alone would be ~16 MiB
    texts = [chr(0x1F600 + i % 64) + "😀🙂" * 500 + str(i) for i in range(400)]
    key_bytes = sum(sys.getsizeof(t) for t in texts)
    assert key_bytes > 6 * budget
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        answers = [bounded.predict_texts([t]) for t in texts]
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 2 * budget, grown
    assert bounded._cache.currsize <= budget
    # the most recent texts stay cached (same answer), the oldest were evicted
    assert texts[-1] in bounded._cache
    assert texts[0] not in bounded._cache
    assert np.array_equal(bounded.predict_texts([texts[-1]]), answers[-1])
    # one text larger than the whole budget is answered, not cached
    tiny = EnsembleSentimentModel(model.compiled, cache_max_bytes=1000)
    assert tiny.predict_texts(["가" * 2000]).shape == (1, 3)
    assert len(tiny._cache) == 0


def test_text_cache_count_bound_and_old_state() -> None:
    import pickle

    from bluegreen.model.inference import CACHE_MAX_BYTES

    m = EnsembleSentimentModel(None, cache_size=7, cache_max_bytes=12345)
    again = pickle.loads(pickle.dumps(m))
    assert (again._cache_size, again._cache_max_bytes) == (7, 12345)
    old = EnsembleSentimentModel.__new__(EnsembleSentimentModel)
    old.__setstate__({"cache_size": 10})  # pickled before the byte bound existed
    assert (old._cache_size, old._cache_max_bytes) == (10, CACHE_MAX_BYTES)


def test_cache_keeps_at_most_cache_size_entries(model: EnsembleSentimentModel) -> None:
    m = EnsembleSentimentModel(model.compiled, cache_size=5)
    for i in range(20):
        m.predict_texts([f"캐시 {i}"])
    assert len(m._cache) == 5
    assert "캐시 19" in m._cache


def test_a_long_text_is_read_to_its_end(model: EnsembleSentimentModel) -> None:
    from bluegreen.model.labels import MAX_TEXT_CHARS

    head = ("그냥 영화 봤다 " * 600)[:3000]
    tail = ("최악 노잼 시간 낭비 " * 200)[: MAX_TEXT_CHARS - 3000]
    alone, whole = model.predict_texts([head, head + tail])
    assert whole[0] > alone[0] + 0.05  # more negative: the part past 3,000 characters counts
