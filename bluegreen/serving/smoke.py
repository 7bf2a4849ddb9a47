"""The smoke gate: a freshly loaded version must prove it honours the contract before serving."""

from __future__ import annotations

import logging
import statistics
import time

import attrs

from bluegreen.logging import event
from bluegreen.serving.contract import LABELS
from bluegreen.serving.model_handle import LoadedModel

GOLDEN_SET: tuple[tuple[str, str], ...] = (
    ("정말 최고의 영화입니다. 배우들 연기도 훌륭하고 감동적이었어요", "긍정"),
    ("인생 영화 강력 추천합니다 최고 최고", "긍정"),
    ("너무 재밌고 감동적이에요 또 보고 싶다", "긍정"),
    ("완전 꿀잼 명작입니다", "긍정"),
    ("최악의 영화. 시간 낭비 돈 낭비", "부정"),
    ("정말 지루하고 재미없다 돈 아깝다", "부정"),
    ("스토리도 엉망이고 연기도 최악이다 쓰레기", "부정"),
    ("이런 걸 영화라고 만들다니 노잼", "부정"),
)
"""Unambiguous reviews. The neutral class is never asserted: no honest model is sure of it."""

ODD_INPUTS: tuple[str, ...] = (
    "a",
    "😀😀😀 👍",
    "ㅋㅋㅋㅋㅋㅋㅋㅋ",
    "Mixed 한국어 and English 123 !!!",
    "영화 " * 400,
)
"""Odd but valid inputs every model must survive with a valid distribution."""

log = logging.getLogger("bluegreen.smoke")


class SmokeFailed(Exception):
    pass


@attrs.frozen
class SmokeReport:
    golden_accuracy: float
    median_single_ms: float
    checked_texts: int
    version_set_accuracy: float | None = None
    """Accuracy on the version's own smoke set; None when it ships none."""
    version_set_cases: int = 0


def run_smoke(
    model: LoadedModel, *, latency_budget_ms: float, min_golden_accuracy: float
) -> SmokeReport:
    """Raise `SmokeFailed` unless the model answers like a servable version. Blocking.

    The golden set always runs; a version's own smoke set (``model.ref.smoke_set``) runs in
    addition, and each must reach ``min_golden_accuracy`` on its own: a version cannot swap
    the server's check for an easier one of its own."""
    own = model.ref.smoke_set
    cases = GOLDEN_SET + own
    texts = [text for text, _ in cases]
    try:
        # `predict` validates shape, finiteness, range and normalisation on every call.
        batch = model.predict(texts)
        model.predict(list(ODD_INPUTS))
        timings: list[float] = []
        for text, _ in GOLDEN_SET[:5]:
            started = time.perf_counter()
            single = model.predict([text])
            timings.append((time.perf_counter() - started) * 1000)
            if single.shape != (1, len(LABELS)):
                raise SmokeFailed(f"single prediction has shape {single.shape}")
    except SmokeFailed:
        raise
    except Exception as exc:
        raise SmokeFailed(f"predict raised {type(exc).__name__}: {exc}") from exc

    predicted = [LABELS[i] for i in batch.argmax(axis=1)]
    version = model.ref.version
    golden_accuracy = _judged(version, "golden", predicted[: len(GOLDEN_SET)], GOLDEN_SET,
                              min_golden_accuracy)  # fmt: skip
    if golden_accuracy < min_golden_accuracy:
        raise SmokeFailed(
            f"golden accuracy {golden_accuracy:.2f} below {min_golden_accuracy:.2f} "
            "(labels swapped?)"
        )
    own_accuracy = (
        _judged(version, "version", predicted[len(GOLDEN_SET) :], own, min_golden_accuracy)
        if own
        else None
    )
    if own_accuracy is not None and own_accuracy < min_golden_accuracy:
        raise SmokeFailed(
            f"accuracy {own_accuracy:.2f} on the version's own smoke set ({len(own)} cases) "
            f"below {min_golden_accuracy:.2f}"
        )
    median_ms = statistics.median(timings)
    if median_ms > latency_budget_ms:
        raise SmokeFailed(f"median latency {median_ms:.1f} ms over budget {latency_budget_ms} ms")
    return SmokeReport(
        golden_accuracy, median_ms, len(texts) + len(ODD_INPUTS), own_accuracy, len(own)
    )


def _judged(
    version: int, name: str, predicted: list[str], cases: tuple[tuple[str, str], ...],
    min_accuracy: float,
) -> float:  # fmt: skip
    """Accuracy on one case set, logged per set (``model.smoke.set``), passed or not."""
    correct = sum(p == expected for p, (_, expected) in zip(predicted, cases, strict=True))
    accuracy = correct / len(cases)
    event(log, "model.smoke.set", version=version, set=name, cases=len(cases),
          correct=correct, accuracy=round(accuracy, 4), min_accuracy=min_accuracy,
          passed=accuracy >= min_accuracy)  # fmt: skip
    return accuracy
