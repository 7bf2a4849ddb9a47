"""Training-side feature space: vocabulary selection and count matrices.

Extraction itself is :mod:`bluegreen.model.textfeat` (shared with serving); this module only
decides which char n-gram hashes and word n-grams enter the vocabulary (by corpus frequency)
and lays out the columns (char block, then word block).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from functools import cached_property

import attrs
import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from .inference import count_matrix
from .textfeat import Extractor, char_ngram_hashes, normalize, word_ngrams

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]


@attrs.frozen
class FeatureConfig:
    char_range: tuple[int, int] = (1, 5)
    char_max_features: int = 500_000
    char_min_count: int = 3
    word_n: int = 2
    word_max_features: int = 300_000
    word_min_count: int = 2
    chunk: int = 20_000


@attrs.define
class FeatureSpace:
    config: FeatureConfig
    char_hashes: U64
    word_keys: list[str]

    @property
    def n_char(self) -> int:
        return int(self.char_hashes.size)

    @property
    def n_features(self) -> int:
        return self.n_char + len(self.word_keys)

    @cached_property
    def extractor(self) -> Extractor:
        return Extractor(
            self.char_hashes, self.config.char_range, self.word_keys, self.config.word_n
        )

    def block_mask(self, block: str) -> npt.NDArray[np.bool_]:
        """Columns of ``char``, ``word`` or ``both``."""
        if block not in ("char", "word", "both"):
            raise ValueError(f"unknown block {block!r}")
        mask = np.zeros(self.n_features, dtype=bool)
        if block in ("char", "both"):
            mask[: self.n_char] = True
        if block in ("word", "both"):
            mask[self.n_char :] = True
        return mask

    def counts(self, texts: Sequence[str]) -> sp.csr_matrix:
        step = self.config.chunk
        ex = self.extractor
        parts = []
        for i in range(0, len(texts), step):
            chunk = texts[i : i + step]
            rows, cols = ex.pairs(chunk)
            parts.append(count_matrix(rows, cols, (len(chunk), self.n_features)))
        if not parts:
            return sp.csr_matrix((0, self.n_features), dtype=np.float64)
        out: sp.csr_matrix = sp.vstack(parts, format="csr")
        return out


def _merge(a: tuple[U64, I64], b: tuple[U64, I64]) -> tuple[U64, I64]:
    keys = np.concatenate([a[0], b[0]])
    cnts = np.concatenate([a[1], b[1]])
    uniq, inv = np.unique(keys, return_inverse=True)
    return uniq, np.bincount(inv, weights=cnts, minlength=uniq.size).astype(np.int64)


def _top(keys: U64, counts: I64, min_count: int, max_features: int) -> U64:
    keep = counts >= min_count
    keys, counts = keys[keep], counts[keep]
    order = np.lexsort((keys, -counts))[:max_features]  # by count desc, then hash: deterministic
    return np.sort(keys[order])


def build_feature_space(texts: Sequence[str], config: FeatureConfig) -> FeatureSpace:
    """Select the vocabulary by corpus frequency on the fitting texts."""
    lo, hi = config.char_range
    acc: tuple[U64, I64] = (np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64))
    words: Counter[str] = Counter()
    for i in range(0, len(texts), config.chunk):
        norms = [normalize(t) for t in texts[i : i + config.chunk]]
        if hi > 0:
            _, hashes = char_ngram_hashes(norms, lo, hi)
            uniq, cnt = np.unique(hashes, return_counts=True)
            acc = _merge(acc, (uniq, cnt.astype(np.int64)))
        if config.word_n > 0:
            for n in norms:
                words.update(word_ngrams(n, config.word_n))
    hashes = acc[0][acc[0] != 0]  # 0 is reserved by the hash table (never seen in practice)
    counts = acc[1][acc[0] != 0]
    char = _top(hashes, counts, config.char_min_count, config.char_max_features)
    word_items = sorted(
        ((c, k) for k, c in words.items() if c >= config.word_min_count),
        key=lambda ck: (-ck[0], ck[1]),
    )[: config.word_max_features]
    return FeatureSpace(config=config, char_hashes=char, word_keys=sorted(k for _, k in word_items))
