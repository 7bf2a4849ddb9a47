"""Request and response bodies (msgspec Structs; Litestar derives the OpenAPI schema)."""

from __future__ import annotations

from typing import Annotated

import msgspec

from bluegreen.serving.contract import LABELS

Sentiment = Annotated[
    str, msgspec.Meta(description="One of " + ", ".join(LABELS), examples=["긍정"])
]
Probability = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
Text = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        description="Review text; non-empty after trimming, at most BLUEGREEN_MAX_TEXT_CHARS",
        examples=["정말 재미있는 영화였어요!"],
    ),
]


class PredictRequest(msgspec.Struct, forbid_unknown_fields=True):
    text: Text


class BatchPredictRequest(msgspec.Struct, forbid_unknown_fields=True):
    texts: Annotated[
        list[Text],
        msgspec.Meta(
            min_length=1,
            description="1..BLUEGREEN_MAX_BATCH texts",
            examples=[["최고의 영화", "시간 낭비"]],
        ),
    ]


class SentimentResult(msgspec.Struct):
    sentiment: Sentiment
    score: Annotated[Probability, msgspec.Meta(description="Probability of `sentiment`")]
    details: Annotated[
        dict[str, Probability], msgspec.Meta(description="Probability per label, summing to 1")
    ]


class PredictResponse(msgspec.Struct):
    sentiment: Sentiment
    score: Probability
    details: dict[str, Probability]
    model_version: int
    model_slot: str


class BatchPredictResponse(msgspec.Struct):
    results: list[SentimentResult]
    model_version: int
    model_slot: str


class ErrorBody(msgspec.Struct, omit_defaults=True):
    status_code: int
    error: str
    detail: str
    field: str | None = None


class HealthBody(msgspec.Struct, omit_defaults=True):
    status: str
    version: int | None = None
    slot: str | None = None
    reason: str | None = None


class PromoteRequest(msgspec.Struct, forbid_unknown_fields=True):
    version: Annotated[int, msgspec.Meta(ge=1)] | None = None


class CanaryRequest(msgspec.Struct, forbid_unknown_fields=True):
    percent: Annotated[float, msgspec.Meta(ge=0, le=100)]
