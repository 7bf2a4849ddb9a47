"""Text normalisation and n-gram extraction: the ONE code path used by training and serving.

Shipped inside every logged model, so it imports only the standard library, numpy and its
sibling ``labels``.

* Normalising costs time linear in the text: NFC's canonical reordering is an insertion sort of
  each run of non-starters (quadratic in the run), so runs are cut to the bound of UAX #15's
  Stream-Safe Text Format before it; no real text comes near that bound.

* Character n-grams (of the space-padded normalised text, crossing word boundaries) are not
  kept as strings: each n-gram is a 64-bit polynomial hash of its code points, computed for a
  whole batch at once with numpy, and the vocabulary is the sorted array of the kept hashes
  (column = position, found with ``searchsorted``). This is ~5-10x faster than slicing
  substrings and probing a 500k-entry ``dict`` per n-gram in Python.
* Word n-grams (``\\w+`` tokens, unigrams and bigrams) are strings looked up in a ``dict``.
"""

from __future__ import annotations

import functools
import itertools
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import overload

import numpy as np
import numpy.typing as npt

from .labels import MAX_TEXT_CHARS

MAX_CHARS = MAX_TEXT_CHARS
"""Texts are cut to this many characters before feature extraction. The server accepts no
longer text, so this bounds direct callers only: whatever the server accepts is read whole."""

MAX_NON_STARTERS = 30
"""Longest run of non-starters kept (UAX #15's Stream-Safe Text Format bound); the rest of a
longer run is dropped before NFC."""

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]

_P = np.uint64(0x9E3779B97F4A7C15)
_SEED = np.uint64(0x243F6A8885A308D3)
_ONE = np.uint64(1)
_FIB = np.uint64(0xD6E8FEB86659FD93)

_SPACE_CLASS = r"[\s\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028\u2029\ufeff]"
"""What normalising turns into spaces and strips: whitespace, controls, zero-width characters."""
_SPACE_RE = re.compile(_SPACE_CLASS + "+")
_BLANK_RE = re.compile(_SPACE_CLASS + "*")
_REPEAT_RE = re.compile(r"(.)\1\1+")
_TOKEN_RE = re.compile(r"\w+")


def normalize(text: str) -> str:
    """Runs of non-starters cut to :data:`MAX_NON_STARTERS`, NFC, lower case,
    whitespace/control characters collapsed to one space, runs of 3+ identical characters cut
    to 2 (``ㅋㅋㅋㅋ`` → ``ㅋㅋ``, ``.....`` → ``..``)."""
    text = _SPACE_RE.sub(" ", _nfc(_cap_non_starters(text[:MAX_CHARS])).lower()).strip()
    return _REPEAT_RE.sub(r"\1\1", text)


def is_blank(text: str) -> bool:
    """Whether :func:`normalize` leaves nothing of ``text`` (whitespace, controls, zero-width
    characters only), found without normalising it: no other step can empty a text."""
    return _BLANK_RE.fullmatch(text, 0, MAX_CHARS) is not None


def word_ngrams(norm: str, hi: int) -> list[str]:
    """Word (``\\w+`` token) n-grams of a normalised text: unigrams, and bigrams if hi >= 2."""
    if hi <= 0:
        return []
    toks = _TOKEN_RE.findall(norm)
    if hi >= 2:
        toks.extend([f"{a} {b}" for a, b in itertools.pairwise(toks)])
    return toks


