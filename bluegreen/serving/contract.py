"""The model output contract every servable version must honour (DESIGN.md section 2)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

LABELS: tuple[str, ...] = ("부정", "중립/복합", "긍정")
"""Labels the API answers with, in the column order the server uses internally."""

PROBABILITY_TOLERANCE = 1e-3


class ContractViolation(ValueError):
    """A model's output is not a valid probability table for our labels."""


def check_probabilities(probs: object, n_rows: int) -> NDArray[np.float64]:
    """Return `probs` as a float64 (n_rows, len(LABELS)) array or raise `ContractViolation`.

    Runs on every prediction, so it sticks to a few vectorised checks (a few µs).
    """
    if not isinstance(probs, np.ndarray):
        raise ContractViolation(f"expected ndarray, got {type(probs).__name__}")
    if probs.shape != (n_rows, len(LABELS)):
        raise ContractViolation(f"expected shape {(n_rows, len(LABELS))}, got {probs.shape}")
    arr = probs.astype(np.float64, copy=False)
    if n_rows == 1:
        # One row: plain float checks beat five numpy calls (~1 µs against ~10 µs).
        row = arr[0].tolist()
        if not all(-PROBABILITY_TOLERANCE <= p <= 1 + PROBABILITY_TOLERANCE for p in row):
            # NaN fails every comparison, so it lands here too.
            raise ContractViolation(f"probability not finite or outside [0, 1]: {row}")
        if abs(sum(row) - 1.0) > PROBABILITY_TOLERANCE:
            raise ContractViolation("probabilities do not sum to 1")
        return arr
    if not np.isfinite(arr).all():
        raise ContractViolation("non-finite probability")
    if (arr < -PROBABILITY_TOLERANCE).any() or (arr > 1 + PROBABILITY_TOLERANCE).any():
        raise ContractViolation("probability outside [0, 1]")
    if (np.abs(arr.sum(axis=1) - 1.0) > PROBABILITY_TOLERANCE).any():
        raise ContractViolation("probabilities do not sum to 1")
    return arr
