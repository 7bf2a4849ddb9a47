from __future__ import annotations

import itertools
import time
import unicodedata
from collections.abc import Callable

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


# -- bounded cost: runs of non-starters, blank text, whole texts --------------------------

_CAP = textfeat.MAX_NON_STARTERS


def _is_non_starter(c: str) -> bool:
    """The definition, one character at a time (the reference for the table)."""
    return bool(unicodedata.combining(c)) or bool(
        unicodedata.combining(unicodedata.normalize("NFD", c)[0])
    )


def _capped(text: str) -> str:
    """Each run of non-starters cut to its first MAX_NON_STARTERS, one character at a time."""
    out: list[str] = []
    run = 0
    for c in text:
        run = run + 1 if _is_non_starter(c) else 0
        if run <= _CAP:
            out.append(c)
    return "".join(out)


# distinct, so the repeat rule leaves them alone; U+034F (a starter) left out
_MARKS = [chr(c) for c in range(0x300, 0x370) if unicodedata.combining(chr(c))]
_ALL_MARKS = [chr(c) for c in range(0x20000) if unicodedata.combining(chr(c))]
_ASTRAL_MARKS = [c for c in _ALL_MARKS if ord(c) > 0xFFFF]


def _marks(n: int, offset: int = 0) -> str:
    return "".join(_MARKS[(offset + i) % len(_MARKS)] for i in range(n))


def test_non_starter_table_is_the_definition_over_all_of_unicode() -> None:
    every = textfeat._every(0x110000)
    assert every == "".join(map(chr, range(0x110000)))
    want = np.fromiter(map(_is_non_starter, every), dtype=np.bool_, count=0x110000)
    assert np.array_equal(textfeat._non_starter_table(), want)
    assert want[[0xF73, 0xF75, 0xF81]].all()  # ccc 0, decomposing into non-starters


def test_run_regex_finds_what_may_be_a_run_of_non_starters() -> None:
    table = textfeat._non_starter_table()
    regex = textfeat._maybe_run_re()
    for cp in [*np.flatnonzero(table[:0x10000])[::7], 0x10000, 0x1F642, 0x10FFFF]:
        assert regex.fullmatch(chr(cp) * (_CAP + 1)), hex(cp)
        assert not regex.search(chr(cp) * _CAP), hex(cp)
    for c in "a가ㅋ \u1161\u200b":
        assert not regex.search("\u0301" * _CAP + c + "\u0301" * _CAP)


