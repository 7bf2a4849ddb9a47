"""MLflow 3 registry webhooks: a signed notification triggers an immediate reconcile.

Optional fast path: without `BLUEGREEN_WEBHOOK_SECRET` the route answers 403 and processes
converge on their control interval as usual. The signature is MLflow's: base64 HMAC-SHA256 of
`{delivery_id}.{timestamp}.{body}` in `X-MLflow-Signature: v1,<sig>`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from typing import Any

from litestar import Request, post
from litestar.datastructures import State
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.openapi.datastructures import ResponseSpec

from bluegreen.api.schemas import ErrorBody
from bluegreen.logging import event
from bluegreen.runtime import Runtime

log = logging.getLogger("bluegreen.webhooks")
WEBHOOK_ERRORS = {
    401: ResponseSpec(ErrorBody, description="Missing, stale or invalid signature"),
    403: ResponseSpec(ErrorBody, description="Webhooks disabled: no BLUEGREEN_WEBHOOK_SECRET"),
}
MAX_CLOCK_SKEW_S = 300
"""Older deliveries are refused: a captured request cannot be replayed later."""


def expected_signature(secret: str, delivery_id: str, timestamp: str, body: str) -> str:
    digest = hmac.new(
        secret.encode("utf-8"), f"{delivery_id}.{timestamp}.{body}".encode(), hashlib.sha256
    ).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def verify(secret: str, headers: Any, body: bytes, now: float) -> None:
    signature = headers.get("x-mlflow-signature", "")
    delivery_id = headers.get("x-mlflow-delivery-id", "")
    timestamp = headers.get("x-mlflow-timestamp", "")
    try:
        age = abs(now - int(timestamp))
    except ValueError:
        raise NotAuthorizedException("missing or invalid X-MLflow-Timestamp") from None
    if age > MAX_CLOCK_SKEW_S:
        raise NotAuthorizedException("webhook timestamp outside the allowed window")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise NotAuthorizedException("webhook body is not UTF-8") from None
    wanted = expected_signature(secret, delivery_id, timestamp, text)
    if not hmac.compare_digest(signature.encode(), wanted.encode()):
        raise NotAuthorizedException("invalid webhook signature")


@post("/webhooks/mlflow", status_code=200, summary="MLflow registry webhook (signed)",
      tags=["webhooks"], responses=WEBHOOK_ERRORS)  # fmt: skip
async def mlflow_webhook(request: Request[Any, Any, Any], state: State) -> dict[str, Any]:
    runtime: Runtime = state.runtime
    secret = runtime.settings.webhook_secret
    if not secret:
        raise PermissionDeniedException("webhooks disabled: BLUEGREEN_WEBHOOK_SECRET is not set")
    body = await request.body()
    verify(secret, request.headers, body, time.time())
    try:
        payload = json.loads(body)
    except ValueError:
        payload = {}
    data = payload.get("data", payload) if isinstance(payload, dict) else {}
    name = data.get("name") if isinstance(data, dict) else None
    relevant = name in (None, runtime.settings.model_name)
    if relevant:
        runtime.controller.wake()
    event(log, "webhook.received", entity=payload.get("entity") if isinstance(payload, dict)
          else None, action=payload.get("action") if isinstance(payload, dict) else None,
          model=name, reconcile=relevant)  # fmt: skip
    return {"accepted": True, "reconcile": relevant}