def utf32(text: str) -> npt.NDArray[np.uint32]:
    """Code points of ``text`` (lone surrogates kept: a Python caller can pass one)."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


def _codepoints(padded: str) -> U64:
    """Code points + 1 (so that no character hashes like an absent one)."""
    cp = utf32(padded).astype(np.uint64)
    cp += _ONE
    return cp


def char_ngram_hashes(norms: Sequence[str], lo: int, hi: int) -> tuple[I64, U64]:
    """``(row, hash)`` of every char n-gram (``lo <= n <= hi``, repeats kept) of the
    space-padded normalised texts, for a whole batch at once.

    ``hash(c_1..c_n) = ((SEED * P + c_1 + 1) * P + c_2 + 1) ... mod 2**64``; the length is
    implied by the power of SEED (no collision among the ~10M distinct n-grams of NSMC).
    """
    padded = [f" {t} " for t in norms]
    lens = np.fromiter((len(p) for p in padded), dtype=np.int64, count=len(padded))
    total = int(lens.sum())
    if hi <= 0 or total == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint64)
    cp = _codepoints("".join(padded))
    row = np.repeat(np.arange(len(padded), dtype=np.int64), lens)
    # positions left in the own text, counting the position itself
    left = np.repeat(np.cumsum(lens), lens) - np.arange(total, dtype=np.int64)
    h = np.full(total, _SEED, dtype=np.uint64)
    rows: list[I64] = []
    hashes: list[U64] = []
    for n in range(1, hi + 1):
        m = total - n + 1
        if m <= 0:
            break
        h = h[:m] * _P
        h += cp[n - 1 :]
        if n >= lo:
            ok = left[:m] >= n
            rows.append(row[:m][ok])
            hashes.append(h[ok])
    if not rows:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint64)
    return np.concatenate(rows), np.concatenate(hashes)


_SEP = "\ue000"
"""Joins a batch in :func:`code_points`. A private-use code point: not in ``_SPACE_RE``'s class,
uncased and not case-ignorable (so ``lower``'s final-sigma rule sees the end of a text, as it
does per text), an NFC starter that composes with nothing, and not ``\\w``."""


def code_points(texts: Sequence[str]) -> tuple[npt.NDArray[np.uint32], I64]:
    """What the compiled kernel reads: the code points of the space-padded normalised texts,
    concatenated, and the offset of each text (``len(texts) + 1`` entries).

    A batch is normalised as one array: one ``lower`` of the joined texts, then whitespace
    collapsing, stripping and repeat cutting as vectorised masks, which equals
    :func:`normalize` per text (tests fuzz it) at a fraction of its cost: five calls per
    text were a fifth of batched scoring."""
    if len(texts) == 1:  # the latency path: no per-batch array building
        cp1 = utf32(f" {normalize(texts[0])} ")
        return cp1, np.array((0, cp1.size), dtype=np.int64)
    joined = _SEP.join([t[:MAX_CHARS] for t in texts])
    if joined.count(_SEP) != len(texts) - 1:  # a text holds the separator: the per-text path
        return code_points_per_text(texts)
    # The separator is a starter that composes with nothing: no run of non-starters and no
    # composition crosses it, so capping and NFC of the batch are those of each text.
    joined = _nfc(_cap_non_starters(joined))
    return _normalise_joined(utf32(joined.lower()), len(texts))


def _nfc(text: str) -> str:
    # normalize() runs NFC's quick check itself; is_normalized() first would, on a "maybe",
    # normalise the whole text twice.
    return text if text.isascii() else unicodedata.normalize("NFC", text)


_TABLE_SCAN_FROM = 1000
"""Texts this long are checked for long runs of non-starters with the table, shorter ones with
:func:`_maybe_run_re` (where the two cost about the same per text)."""


def _cap_non_starters(text: str) -> str:
    """``text`` with each run of non-starters cut to its first :data:`MAX_NON_STARTERS`.

    Settled without building an array for most texts: a short one by a regex scan for a long
    run of characters that may be non-starters, a long one (a batch) by counting its
    non-starters in the table, which costs less per character than the regex."""
    if len(text) <= MAX_NON_STARTERS or text.isascii():
        return text
    if len(text) < _TABLE_SCAN_FROM:
        if _maybe_run_re().search(text) is None:
            return text
        cp = utf32(text)
        non_starter = _non_starter_table()[cp]
    else:
        cp = utf32(text)
        non_starter = _non_starter_table()[cp]
        if np.count_nonzero(non_starter) <= MAX_NON_STARTERS:
            return text
    at = np.arange(cp.size)
    last_starter = np.maximum.accumulate(np.where(non_starter, -1, at))
    keep = at - last_starter <= MAX_NON_STARTERS  # a starter is 0 past itself
    if keep.all():
        return text
    return cp[keep].tobytes().decode("utf-32-le", "surrogatepass")


def code_points_per_text(texts: Sequence[str]) -> tuple[npt.NDArray[np.uint32], I64]:
    """:func:`code_points` via :func:`normalize` on each text (the reference)."""
    norms = [normalize(t) for t in texts]
    cp = utf32("".join([f" {t} " for t in norms]))
    offsets = np.zeros(len(norms) + 1, dtype=np.int64)
    np.cumsum([len(t) + 2 for t in norms], out=offsets[1:])
    return cp, offsets


def _shifted(mask: npt.NDArray[np.bool_], by: int, fill: bool) -> npt.NDArray[np.bool_]:
    """``out[i] = mask[i - by]`` (``by`` may be negative), ``fill`` where that is outside."""
    out = np.full(mask.size, fill, dtype=np.bool_)
    if by > 0:
        out[by:] = mask[:-by]
    else:
        out[:by] = mask[-by:]
    return out


def _normalise_joined(cp: npt.NDArray[np.uint32], n: int) -> tuple[npt.NDArray[np.uint32], I64]:
    """``normalize`` minus cut/NFC/lower, on ``n`` lowered texts joined by ``_SEP``."""
    sep = cp == ord(_SEP)
    space = _space_table()[cp]
    keep = ~(space & _shifted(space, 1, False))  # each run of spaces → its first, as " "
    c, sep = np.where(space, np.uint32(32), cp)[keep], sep[keep]
    edge = _shifted(sep, 1, True) | _shifted(sep, -1, True)  # first or last of its text
    keep = ~((c == 32) & edge)  # strip
    c, sep = c[keep], sep[keep]
    run3 = np.zeros(c.size, dtype=np.bool_)  # (.)\1\1+ → \1\1: drop the 3rd, 4th, … of a run
    run3[2:] = (c[2:] == c[1:-1]) & (c[1:-1] == c[:-2]) & ~sep[2:]
    c, sep = c[~run3], sep[~run3]
    # pad each text with one space on either side: text j's characters move right by 2j + 1
    # and lose the j separators before them
    chars = np.flatnonzero(~sep)
    text_of = np.cumsum(sep)[chars]
    out = np.full(c.size + n + 1, 32, dtype=np.uint32)
    out[chars + text_of + 1] = c[chars]
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(text_of, minlength=n) + 2, out=offsets[1:])
    return out, offsets


def _every(scan_to: int) -> str:
    """The first ``scan_to`` code points as one string, lone surrogates included."""
    # decoded from UTF-32, not joined from chr() per code point (tens of times slower);
    # surrogates, which only the slow error handler decodes, are built apart
    lo, hi = min(scan_to, 0xD800), min(scan_to, 0xE000)
    return (
        np.arange(lo, dtype=np.uint32).tobytes().decode("utf-32-le")
        + "".join(map(chr, range(lo, hi)))
        + np.arange(hi, max(scan_to, hi), dtype=np.uint32).tobytes().decode("utf-32-le")
    )


def _char_class_table(pattern: re.Pattern[str], scan_to: int) -> npt.NDArray[np.bool_]:
    """``table[code point]`` (any code point) for the characters ``pattern`` matches among the
    first ``scan_to`` code points; the rest are False."""
    table = np.zeros(0x110000, dtype=np.bool_)
    for m in pattern.finditer(_every(scan_to)):
        table[m.start() : m.end()] = True
    return table


_NON_STARTER_SCAN = 0x20000
"""Non-starters are searched for in planes 0 and 1: a test checks that no other plane has one."""


@functools.cache
def _non_starter_table() -> npt.NDArray[np.bool_]:
    """``table[code point]``: a non-starter, as NFC's reordering sees it: a canonical combining
    class other than 0, or a canonical decomposition that begins with one (U+0F73, …)."""
    every = _every(_NON_STARTER_SCAN)
    ccc = np.frombuffer(bytes(map(unicodedata.combining, every)), dtype=np.uint8)
    table = np.zeros(0x110000, dtype=np.bool_)
    table[: ccc.size] = ccc != 0
    table[_leading_non_starters(every, table)] = True
    return table


def _leading_non_starters(every: str, non_starter: npt.NDArray[np.bool_]) -> list[int]:
    """Starters of ``every`` whose canonical decomposition begins with a non-starter.

    Found by halving the chunks that NFD's quick check (one pass in C, which stops at the
    first decomposable character) refuses, down to single characters. Hangul syllables are
    left out: they decompose into jamo, which are starters, and are a tenth of the BMP."""
    cp = utf32(every)
    hangul = (cp >= 0xAC00) & (cp <= 0xD7A3)
    starters = np.flatnonzero(~non_starter[: cp.size] & ~hangul)
    text = cp[starters].tobytes().decode("utf-32-le", "surrogatepass")
    found: list[int] = []
    chunks = [(0, len(text))]
    while chunks:
        lo, hi = chunks.pop()
        if unicodedata.is_normalized("NFD", text[lo:hi]):
            continue
        if hi - lo > 16:
            mid = (lo + hi) // 2
            chunks += [(lo, mid), (mid, hi)]
            continue
        for i in range(lo, hi):
            if unicodedata.combining(unicodedata.normalize("NFD", text[i])[0]):
                found.append(int(starters[i]))
    return found


@functools.cache
def _maybe_run_re() -> re.Pattern[str]:
    """Finds runs of more than :data:`MAX_NON_STARTERS` characters that are BMP non-starters
    or astral. The astral non-starters are left to the table: as ranges of a regex class they
    are tried one by one for every character scanned, as one range they cost one test."""
    table = _non_starter_table()[:0x10000].view(np.int8)
    edges = np.flatnonzero(np.diff(table, prepend=0, append=0))
    ranges = "".join(
        f"\\u{a:04x}-\\u{b - 1:04x}" for a, b in zip(edges[::2], edges[1::2], strict=True)
    )
    one = f"[{ranges}\\U00010000-\\U0010ffff]"
    return re.compile(f"{one}{one}{{{MAX_NON_STARTERS},}}")  # a class first: a fast scan


def prepare() -> None:
    """Build the normaliser's tables now (a scan of Unicode, once per process), not on a
    request."""
    _space_table()
    _maybe_run_re()


@functools.cache
def _space_table() -> npt.NDArray[np.bool_]:
    """``table[code point]``: in ``_SPACE_RE``'s class. Scanned over the BMP only (a
    sixteenth of the work): Unicode has no whitespace or control character above it, which a
    test checks against the regex over all of Unicode."""
    return _char_class_table(_SPACE_RE, 0x10000)


def word_char_table() -> npt.NDArray[np.bool_]:
    """``table[code point]``: whether the token regex's ``\\w`` matches it (all of Unicode)."""
    return _char_class_table(_TOKEN_RE, 0x110000)


