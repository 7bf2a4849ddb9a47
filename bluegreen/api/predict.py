"""POST /predict and /predict/batch."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from typing import Any

from litestar import Request, Response, Router, post
from litestar.datastructures import State
from litestar.exceptions import HTTPException
from litestar.openapi.datastructures import ResponseSpec

from bluegreen.api.errors import InvalidInput, RequestTimedOut
from bluegreen.api.request_id import client_request_id
from bluegreen.api.schemas import (
    BatchPredictRequest,
    BatchPredictResponse,
    ErrorBody,
    PredictRequest,
    PredictResponse,
    SentimentResult,
)
from bluegreen.logging import event
from bluegreen.model.textfeat import is_blank
from bluegreen.serving.contract import LABELS
from bluegreen.serving.predictor import Prediction
from bluegreen.wiring import Runtime

log = logging.getLogger("bluegreen.requests")
CLIENT_ID_HEADER = "x-client-id"
"""Canary stickiness key when the client sent no X-Request-ID of its own."""

ERROR_RESPONSES = {
    400: ResponseSpec(ErrorBody, description="Invalid body: field named in `field`"),
    408: ResponseSpec(ErrorBody, description="Body not received within BLUEGREEN_BODY_TIMEOUT_S"),
    413: ResponseSpec(ErrorBody, description="Body over BLUEGREEN_MAX_BODY_BYTES"),
    415: ResponseSpec(ErrorBody, description="Content-Type is not application/json"),
    503: ResponseSpec(ErrorBody, description="No live model yet, or overloaded; see Retry-After"),
    504: ResponseSpec(ErrorBody, description="Prediction exceeded BLUEGREEN_REQUEST_TIMEOUT_S"),
}


async def require_json(request: Request[Any, Any, Any]) -> None:
    """Refuse non-JSON bodies before decoding them."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise HTTPException(status_code=415, detail="Content-Type must be application/json")


def _check_texts(texts: Sequence[str], max_chars: int, field: str) -> None:
    for index, text in enumerate(texts):
        name = field if len(texts) == 1 and field == "text" else f"{field}[{index}]"
        if len(text) > max_chars:
            raise InvalidInput(f"text is longer than {max_chars} characters", name)
        # the model's own notion of empty: zero-width and control characters count as space
        if is_blank(text):
            raise InvalidInput(
                "text must not be empty or only whitespace, control or zero-width characters",
                name,
            )


def _check_batch_chars(texts: Sequence[str], max_chars: int) -> None:
    total = sum(map(len, texts))
    if total > max_chars:
        raise InvalidInput(
            f"at most {max_chars} characters per batch (all texts together), got {total}",
            "texts",
        )


def _client_key(request: Request[Any, Any, Any]) -> str | None:
    """The canary stickiness key: the client's own X-Request-ID, else its X-Client-ID. An id
    made here is never a key: it is new per request, so None (the router's own draw) says the
    same thing plainly."""
    return client_request_id() or request.headers.get(CLIENT_ID_HEADER) or None


def _result(row: Any) -> tuple[str, float, dict[str, float]]:
    details = {label: float(p) for label, p in zip(LABELS, row, strict=True)}
    best = int(row.argmax())
    return LABELS[best], float(row[best]), details


async def _predict(runtime: Runtime, texts: list[str], key: str | None) -> Prediction:
    try:
        # asyncio.timeout, not wait_for: wait_for wraps the coroutine in a new Task per request
        # (an extra loop iteration and allocation on the hot path); timeout only arms a timer.
        async with asyncio.timeout(runtime.settings.limits.request_timeout_s):
            return await runtime.predictor.predict(texts, key)
    except TimeoutError as exc:
        raise RequestTimedOut(
            f"prediction took longer than {runtime.settings.limits.request_timeout_s}s"
        ) from exc


def _headers(prediction: Prediction) -> dict[str, str]:
    return {"X-Model-Version": str(prediction.version), "X-Model-Slot": prediction.slot}


def _log_request(runtime: Runtime, route: str, n: int, prediction: Prediction) -> None:
    sample = runtime.settings.observability.request_log_sample
    if log.isEnabledFor(logging.DEBUG) or (sample and random.random() < sample):
        event(log, "request", route=route, texts=n, version=prediction.version,
              slot=prediction.slot)  # fmt: skip


@post(
    "/predict",
    status_code=200,
    summary="Classify one review",
    responses=ERROR_RESPONSES,
)
async def predict(
    data: PredictRequest, request: Request[Any, Any, Any], state: State
) -> Response[PredictResponse]:
    runtime: Runtime = state.runtime
    _check_texts([data.text], runtime.settings.limits.max_text_chars, "text")
    prediction = await _predict(runtime, [data.text], _client_key(request))
    sentiment, score, details = _result(prediction.probabilities[0])
    _log_request(runtime, "/predict", 1, prediction)
    body = PredictResponse(sentiment, score, details, prediction.version, prediction.slot)
    return Response(body, headers=_headers(prediction))


@post(
    "/predict/batch",
    status_code=200,
    summary="Classify up to BLUEGREEN_MAX_BATCH reviews (BLUEGREEN_MAX_BATCH_CHARS in all)",
    responses=ERROR_RESPONSES,
)
async def predict_batch(
    data: BatchPredictRequest, request: Request[Any, Any, Any], state: State
) -> Response[BatchPredictResponse]:
    runtime: Runtime = state.runtime
    if len(data.texts) > runtime.settings.limits.max_batch:
        raise InvalidInput(
            f"at most {runtime.settings.limits.max_batch} texts per batch, got {len(data.texts)}",
            "texts",
        )
    _check_texts(data.texts, runtime.settings.limits.max_text_chars, "texts")
    _check_batch_chars(data.texts, runtime.settings.limits.max_batch_chars)
    prediction = await _predict(runtime, data.texts, _client_key(request))
    results = [SentimentResult(*_result(row)) for row in prediction.probabilities]
    _log_request(runtime, "/predict/batch", len(data.texts), prediction)
    body = BatchPredictResponse(results, prediction.version, prediction.slot)
    return Response(body, headers=_headers(prediction))


predict_router = Router(
    path="/", route_handlers=[predict, predict_batch], before_request=require_json, tags=["predict"]
)
