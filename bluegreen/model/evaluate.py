"""Metrics: three-class accuracy / macro-F1 / per-class F1 and the NSMC-comparable binary
accuracy (negative vs positive rows, equal numbers of each).

Every function takes *logits* (or log-probabilities: only differences within a row matter).

The binary decision is ``logit(pos) - logit(neg) > offset``. The models are trained on the
skewed rating distribution (positive reviews outnumber negative ones about 3:1), while the
NSMC protocol scores a 50/50 sample; NSMC's published models were trained on 50/50 data. The
offset is that prior correction, tuned on the validation split (never on test) and shipped in
the model's metadata; ``binary_acc_uncorrected`` (offset 0) is reported beside it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

from .data import binary_balanced_index
from .labels import LABELS

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

ASCII_LABELS = ("neg", "neutral", "pos")
"""Metric-key / plot-friendly names for LABELS (same order)."""


def three_class_metrics(scores: F64, y: I64) -> dict[str, float]:
    """``scores``: probabilities or logits, shape (n, 3)."""
    pred = scores.argmax(axis=1)
    per_class = f1_score(y, pred, labels=[0, 1, 2], average=None, zero_division=0)
    out = {
        "acc3": float(accuracy_score(y, pred)),
        "macro_f1": float(np.mean(per_class)),
    }
    for name, f in zip(ASCII_LABELS, per_class, strict=True):
        out[f"f1_{name}"] = float(f)
    return out


def binary_accuracy(logits: F64, y: I64, seed: int, offset: float = 0.0) -> float:
    idx = binary_balanced_index(y, seed)
    if len(idx) == 0:
        return float("nan")
    s, t = logits[idx], y[idx]
    pred_pos = s[:, 2] - s[:, 0] > offset
    return float(np.mean(pred_pos == (t == 2)))


def tune_binary_offset(logits: F64, y: I64, seed: int, span: float = 3.0) -> float:
    """The offset that maximises balanced binary accuracy on ``logits`` (a validation split):
    a grid of 0.05 over ±span, ties broken toward 0 (the smallest correction)."""
    grid = np.round(np.arange(-span, span + 1e-9, 0.05), 2)
    grid = grid[np.argsort(np.abs(grid), kind="stable")]
    accs = [binary_accuracy(logits, y, seed, float(o)) for o in grid]
    return float(grid[int(np.argmax(accs))])


def all_metrics(logits: F64, y: I64, seed: int, binary_offset: float = 0.0) -> dict[str, float]:
    out = three_class_metrics(logits, y)
    out["binary_acc"] = binary_accuracy(logits, y, seed, binary_offset)
    out["binary_acc_uncorrected"] = binary_accuracy(logits, y, seed)
    return out


def log_proba(proba: F64) -> F64:
    """Probabilities → log-probabilities (valid logits for every metric here)."""
    out: F64 = np.log(np.clip(proba, 1e-300, None))
    return out


def confusion(proba: F64, y: I64) -> npt.NDArray[np.int64]:
    cm: npt.NDArray[np.int64] = confusion_matrix(y, proba.argmax(axis=1), labels=[0, 1, 2])
    return cm


def plot_confusion(cm: npt.NDArray[np.int64], path: Path, title: str) -> Path:
    """PNG of a row-normalised confusion matrix (matplotlib only here, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(4.6, 4.0), dpi=110)
    ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0)
    names = [f"{a}\n({b})" for a, b in zip(ASCII_LABELS, ("1-4", "5-8", "9-10"), strict=True)]
    ax.set_xticks(range(len(LABELS)), names)
    ax.set_yticks(range(len(LABELS)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true (rating)")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(
                j,
                i,
                f"{norm[i, j]:.2f}\n{cm[i, j]}",
                ha="center",
                va="center",
                color="white" if norm[i, j] > 0.5 else "black",
                fontsize=8,
            )
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