def char_ngram_hashes_one(norm: str, lo: int, hi: int) -> U64:
    """Hashes of one text's char n-grams; same values as :func:`char_ngram_hashes`."""
    cp = _codepoints(f" {norm} ")
    total = cp.size
    hi = min(hi, total)
    if hi < lo:
        return np.zeros(0, dtype=np.uint64)
    sizes = [total - n + 1 for n in range(1, hi + 1)]
    out = np.empty(sum(sizes[lo - 1 :]), dtype=np.uint64)
    prev = np.full(total, _SEED, dtype=np.uint64)
    off = 0
    for n in range(1, hi + 1):
        m = sizes[n - 1]
        if n >= lo:
            dst = out[off : off + m]
            off += m
        else:
            dst = np.empty(m, dtype=np.uint64)
        np.multiply(prev[:m], _P, out=dst)
        np.add(dst, cp[n - 1 :], out=dst)
        prev = dst
    return out


class HashTable:
    """uint64 key → index in ``keys``: a power of two of buckets of ``WIDTH`` slots (0.75-1.5
    keys per bucket on average), linear probing over buckets when one is full (rare).

    Lookups are a handful of flat numpy calls (no per-axis reductions): gather the home bucket
    row of every query, compare, ``flatnonzero``; only queries whose home bucket overflowed
    take another round. An empty slot holds key 0 and value -1, so a query equal to 0 that
    meets an empty slot reads -1 (absent); the key 0 itself is therefore not storable.
    """

    WIDTH = 8
    MEAN_LOAD = 1.5

    def __init__(self, keys: U64) -> None:
        keys = np.asarray(keys, dtype=np.uint64)
        if keys.size and not bool(np.all(keys)):
            raise ValueError("key 0 is reserved for empty slots")
        w = self.WIDTH
        bits = max(1, int(np.ceil(np.log2(max(len(keys) / self.MEAN_LOAD, 2)))))
        self.n_buckets = 1 << bits
        self._shift = np.uint64(64 - bits)
        self.keys = np.zeros((self.n_buckets, w), dtype=np.uint64)
        self.vals = np.full((self.n_buckets, w), -1, dtype=np.int32)
        self.overflow = np.zeros(self.n_buckets, dtype=bool)
        fill = np.zeros(self.n_buckets, dtype=np.int64)
        home = self._home(keys)
        bucket = home.copy()
        pending = np.arange(len(keys), dtype=np.int64)
        rounds = 0
        while pending.size:
            rounds += 1
            b = bucket[pending]
            order = np.argsort(b, kind="stable")
            pb, pk = b[order], pending[order]
            rank = np.arange(pb.size) - np.searchsorted(pb, pb, side="left")
            slot = fill[pb] + rank
            ok = slot < w
            self.keys[pb[ok], slot[ok]] = keys[pk[ok]]
            self.vals[pb[ok], slot[ok]] = pk[ok]
            fill += np.bincount(pb[ok], minlength=self.n_buckets)
            pending = pk[~ok]
            self.overflow[home[pending]] = True
            bucket[pending] = (bucket[pending] + 1) & (self.n_buckets - 1)
        self.rounds = max(rounds, 1)
        self._vals_flat = self.vals.ravel()

    def _home(self, h: U64) -> I64:
        out: I64 = (h * _FIB >> self._shift).astype(np.intp)
        return out

    def find(self, q: U64) -> I64:
        """Indices of the queries that are keys (misses dropped, order kept).

        The single-text hot path: every numpy call costs ~1 µs at these sizes, so it is
        written to make few of them (gather the home rows, compare, boolean-mask gather)."""
        b = self._home(q)
        if self.rounds > 1 and self.overflow[b].any():  # rare: take the general path
            res = self.lookup(q)
            return res[res >= 0]
        out: I64 = self.vals[b][self.keys[b] == q[:, None]]
        return out[out >= 0]  # a query equal to 0 meets empty slots (value -1)

    def lookup(self, q: U64) -> I64:
        """Index of each query in ``keys``, or -1."""
        w = self.WIDTH
        vals = self._vals_flat
        b = self._home(q)
        res = np.full(q.size, -1, dtype=np.int64)
        hit = np.flatnonzero(self.keys[b] == q[:, None])
        row = hit // w
        res[row] = vals[b[row] * w + hit % w]
        if self.rounds == 1:
            return res
        more = self.overflow[b]
        if not more.any():
            return res
        active = np.flatnonzero(more & (res < 0))
        b = b[active]
        for _ in range(self.rounds - 1):
            if not active.size:
                break
            b = (b + 1) & (self.n_buckets - 1)
            hit = np.flatnonzero(self.keys[b] == q[active][:, None])
            row = hit // w
            res[active[row]] = vals[b[row] * w + hit % w]
            left = res[active] < 0
            active, b = active[left], b[left]
        return res


