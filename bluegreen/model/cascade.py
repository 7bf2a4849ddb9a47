"""The accurate tier and the cascade that routes to it, at serving time.

Shipped inside every logged model (like :mod:`inference`): numpy and its siblings only.

The fast path (the folded linear ensemble) scores every text. A text whose fast probabilities
are confident (top-two margin at least ``threshold``) keeps the fast answer; the others, the
lowest-margin share of traffic (``share`` on the validation split, where ``threshold`` was
chosen), are scored again by the accurate tier: a second linear stacker over the fast logits
and the character CNN's hidden layer (its class and ordinal-rating heads folded in),

    ``accurate = fast_logits @ fast_w + cnn_hidden @ hidden_w + bias``.

``threshold = 0`` turns the cascade off (every text keeps the fast answer); ``threshold > 1``
sends every text to the accurate tier.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from .charcnn import ARRAY_NAMES as CNN_ARRAYS
from .charcnn import CharCNN

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
PREFIX = "cnn_"
TIER_ARRAYS = ("fast_w", "hidden_w", "bias")


def margins(logits: F64) -> F64:
    """Top-one minus top-two softmax probability of each row."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    p = e / e.sum(axis=1, keepdims=True)
    top2 = np.partition(p, -2, axis=1)
    out: F64 = top2[:, -1] - top2[:, -2]
    return out


_NONE = np.zeros(0, dtype=np.int64)
_FIRST = np.zeros(1, dtype=np.int64)
_NONE.flags.writeable = False
_FIRST.flags.writeable = False


def _margin1(z: list[float]) -> float:
    """:func:`margins` of one row, in plain Python."""
    top = max(z)
    e = sorted(math.exp(v - top) for v in z)
    return (e[-1] - e[-2]) / math.fsum(e)


class AccurateTier:
    """Immutable after construction; safe to share between threads."""

    def __init__(
        self,
        cnn: CharCNN,
        *,
        fast_w: Any,
        hidden_w: Any,
        bias: Any,
        threshold: float,
        meta: dict[str, Any] | None = None,
    ) -> None:
        self.cnn = cnn
        self.fast_w = np.asarray(fast_w, dtype=np.float64)
        self.hidden_w = np.ascontiguousarray(hidden_w, dtype=np.float32)
        self.bias = np.asarray(bias, dtype=np.float64)
        if self.fast_w.shape != (3, 3) or self.bias.shape != (3,):
            raise ValueError("fast_w must be (3, 3) and bias (3,)")
        if self.hidden_w.shape != (cnn.n_hidden, 3):
            raise ValueError(f"hidden_w shape {self.hidden_w.shape} != ({cnn.n_hidden}, 3)")
        self.threshold = float(threshold)
        self.meta = dict(meta or {})

    def arrays(self) -> dict[str, Any]:
        """Every array, flat, under the names :meth:`from_arrays` reads."""
        out = {PREFIX + k: v for k, v in self.cnn.arrays().items()}
        out.update(fast_w=self.fast_w, hidden_w=self.hidden_w, bias=self.bias)
        return out

    def describe(self) -> dict[str, Any]:
        return {"threshold": self.threshold, **self.meta}

    @classmethod
    def from_arrays(cls, arrays: Any, described: dict[str, Any]) -> AccurateTier:
        cnn = CharCNN(**{k: arrays[PREFIX + k] for k in CNN_ARRAYS})
        meta = {k: v for k, v in described.items() if k != "threshold"}
        return cls(
            cnn, fast_w=arrays["fast_w"], hidden_w=arrays["hidden_w"], bias=arrays["bias"],
            threshold=float(described["threshold"]), meta=meta,
        )  # fmt: skip

    def logits(self, fast: F64, cp: npt.NDArray[np.uint32], offsets: I64, rows: I64) -> F64:
        """Accurate logits of texts ``rows``, given their fast logits ``fast`` (len(rows), 3)."""
        hidden = self.cnn.hidden(cp, offsets, rows)
        out: F64 = fast @ self.fast_w + (hidden @ self.hidden_w).astype(np.float64) + self.bias
        return out

    def route(self, fast: F64) -> I64:
        """Rows whose fast answer is not confident enough: the accurate tier's share."""
        if self.threshold <= 0.0:
            return np.zeros(0, dtype=np.int64)
        if fast.shape[0] == 1:  # the latency path: no numpy call overhead for three numbers
            return _NONE if _margin1(fast[0].tolist()) >= self.threshold else _FIRST
        return np.flatnonzero(margins(fast) < self.threshold).astype(np.int64)

    def apply(self, fast: F64, cp: npt.NDArray[np.uint32], offsets: I64) -> F64:
        """``fast`` with the routed rows replaced by the accurate tier's logits (in place)."""
        rows = self.route(fast)
        if rows.size:
            fast[rows] = self.logits(fast[rows], cp, offsets, rows)
        return fast