def test_a_run_of_non_starters_is_cut_to_the_stream_safe_bound() -> None:
    def nfc(text: str) -> str:
        return unicodedata.normalize("NFC", text)

    assert textfeat.normalize("a" + _marks(_CAP)) == nfc("a" + _marks(_CAP))  # kept whole
    assert textfeat.normalize("a" + _marks(_CAP + 1)) == nfc("a" + _marks(_CAP))
    assert textfeat.normalize("a" + _marks(4999)) == nfc("a" + _marks(_CAP))
    # every run counts on its own: a starter ends one
    two = "a" + _marks(40) + "b" + _marks(40, 7)
    assert textfeat.normalize(two) == nfc("a" + _marks(_CAP) + "b" + _marks(_CAP, 7))
    # characters that decompose into non-starters count as non-starters
    assert textfeat.normalize("\u0f73" * 500) == textfeat.normalize("\u0f73" * _CAP)
    astral = "x" + "".join(_ASTRAL_MARKS[i % len(_ASTRAL_MARKS)] for i in range(100))
    assert textfeat.normalize(astral) == textfeat.normalize(_capped(astral))
    assert len(_capped(astral)) == _CAP + 1
    # long texts take the table's path, short ones the regex's: both cut alike
    long = "가나다라" * (textfeat._TABLE_SCAN_FROM // 4) + two
    assert textfeat._cap_non_starters(long) == _capped(long) != long
    assert textfeat._cap_non_starters(two) == _capped(two) != two
    emoji = "".join(map(chr, range(0x1F600, 0x1F650)))  # astral, but starters: kept
    assert textfeat._cap_non_starters(emoji) is emoji


def _pathological(rng: np.random.Generator) -> str:
    def chars(lo: int, hi: int, n: int) -> str:
        return "".join(map(chr, rng.integers(lo, hi, n).tolist()))

    def pick(pool: list[str], n: int) -> str:
        return "".join(rng.choice(pool, n).tolist())

    pieces: list[Callable[[int], str]] = [
        lambda n: pick(_ALL_MARKS, n),
        lambda n: pick(_ASTRAL_MARKS, n),
        lambda n: "\u0f73" * n,
        lambda n: chars(0x1100, 0x1200, n),  # conjoining jamo
        lambda n: chars(0x1F300, 0x1FAFF, n),  # astral starters
        lambda n: "👨\u200d👩\u200d👧" * (n // 5 + 1),
        lambda n: "가나" * n,
        lambda n: pick([" ", "a", "\u0130", "\u03a3", "\u200b", "ㅋ"], n),
    ]
    out = []
    for _ in range(int(rng.integers(1, 6))):
        out.append(pieces[int(rng.integers(len(pieces)))](int(rng.integers(1, 80))))
    return "".join(out)


@pytest.mark.parametrize("seed", range(12))
def test_batch_normalisation_equals_per_text_on_pathological_text(seed: int) -> None:
    rng = np.random.default_rng(1000 + seed)
    texts = [_pathological(rng) for _ in range(int(rng.integers(2, 12)))]
    texts.append("가" * textfeat._TABLE_SCAN_FROM + _pathological(rng))
    cp_ref, offsets_ref = textfeat.code_points_per_text(texts)
    cp, offsets = textfeat.code_points(texts)
    assert cp.tolist() == cp_ref.tolist()
    assert offsets.tolist() == offsets_ref.tolist()
    for t in texts:
        assert textfeat._cap_non_starters(t) == _capped(t)
        assert textfeat.normalize(t) == textfeat.normalize(_capped(t))


def _median_s(fn: Callable[[list[str]], object], texts: list[str], repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn(texts)
        times.append(time.perf_counter() - started)
    return sorted(times)[repeats // 2]


def test_pathological_text_costs_no_more_than_plain_text_of_its_length() -> None:
    n = textfeat.MAX_CHARS
    rng = np.random.default_rng(3)
    marks = sorted(rng.choice(_ALL_MARKS, n - 1), key=unicodedata.combining, reverse=True)
    hostile = ["a" + "".join(marks), "\u0f73" * n, "a" + "".join(rng.choice(_ALL_MARKS, n - 1))]
    korean = [("정말 최고의 영화 재밌다 배우 연기 좋다 " * 300)[i : i + n] for i in range(3)]
    textfeat.prepare()
    for path in (textfeat.code_points, lambda ts: [textfeat.normalize(t) for t in ts]):
        plain = _median_s(path, korean)
        # unbounded, NFC's reordering of these costs tens of times the plain text
        assert _median_s(path, hostile) < 3 * plain + 0.002


def test_is_blank_is_what_normalising_leaves_empty() -> None:
    for text in ["", " ", "\u200b", "\ufeff\u200b", "\x00", "\x00 \t\u2028\u200f", "\x85\xa0"]:
        assert textfeat.is_blank(text), repr(text)
        assert textfeat.normalize(text) == ""
    for text in ["a", "\u200b가", "\u0301", "\u2060", "\ud800", " . "]:
        assert not textfeat.is_blank(text), repr(text)
        assert textfeat.normalize(text) != ""
    rng = np.random.default_rng(5)
    for _ in range(300):
        text = "".join(rng.choice(_TRICKY, size=int(rng.integers(0, 6))))
        assert textfeat.is_blank(text) == (textfeat.normalize(text) == ""), repr(text)


def test_texts_up_to_the_limit_are_read_whole() -> None:
    from bluegreen.model.labels import MAX_TEXT_CHARS

    assert textfeat.MAX_CHARS == MAX_TEXT_CHARS
    text = ("가나" * MAX_TEXT_CHARS)[: MAX_TEXT_CHARS - 3] + " 끝!"
    assert len(text) == MAX_TEXT_CHARS
    assert textfeat.normalize(text).endswith(" 끝!")
    _, offsets = textfeat.code_points([text, "a"])
    assert offsets[1] == MAX_TEXT_CHARS + 2  # padded with a space on either side