def _check_count(joined: str, count: int) -> None:
    if (joined.count("\n") + 1 if joined or count else 0) != count:
        raise ValueError(f"{count} word keys expected, the text holds another number")


class WordKeys(Sequence[str]):
    """The word n-gram vocabulary, kept as one newline-joined string.

    The kernels read it as one code-point array. Only the numpy path splits it into Python
    strings, on first use: splitting 300k keys holds the GIL for ~40 ms, which would stall
    every request served while a swap loads a model beside them."""

    def __init__(self, joined: str, count: int) -> None:
        _check_count(joined, count)
        self.joined = joined
        self._count = count
        self._path: Path | None = None

    @classmethod
    def from_file(cls, path: Path, count: int) -> WordKeys:
        """Keys read from ``path`` on first use: a mapped model served by the kernels never
        reads them (reading 300k keys holds the GIL for ~10 ms, a stall during a swap)."""
        keys = cls.__new__(cls)
        keys._count = count
        keys._path = path
        return keys

    @functools.cached_property
    def joined(self) -> str:  # only reached for keys made by from_file
        assert self._path is not None
        text = self._path.read_text(encoding="utf-8")
        _check_count(text, self._count)
        return text

    @classmethod
    def of(cls, keys: Iterable[str]) -> WordKeys:
        if isinstance(keys, WordKeys):
            return keys
        keys = list(keys)
        if any("\n" in k for k in keys):
            raise ValueError("a word key contains a newline")
        return cls("\n".join(keys), len(keys))

    @functools.cached_property
    def _keys(self) -> list[str]:
        return self.joined.split("\n") if self._count else []

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> list[str]: ...

    def __getitem__(self, index: int | slice) -> str | list[str]:
        return self._keys[index]

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, WordKeys):
            return self.joined == other.joined and self._count == other._count
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]

    def code_points(self) -> tuple[npt.NDArray[np.uint32], I64]:
        """All keys' code points, concatenated, and each key's offset (``len + 1`` entries),
        without building a string per key."""
        cp = utf32(self.joined)
        offsets = np.zeros(self._count + 1, dtype=np.int64)
        if not self._count:
            return cp[:0], offsets
        newline = cp == ord("\n")
        ends = np.flatnonzero(newline)
        np.cumsum(np.diff(ends, prepend=-1, append=cp.size) - 1, out=offsets[1:])
        return cp[~newline], offsets


