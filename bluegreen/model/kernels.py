"""Compiled inference kernels (numba): hashing, table probing and the folded dot product in
one pass per text, with no per-n-gram numpy call.

The numpy path in :mod:`inference` computes the same numbers with ~30 array calls per text;
each costs about a microsecond, which is what kept one short text near 300 µs. Here the whole
text is one loop: hash each char n-gram incrementally and probe the bucketed hash table; find
the words (runs of ``\\w`` code points, tabulated) and probe a second table with the hashes of
words and word pairs, so no Python string is built per word; then sort the columns, count
repeats, and accumulate ``tf · idf · W`` and the l2 norms member by member.

Shipped inside every logged model (like :mod:`inference`); imported lazily and optional: when
numba is missing or JIT is disabled, :mod:`inference` falls back to its numpy path, which is also
the reference the tests compare these kernels with. ``nogil`` lets batches scored in a worker
thread run beside the event loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import numba
import numpy as np

F = TypeVar("F", bound=Callable[..., Any])

_P = np.uint64(0x9E3779B97F4A7C15)
_SEED = np.uint64(0x243F6A8885A308D3)
_FIB = np.uint64(0xD6E8FEB86659FD93)
_ONE = np.uint64(1)
_WORD_SEED = np.uint64(0x13198A2E03707344)
_SPACE = np.uint64(ord(" ") + 1)


def _jit(fn: F) -> F:
    return cast(F, numba.njit(cache=True, nogil=True, fastmath=False)(fn))


def enabled() -> bool:
    """False when numba runs in pure-Python mode (``NUMBA_DISABLE_JIT``): far slower than numpy."""
    return not vars(numba.config).get("DISABLE_JIT", False)


@_jit
def fill_line_table(keys: Any, table: Any, shift: np.uint64) -> np.int64:
    """Insert ``keys`` (non-zero) into an all-zero ``(2**bits, 8)`` table; returns how many
    keys were already there (duplicates are skipped, and the caller rejects them).

    One 64-byte cache line per bucket: ``[4 keys, their 4 values + 1]`` (0 = empty). A key goes
    to the first bucket with room from its home bucket on (linear probing over buckets), so a
    lookup can stop at the first bucket that is not full: an absent n-gram costs one miss.
    An equal key would lie on that same path, so checking it here costs nothing extra."""
    mask = np.int64(table.shape[0] - 1)
    dups = np.int64(0)
    for i in range(keys.shape[0]):
        h = keys[i]
        b = np.int64((h * _FIB) >> shift)
        seen = False
        while True:
            for s in range(4):
                if table[b, s] == h:
                    seen = True
            if seen or table[b, 3] == 0:
                break
            b = (b + np.int64(1)) & mask
        if seen:
            dups += 1
            continue
        s = 0
        while table[b, s] != 0:
            s += 1
        table[b, s] = h
        table[b, 4 + s] = np.uint64(i + 1)
    return dups


@_jit
def _probe(h: np.uint64, table: Any, shift: np.uint64) -> np.int64:
    """Column of hash ``h`` in a table filled by :func:`fill_line_table`, or -1."""
    # explicit int64: numba widens mixed uint64/int64 arithmetic to float64
    mask = np.int64(table.shape[0] - 1)
    b = np.int64((h * _FIB) >> shift)
    for _ in range(table.shape[0]):
        for s in range(4):
            if table[b, s] == h:
                return np.int64(table[b, 4 + s]) - np.int64(1)  # h == 0 meets an empty slot
        if table[b, 3] == 0:  # not full: nothing overflowed past this bucket
            return np.int64(-1)
        b = (b + np.int64(1)) & mask
    return np.int64(-1)


@_jit
def hash_strings(cp: Any, offsets: Any) -> Any:
    """Word hash of each string ``cp[offsets[i]:offsets[i+1]]`` (what the kernel computes for
    a word n-gram with the same code points: a bigram key is ``"a b"``)."""
    out = np.empty(offsets.shape[0] - 1, dtype=np.uint64)
    for i in range(out.shape[0]):
        h = _WORD_SEED
        for j in range(offsets[i], offsets[i + 1]):
            h = h * _P + (np.uint64(cp[j]) + _ONE)
        out[i] = h
    return out


# numba kernels take flat positional arrays: no objects to unpack per call, so ruff's limit on
# positional arguments does not apply
@_jit
def ensemble_logits(  # noqa: PLR0917
    cp: Any,
    offsets: Any,
    lo: int,
    hi: int,
    table: Any,
    shift: np.uint64,
    is_word: Any,
    word_n: int,
    word_base: int,
    wtable: Any,
    wshift: np.uint64,
    packed: Any,
    tf_mode: Any,
    l2: Any,
    bias: Any,
    out: Any,
) -> None:
    """Logits of ``len(offsets) - 1`` texts into ``out`` (n, K).

    ``cp``: uint32 code points of the space-padded normalised texts, concatenated (text ``i``
    is ``cp[offsets[i]:offsets[i+1]]``). Words are the runs of ``is_word`` code points (the
    regex ``\\w``, tabulated), looked up by :func:`hash_strings` hash in the word table, whose
    values are offset by ``word_base``. Both tables are :func:`fill_line_table`'s;
    ``packed[col]`` is ``[idf_0..idf_{M-1}, W_0[0..K), ..., W_{M-1}[0..K)]``; ``tf_mode[m]``
    is 0 (count), 1 (presence) or 2 (``1 + log count``).
    """
    n_texts = offsets.shape[0] - 1
    n_members = tf_mode.shape[0]
    n_classes = bias.shape[0]
    has_table = table.shape[0] > 0
    z = np.empty((n_members, n_classes), dtype=np.float64)
    sq = np.empty(n_members, dtype=np.float64)
    has_words = word_n > 0 and wtable.shape[0] > 0
    for t in range(n_texts):
        start = offsets[t]
        length = offsets[t + 1] - start
        n_char = 0
        for n in range(lo, min(hi, length) + 1):
            n_char += length - n + 1
        # at most length / 2 words (each followed by a non-word character), as many bigrams
        cols = np.empty(n_char + length + 1, dtype=np.int64)
        k = 0
        if has_table:
            for i in range(length):
                h = _SEED
                for n in range(1, min(hi, length - i) + 1):
                    h = h * _P + (np.uint64(cp[start + i + n - 1]) + _ONE)
                    if n >= lo:
                        c = _probe(h, table, shift)
                        if c >= 0:
                            cols[k] = c
                            k += 1
        if has_words:
            i = 0
            has_prev = False
            prev_h = _WORD_SEED
            while i < length:
                if not is_word[cp[start + i]]:
                    i += 1
                    continue
                j = i
                h = _WORD_SEED
                while j < length and is_word[cp[start + j]]:
                    h = h * _P + (np.uint64(cp[start + j]) + _ONE)
                    j += 1
                c = _probe(h, wtable, wshift)
                if c >= 0:
                    cols[k] = word_base + c
                    k += 1
                if word_n >= 2 and has_prev:
                    hb = prev_h * _P + _SPACE  # continues the previous word's hash: "a b"
                    for q in range(i, j):
                        hb = hb * _P + (np.uint64(cp[start + q]) + _ONE)
                    c = _probe(hb, wtable, wshift)
                    if c >= 0:
                        cols[k] = word_base + c
                        k += 1
                has_prev = True
                prev_h = h
                i = j
        z[:, :] = 0.0
        sq[:] = 0.0
        if k:
            found = np.sort(cols[:k])
            i = 0
            while i < k:
                col = found[i]
                j = i + 1
                while j < k and found[j] == col:
                    j += 1
                count = float(j - i)
                sub = 1.0 + np.log(count)
                for m in range(n_members):
                    mode = tf_mode[m]
                    f = np.float64(packed[col, m])
                    if mode == 0:
                        f *= count
                    elif mode == 2:
                        f *= sub
                    sq[m] += f * f
                    base = n_members + m * n_classes
                    for c2 in range(n_classes):
                        z[m, c2] += f * np.float64(packed[col, base + c2])
                i = j
        for c2 in range(n_classes):
            acc = bias[c2]
            for m in range(n_members):
                norm = np.sqrt(sq[m]) if l2[m] else 1.0
                if norm == 0.0:
                    norm = 1.0
                acc += z[m, c2] / norm
            out[t, c2] = acc


@_jit
def cnn_pooled(  # noqa: PLR0917
    cp: Any,
    offsets: Any,
    rows: Any,
    char_ids: Any,
    proj: Any,
    conv_bias: Any,
    out: Any,
) -> None:
    """The character CNN's pooled features of texts ``rows`` into ``out`` (n, 2F): for every
    window ``i`` that touches a character, ``h = relu(conv_bias + Σ_j proj[id[i + j - K + 1],
    j])`` (ids outside the text are the padding id 0), then the max and the mean of ``h``
    over the windows (see :mod:`charcnn`). float32 throughout, as the numpy path."""
    kmax = proj.shape[1]
    n_f = proj.shape[2]
    n_table = char_ids.shape[0]
    h = np.empty(n_f, dtype=np.float32)
    for r in range(rows.shape[0]):
        t = rows[r]
        start = offsets[t]
        length = offsets[t + 1] - start
        n_win = length + kmax - 1
        for f in range(n_f):
            out[r, f] = np.float32(0.0)
            out[r, n_f + f] = np.float32(0.0)
        for i in range(n_win):
            for f in range(n_f):
                h[f] = conv_bias[f]
            for j in range(kmax):
                p = i + j - (kmax - 1)
                v = 0
                if 0 <= p < length:
                    c = cp[start + p]
                    v = char_ids[c] if c < n_table else 1
                for f in range(n_f):
                    h[f] += proj[v, j, f]
            for f in range(n_f):
                x = h[f] if h[f] > np.float32(0.0) else np.float32(0.0)
                out[r, f] = max(out[r, f], x)
                out[r, n_f + f] += x
        scale = np.float32(1.0) / np.float32(n_win)
        for f in range(n_f):
            out[r, n_f + f] *= scale
