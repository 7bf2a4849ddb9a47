"""What training, the pyfunc model and the server must agree on: the label order and the
longest text the model reads (no imports on purpose: the server's settings import it)."""

from __future__ import annotations

LABELS: tuple[str, ...] = ("부정", "중립/복합", "긍정")
"""Output columns in this order everywhere: negative (1-4), neutral/mixed (5-8), positive (9-10)."""

MAX_TEXT_CHARS = 5000
"""The model reads texts up to this many characters whole and cuts longer ones. The server's
BLUEGREEN_MAX_TEXT_CHARS may not exceed it, so every character a client sends is read."""


def label_for_rating(rating: int) -> int:
    """Map an NSMC star rating (1-10) to the index of its label in :data:`LABELS`."""
    if not 1 <= rating <= 10:
        raise ValueError(f"rating must be within 1..10, got {rating}")
    if rating <= 4:
        return 0
    if rating <= 8:
        return 1
    return 2