class Extractor:
    """Maps texts to (row, column) pairs of known features.

    Columns ``[0, len(char_hashes))`` are char n-grams (sorted hash order), then word n-grams.
    """

    def __init__(
        self,
        char_hashes: U64,
        char_range: tuple[int, int],
        word_keys: Sequence[str],
        word_n: int,
        *,
        check: bool = True,
    ) -> None:
        hs = np.asarray(char_hashes, dtype=np.uint64)
        if check and hs.size > 1 and not bool(np.all(hs[1:] > hs[:-1])):
            raise ValueError("char hashes must be sorted and unique")
        self.char_hashes = hs
        self.char_range = (int(char_range[0]), int(char_range[1]))
        self.word_keys = WordKeys.of(word_keys)
        self.word_n = int(word_n)
        self.n_features = len(hs) + len(self.word_keys)
        self._numpy_table: HashTable | None = None

    @functools.cached_property
    def word_vocab(self) -> dict[str, int]:
        """Word n-gram → column, for the numpy path. Built on first use: the kernels hash the
        keys into their own table, so serving never pays for this 300k-entry dict (~0.15 s and
        tens of MiB per loaded model)."""
        base = len(self.char_hashes)
        vocab = {k: base + i for i, k in enumerate(self.word_keys)}
        if len(vocab) != len(self.word_keys):
            raise ValueError("word keys are not unique")
        return vocab

    @property
    def _table(self) -> HashTable | None:
        """The numpy path's table, built on first use (serving with kernels never needs it)."""
        if self._numpy_table is None and self.char_hashes.size:
            self._numpy_table = HashTable(self.char_hashes)
        return self._numpy_table

    def cols_one(self, text: str) -> I64:
        """Columns of the known feature occurrences of one text (repeats kept): the low-latency
        specialisation of :meth:`pairs` for a single text."""
        norm = normalize(text)
        parts: list[I64] = []
        if self._table is not None:
            hashes = char_ngram_hashes_one(norm, self.char_range[0], self.char_range[1])
            if hashes.size:
                parts.append(self._table.find(hashes))
        if self.word_n > 0 and self.word_vocab:
            get = self.word_vocab.get
            wc = [j for g in word_ngrams(norm, self.word_n) if (j := get(g)) is not None]
            if wc:
                parts.append(np.array(wc, dtype=np.int64))
        if len(parts) == 1:
            return parts[0]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def pairs(self, texts: Sequence[str]) -> tuple[I64, I64]:
        """``(row, column)`` of every known feature occurrence (repeats kept, any order)."""
        norms = [normalize(t) for t in texts]
        lo, hi = self.char_range
        if len(norms) == 1:
            hashes = char_ngram_hashes_one(norms[0], lo, hi)
            rows = np.zeros(hashes.size, dtype=np.int64)
        else:
            rows, hashes = char_ngram_hashes(norms, lo, hi)
        if self._table is not None and hashes.size:
            idx = self._table.lookup(hashes)
            found = idx >= 0
            c_rows, c_cols = rows[found], idx[found]
        else:
            c_rows = c_cols = np.zeros(0, dtype=np.int64)
        if self.word_n <= 0 or not self.word_vocab:
            return c_rows, c_cols
        get = self.word_vocab.get
        wn = self.word_n
        per_text = [[get(g, -1) for g in word_ngrams(norm, wn)] for norm in norms]
        w_cols = np.fromiter(
            (j for js in per_text for j in js), dtype=np.int64, count=sum(map(len, per_text))
        )
        if not w_cols.size:
            return c_rows, c_cols
        w_rows = np.repeat(np.arange(len(norms), dtype=np.int64), [len(js) for js in per_text])
        keep = w_cols >= 0
        return (
            np.concatenate([c_rows, w_rows[keep]]),
            np.concatenate([c_cols, w_cols[keep]]),
        )
