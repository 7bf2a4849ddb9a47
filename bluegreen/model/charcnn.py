"""The character (syllable) CNN member at serving time: plain arrays and a numpy/numba forward.

Shipped inside every logged model (like :mod:`inference`): imports only numpy and its sibling
``textfeat``; never torch. Trained by :mod:`charcnn_train`, which documents the network.

Arrays (``V`` character ids, ``K`` the widest filter, ``F`` filters, ``H`` hidden units):

* ``char_ids`` (65536,) int32: code point → character id (0 is the padding id, 1 the id of
  every character outside the vocabulary, and of every code point past the table);
* ``proj`` (V, K, F) float32: the embedding folded into each tap of each filter, so a window's
  pre-activation is ``conv_bias + Σ_j proj[id[i + j], j]``;
* ``hidden_w`` (2F, H), ``hidden_b`` (H,): the hidden layer over ``[max pool, mean pool]``;
* ``head_w`` (H, 4), ``head_b`` (4,): three class logits and the ordinal rating score;
* ``thresholds`` (9,): ``P(rating > k) = sigmoid(score - thresholds[k - 1])``.

The input is :func:`textfeat.code_points`' (the normalised, space-padded text), which the
linear members read too: a cascade computes it once for both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from .textfeat import code_points

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
TABLE_SIZE = 1 << 16
PAD, UNK = 0, 1
ARRAY_NAMES = (
    "char_ids", "proj", "conv_bias", "hidden_w", "hidden_b", "head_w", "head_b", "thresholds",
)  # fmt: skip


def char_vocabulary(
    texts: Sequence[str], min_count: int, max_size: int
) -> tuple[npt.NDArray[np.int32], int]:
    """The code point → id table of the characters seen at least ``min_count`` times (the
    ``max_size - 2`` most frequent), and the number of ids."""
    cp, _ = code_points(list(texts))
    counts = np.bincount(np.minimum(cp, TABLE_SIZE - 1), minlength=TABLE_SIZE)
    counts[TABLE_SIZE - 1] = 0  # the clamp bucket is not a character
    order = np.argsort(-counts, kind="stable")
    keep = order[: max_size - 2]
    keep = keep[counts[keep] >= min_count]
    table = np.full(TABLE_SIZE, UNK, dtype=np.int32)
    table[np.sort(keep)] = np.arange(2, 2 + keep.size, dtype=np.int32)
    return table, int(keep.size + 2)


class CharCNN:
    """Immutable after construction; safe to share between threads."""

    def __init__(self, **arrays: Any) -> None:
        missing = set(ARRAY_NAMES) - set(arrays)
        if missing:
            raise ValueError(f"CharCNN arrays missing: {sorted(missing)}")
        self.char_ids = np.ascontiguousarray(arrays["char_ids"], dtype=np.int32)
        self.proj = np.ascontiguousarray(arrays["proj"], dtype=np.float32)
        self.conv_bias = np.ascontiguousarray(arrays["conv_bias"], dtype=np.float32)
        self.hidden_w = np.ascontiguousarray(arrays["hidden_w"], dtype=np.float32)
        self.hidden_b = np.ascontiguousarray(arrays["hidden_b"], dtype=np.float32)
        self.head_w = np.ascontiguousarray(arrays["head_w"], dtype=np.float32)
        self.head_b = np.ascontiguousarray(arrays["head_b"], dtype=np.float32)
        self.thresholds = np.ascontiguousarray(arrays["thresholds"], dtype=np.float32)
        n_vocab, self.kmax, n_f = self.proj.shape
        if self.char_ids.shape != (TABLE_SIZE,):
            raise ValueError(f"char_ids shape {self.char_ids.shape} != ({TABLE_SIZE},)")
        if int(self.char_ids.min()) < 0 or int(self.char_ids.max()) >= n_vocab:
            raise ValueError("char_ids name ids outside proj")
        if self.conv_bias.shape != (n_f,) or self.hidden_w.shape[0] != 2 * n_f:
            raise ValueError("conv_bias / hidden_w do not match proj")
        n_h = self.hidden_w.shape[1]
        if self.hidden_b.shape != (n_h,) or self.head_w.shape != (n_h, 4):
            raise ValueError("hidden_b / head_w do not match hidden_w")
        if self.head_b.shape != (4,) or self.thresholds.shape != (9,):
            raise ValueError("head_b must be (4,) and thresholds (9,)")
        self._kernels: Any = None

    @property
    def n_hidden(self) -> int:
        return int(self.hidden_w.shape[1])

    def arrays(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in ARRAY_NAMES}

    def use_kernels(self, kernels: Any) -> None:
        """Score with the compiled kernel module (or the numpy path when None)."""
        self._kernels = kernels

    # -- forward ---------------------------------------------------------------------------

    def pooled(self, cp: npt.NDArray[np.uint32], offsets: I64, rows: I64 | None = None) -> F32:
        """``[max, mean]`` of the ReLU'd windows of texts ``rows`` (default: all), (n, 2F)."""
        if rows is None:
            rows = np.arange(offsets.size - 1, dtype=np.int64)
        out = np.empty((rows.size, 2 * self.proj.shape[2]), dtype=np.float32)
        if self._kernels is not None:
            self._kernels.cnn_pooled(cp, offsets, rows, self.char_ids, self.proj,
                                     self.conv_bias, out)  # fmt: skip
            return out
        k = self.kmax
        n_f = self.proj.shape[2]
        taps = np.arange(k)
        for r, t in enumerate(rows.tolist()):
            c = cp[offsets[t] : offsets[t + 1]]
            ids = np.where(c < TABLE_SIZE, self.char_ids[np.minimum(c, TABLE_SIZE - 1)], UNK)
            padded = np.concatenate([np.zeros(k - 1, np.int32), ids, np.zeros(k - 1, np.int32)])
            n_win = c.size + k - 1
            win = np.arange(n_win)[:, None] + taps[None, :]  # (n_win, k)
            h = self.proj[padded[win], taps[None, :]].sum(axis=1, dtype=np.float32)
            h = np.maximum(h + self.conv_bias, np.float32(0.0))
            out[r, :n_f] = h.max(axis=0)
            out[r, n_f:] = h.sum(axis=0, dtype=np.float32) / np.float32(n_win)
        return out

    def hidden(self, cp: npt.NDArray[np.uint32], offsets: I64, rows: I64 | None = None) -> F32:
        h: F32 = np.maximum(self.pooled(cp, offsets, rows) @ self.hidden_w + self.hidden_b, 0)
        return h

    def outputs(self, cp: npt.NDArray[np.uint32], offsets: I64, rows: I64 | None = None) -> F32:
        """(n, 4): the three class logits and the ordinal score."""
        out: F32 = self.hidden(cp, offsets, rows) @ self.head_w + self.head_b
        return out

    def outputs_of(self, texts: Sequence[str]) -> F32:
        cp, offsets = code_points(list(texts))
        return self.outputs(cp, offsets)

    def class_logits(self, texts: Sequence[str]) -> F32:
        return self.outputs_of(texts)[:, :3]
