"""The compiled kernels against the numpy reference path, and how they are loaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bluegreen.model import inference, textfeat
from bluegreen.model.inference import CompiledEnsemble
from tests.unit.model.test_inference import ODD_TEXTS


def _reference(compiled: CompiledEnsemble, texts: list[str]) -> np.ndarray:
    compiled.use_kernels(False)
    try:
        return compiled.logits(texts)
    finally:
        compiled.use_kernels(True)


@pytest.fixture(scope="module")
def loaded(saved_dir: Path) -> CompiledEnsemble:
    compiled = CompiledEnsemble.load(saved_dir)
    assert compiled.compiled_kernels, "numba is a runtime dependency: the kernels must load"
    return compiled


def test_kernel_equals_numpy_path_batched_and_single(loaded: CompiledEnsemble, tiny_test) -> None:  # type: ignore[no-untyped-def]
    texts = tiny_test.texts[:400] + ODD_TEXTS
    fast = loaded.logits(texts)
    ref = _reference(loaded, texts)
    assert fast.shape == (len(texts), 3)
    assert np.allclose(fast, ref, atol=1e-9, rtol=0)
    singles = np.vstack([loaded.logits([t]) for t in texts])
    assert np.allclose(singles, ref, atol=1e-9, rtol=0)
    # the logits move with the text: a kernel that ignored features would still match on ""
    assert np.ptp(fast, axis=0).min() > 0.5


def test_repeated_ngrams_use_each_members_tf(loaded: CompiledEnsemble) -> None:
    # repeats separate count, 1 + log(count) and presence weighting
    texts = ["재밌다", "재밌다 재밌다 재밌다", "재밌다 " * 50, "별로 " * 7 + "재밌다"]
    assert np.allclose(loaded.logits(texts), _reference(loaded, texts), atol=1e-9, rtol=0)


def test_word_ngrams_in_the_kernel_match_the_regex_tokenizer(loaded: CompiledEnsemble) -> None:
    # the kernel finds words itself (a \\w table + hashes); the reference uses re and a dict
    vocab = loaded.extractor.word_keys
    bigram = next(k for k in vocab if " " in k)
    a, b = bigram.split(" ")
    texts = [
        bigram,
        f"{a}!!{b}",  # punctuation between words still makes the bigram
        f"{a}_{b}",  # underscore is a word character: one token
        f"{a}{a} {b}",
        f"{b} {a}",
        "1,000원 2차 3D x_y ǅ ﾟ Ⅷ ١٢٣",
        f"   {a}   ",
        f"{a} {b} " * 20,
    ]
    assert np.allclose(loaded.logits(texts), _reference(loaded, texts), atol=1e-9, rtol=0)
    # word order changes the bigram (and the char n-grams across the space)
    assert not np.allclose(loaded.logits([bigram])[0], loaded.logits([f"{b} {a}"])[0])


def test_lone_surrogates_are_scored_not_raised(loaded: CompiledEnsemble) -> None:
    # not valid UTF-8 (the API rejects it), but a Python caller of predict_texts can pass one
    texts = ["lone \ud800 surrogate", "\udfff"]
    assert np.allclose(loaded.logits(texts), _reference(loaded, texts), atol=1e-9, rtol=0)


def test_line_table_finds_every_key_through_overflow_chains() -> None:
    kernels = inference._load_kernels()
    rng = np.random.default_rng(5)
    keys = np.unique(rng.integers(1, 2**63, size=5000, dtype=np.uint64))
    table, shift = inference.line_table(kernels, keys)
    assert table.ctypes.data % 64 == 0  # one bucket = one cache line
    homes = ((keys * np.uint64(0xD6E8FEB86659FD93)) >> shift).astype(np.int64)
    placed = {int(k): b for b in range(table.shape[0]) for k in table[b, :4] if k}
    assert sum(placed[int(k)] != h for k, h in zip(keys, homes, strict=True)) > 0, "no overflow"
    for i, k in enumerate(keys):
        assert kernels._probe(k, table, shift) == i
    absent = rng.integers(1, 2**63, size=5000, dtype=np.uint64)
    absent = absent[~np.isin(absent, keys)]
    assert all(kernels._probe(q, table, shift) == -1 for q in absent)
    assert kernels._probe(np.uint64(0), table, shift) == -1  # 0 marks empty slots
    with pytest.raises(ValueError, match="reserved"):
        inference.line_table(kernels, np.array([0, 5], dtype=np.uint64))
    # a repeated key would leave one column unreachable: found while filling, even far apart
    with pytest.raises(ValueError, match="duplicate"):
        inference.line_table(kernels, np.concatenate([keys, keys[2500:2501]]))


def _with_word_keys(full: CompiledEnsemble, word_keys: list[str]) -> CompiledEnsemble:
    ex = full.extractor
    return CompiledEnsemble(
        char_hashes=ex.char_hashes,
        char_range=ex.char_range,
        word_keys=word_keys,
        word_n=ex.word_n,
        member_names=full.member_names,
        idf=full.idf,
        weights=full.weights,
        bias=full.bias,
        binary=full.binary,
        sublinear=full.sublinear,
        l2=full.l2,
    )


def test_serving_never_builds_the_numpy_word_dict(loaded: CompiledEnsemble) -> None:
    fresh = _with_word_keys(loaded, loaded.extractor.word_keys)
    assert fresh.compiled_kernels
    fresh.logits(["재밌다 최고", "별로"])
    assert "word_vocab" not in vars(fresh.extractor)  # tens of MiB the kernels never read
    ref = _reference(fresh, ["재밌다 최고"])  # the numpy path builds it on first use
    assert "word_vocab" in vars(fresh.extractor)
    assert np.allclose(fresh.logits(["재밌다 최고"]), ref, atol=1e-9)


@pytest.mark.parametrize("kernels", [True, False], ids=["kernels", "numpy"])
def test_repeated_word_keys_fail_at_load(
    loaded: CompiledEnsemble, kernels: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not kernels:
        monkeypatch.setattr(inference, "_load_kernels", lambda: None)
    keys = list(loaded.extractor.word_keys)
    keys[-1] = keys[0]
    with pytest.raises(ValueError, match="not unique"):
        _with_word_keys(loaded, keys)


def test_word_char_table_is_the_regex_word_class() -> None:
    import re

    table = textfeat.word_char_table()
    word = re.compile(r"\w")
    for cp in [*range(0, 0x3000), *range(0xAC00, 0xAC40), 0xD7A3, 0xFF9F, 0x1F642, 0x10FFFF]:
        assert bool(table[cp]) == bool(word.match(chr(cp))), hex(cp)


def test_models_without_a_char_or_word_block(tiny_fit, tiny_test) -> None:  # type: ignore[no-untyped-def]
    full: CompiledEnsemble = tiny_fit[0]
    ex = full.extractor
    n_char = ex.char_hashes.size
    texts = tiny_test.texts[:100] + ODD_TEXTS
    variants = {  # name -> (char hashes kept, word keys kept, their columns)
        "words only": (ex.char_hashes[:0], ex.word_keys, slice(n_char, None)),
        "chars only": (ex.char_hashes, [], slice(0, n_char)),
    }
    for name, (char_hashes, word_keys, cols) in variants.items():
        part = CompiledEnsemble(
            char_hashes=char_hashes,
            char_range=ex.char_range,
            word_keys=word_keys,
            word_n=ex.word_n,
            member_names=full.member_names,
            idf=np.ascontiguousarray(full.idf[:, cols]),
            weights=np.ascontiguousarray(full.weights[:, cols, :]),
            bias=full.bias,
            binary=full.binary,
            sublinear=full.sublinear,
            l2=full.l2,
        )
        assert part.compiled_kernels
        assert np.allclose(part.logits(texts), _reference(part, texts), atol=1e-9), name


def test_kernel_source_is_cached_under_a_content_addressed_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    code = Path(inference.__file__).with_name("kernels.py").read_bytes()
    first = inference._stable_kernel_file(code, "bluegreen_kernels_x")
    assert first is not None
    assert first.read_bytes() == code
    stamp = first.stat().st_mtime
    again = inference._stable_kernel_file(code, "bluegreen_kernels_x")
    assert again == first
    # a fixed mtime keeps numba's cache index valid when the file is rewritten
    assert again.stat().st_mtime == stamp == inference._KERNEL_MTIME
    first.write_bytes(b"# tampered\n")
    assert inference._stable_kernel_file(code, "bluegreen_kernels_x") == first
    assert first.read_bytes() == code


def test_unwritable_cache_dir_falls_back_to_the_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(blocker))
    assert inference._stable_kernel_file(b"x = 1\n", "bluegreen_kernels_y") is None


def test_without_numba_the_numpy_path_serves(
    saved_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inference, "_load_kernels", lambda: None)
    compiled = CompiledEnsemble.load(saved_dir)
    assert not compiled.compiled_kernels
    p = compiled.predict_proba(["최고의 영화", "최악"])
    assert p.shape == (2, 3)
    assert np.allclose(p.sum(axis=1), 1.0)


def test_a_kernel_that_fails_leaves_the_numpy_path(
    saved_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Broken:
        @staticmethod
        def ensemble_logits(*_args: object) -> None:
            raise RuntimeError("LLVM exploded")

    monkeypatch.setattr(inference, "_load_kernels", lambda: Broken)
    compiled = CompiledEnsemble.load(saved_dir)
    assert not compiled.compiled_kernels
    assert compiled.predict_proba(["최고"]).shape == (1, 3)


def test_kernels_are_imported_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    # a model's directory (where inference.py and kernels.py live) may be deleted after loading;
    # switching kernels back on later must not need it
    calls: list[int] = []
    monkeypatch.setattr(inference, "_once_values", {})
    monkeypatch.setattr(inference, "_import_kernels", lambda: calls.append(1) or None)
    assert inference._load_kernels() is None
    assert inference._load_kernels() is None
    assert calls == [1]


def test_loading_never_splits_the_word_keys_into_strings(saved_dir: Path) -> None:
    # splitting 300k keys holds the GIL ~40 ms: a stall for requests served beside a swap
    compiled = CompiledEnsemble.load(saved_dir)
    assert compiled.compiled_kernels
    compiled.logits(["재밌다 최고", "별로"])
    assert "_keys" not in vars(compiled.extractor.word_keys)


def test_a_words_file_that_does_not_match_the_meta_fails_to_load(
    saved_dir: Path, tmp_path: Path
) -> None:
    import shutil

    broken = shutil.copytree(saved_dir, tmp_path / "ensemble")
    words = broken / "words.txt"
    words.write_text(words.read_text(encoding="utf-8") + "\nextra", encoding="utf-8")
    with pytest.raises(ValueError, match="does not match"):
        CompiledEnsemble.load(broken)
