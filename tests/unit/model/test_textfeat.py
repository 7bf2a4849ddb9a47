from __future__ import annotations

import numpy as np
import pytest

from bluegreen.model import textfeat
from bluegreen.model.textfeat import Extractor, HashTable


def test_normalize() -> None:
    assert textfeat.normalize("  ABC\t\n def ") == "abc def"
    assert textfeat.normalize("ㅋㅋㅋㅋㅋ 재밌다!!!!!") == "ㅋㅋ 재밌다!!"
    assert textfeat.normalize("\x00\x1f") == ""
    # NFD (decomposed jamo, as macOS clients may send) becomes NFC
    import unicodedata

    assert textfeat.normalize(unicodedata.normalize("NFD", "영화")) == "영화"
    assert len(textfeat.normalize("가" * 10_000)) <= textfeat.MAX_CHARS


def test_word_ngrams() -> None:
    assert textfeat.word_ngrams("정말 최고 영화!", 2) == [
        "정말",
        "최고",
        "영화",
        "정말 최고",
        "최고 영화",
    ]
    assert textfeat.word_ngrams("정말 최고", 1) == ["정말", "최고"]
    assert textfeat.word_ngrams("...", 2) == []


def _strings(norm: str, lo: int, hi: int) -> list[str]:
    s = f" {norm} "
    return [s[i : i + n] for n in range(lo, hi + 1) for i in range(len(s) - n + 1)]


@pytest.mark.parametrize(("lo", "hi"), [(1, 5), (2, 4), (1, 1)])
def test_char_hashes_batch_equals_single_and_strings(lo: int, hi: int) -> None:
    norms = ["", "a", "최고의 영화", "ㅋㅋ 굿 👍", "x" * 40]
    rows, hashes = textfeat.char_ngram_hashes(norms, lo, hi)
    for r, n in enumerate(norms):
        single = textfeat.char_ngram_hashes_one(n, lo, hi)
        assert np.array_equal(single, hashes[rows == r]) or sorted(single) == sorted(
            hashes[rows == r]
        )
        # one hash per n-gram string, equal strings -> equal hashes
        strs = _strings(n, lo, hi)
        assert len(single) == len(strs)
        by_str: dict[str, int] = {}
        for s, h in zip(strs, single.tolist(), strict=True):
            assert by_str.setdefault(s, h) == h
        assert len(set(by_str.values())) == len(by_str)


def test_hash_table_matches_searchsorted_with_overflow() -> None:
    rng = np.random.default_rng(0)
    keys = np.unique(rng.integers(1, 2**63, size=5000, dtype=np.uint64))
    table = HashTable(keys)
    queries = np.concatenate([keys, rng.integers(1, 2**63, size=5000, dtype=np.uint64)])
    got = table.lookup(queries)
    idx = np.minimum(np.searchsorted(keys, queries), keys.size - 1)
    want = np.where(keys[idx] == queries, idx, -1)
    assert np.array_equal(got, want)
    assert table.find(queries).tolist() == want[want >= 0].tolist()
    # force overflow chains: many keys, few buckets
    HashTable.MEAN_LOAD, old = 7.0, HashTable.MEAN_LOAD
    try:
        crowded = HashTable(keys)
        assert crowded.rounds > 1
        assert np.array_equal(crowded.lookup(queries), want)
        assert np.array_equal(crowded.lookup(queries[:1]), want[:1])
        assert sorted(crowded.find(queries).tolist()) == sorted(want[want >= 0].tolist())
    finally:
        HashTable.MEAN_LOAD = old
    assert table.lookup(np.zeros(0, dtype=np.uint64)).size == 0
    assert table.lookup(np.zeros(3, dtype=np.uint64)).tolist() == [-1, -1, -1]


def test_hash_table_rejects_zero_key() -> None:
    with pytest.raises(ValueError):
        HashTable(np.array([0, 5], dtype=np.uint64))


def test_extractor_pairs_single_equals_batch() -> None:
    texts = ["최고의 영화", "", "별로 최고 아님", "🙂🙂🙂"]
    _, hashes = textfeat.char_ngram_hashes([textfeat.normalize(t) for t in texts], 1, 3)
    vocab = np.unique(hashes)[::2]
    ex = Extractor(vocab, (1, 3), ["최고", "영화", "최고 아님"], 2)
    rows, cols = ex.pairs(texts)
    for r, t in enumerate(texts):
        _, c1 = ex.pairs([t])
        assert sorted(c1.tolist()) == sorted(cols[rows == r].tolist())
    for t in texts:
        assert sorted(ex.cols_one(t).tolist()) == sorted(ex.pairs([t])[1].tolist())
    _, c = ex.pairs(["최고 아님"])
    assert {ex.word_vocab["최고"], ex.word_vocab["최고 아님"]} <= set(c.tolist())
