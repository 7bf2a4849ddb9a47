from __future__ import annotations

import itertools

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


_TRICKY = [
    *" \t\n\r\x0b\x0c\x1c\x85\xa0\u200b\u2028\u3000\ufeff",  # spaces and controls
    *"aAbBzZ.!?ㅋㅠ가각힣",
    "\u03a3",  # capital sigma: lower() depends on what follows (final sigma)
    "\u0130",  # İ: lower() makes two code points
    "\u0301",  # combining acute: NFC composes it with a preceding letter
    "\u1100\u1161",  # conjoining jamo: NFC composes them into 가
    "\ue000",  # the batch separator, inside a text
    "\U0001f642",
    "\ud800",  # lone surrogate
]
_JOINABLE = [c for c in _TRICKY if c != "\ue000"]  # no per-text fallback


@pytest.mark.parametrize("seed", range(40))
def test_batch_normalisation_equals_per_text(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(seed)
    pool = _TRICKY if seed % 4 == 0 else _JOINABLE
    texts = [
        "".join(rng.choice(pool, size=int(rng.integers(0, 12))))
        for _ in range(int(rng.integers(2, 30)))
    ]
    texts.append("ㅋ" * (textfeat.MAX_CHARS + 5))  # cut before joining
    cp_ref, offsets_ref = textfeat.code_points_per_text(texts)
    if pool is _JOINABLE:  # must take the vectorised path, not fall back to the reference

        def per_text(_: object) -> None:
            raise AssertionError("fell back to the per-text path")

        monkeypatch.setattr(textfeat, "code_points_per_text", per_text)
    cp, offsets = textfeat.code_points(texts)
    assert cp.tolist() == cp_ref.tolist()
    assert offsets.tolist() == offsets_ref.tolist()


def test_batch_normalisation_of_plain_texts() -> None:
    texts = ["  재밌다   ㅋㅋㅋㅋ ", "", "  ", "ΟΔΟΣ", "최고!!!!", "x"]
    cp, offsets = textfeat.code_points(texts)
    got = [cp[a:b].tobytes().decode("utf-32-le") for a, b in itertools.pairwise(offsets)]
    assert got == [" 재밌다 ㅋㅋ ", "  ", "  ", " οδος ", " 최고!! ", " x "]


def test_space_table_is_the_normalisers_space_class_over_all_of_unicode() -> None:
    table = textfeat._space_table()
    every = "".join(map(chr, range(0x110000)))
    want = np.zeros(0x110000, dtype=np.bool_)
    for m in textfeat._SPACE_RE.finditer(every):
        want[m.start() : m.end()] = True
    assert np.array_equal(table, want)


def test_word_keys_behave_as_the_list_and_give_code_points_without_splitting() -> None:
    keys = ["재밌다", "최고 영화", "a", "x_y", "🙂"]
    wk = textfeat.WordKeys.of(keys)
    cp, offsets = wk.code_points()
    assert "_keys" not in vars(wk)  # no Python string per key was built
    got = [cp[a:b].tobytes().decode("utf-32-le") for a, b in itertools.pairwise(offsets)]
    assert got == keys
    assert len(wk) == 5
    assert list(wk) == keys
    assert wk[1] == "최고 영화"
    assert wk[-2:] == keys[-2:]
    assert wk == keys
    assert wk == textfeat.WordKeys("\n".join(keys), 5)
    assert wk != keys[:-1]
    empty = textfeat.WordKeys("", 0)
    assert len(empty) == 0
    assert list(empty) == []
    assert empty.code_points()[1].tolist() == [0]
    with pytest.raises(ValueError, match="expected"):
        textfeat.WordKeys("a\nb", 3)
    with pytest.raises(ValueError, match="newline"):
        textfeat.WordKeys.of(["a\nb"])
