"""MLflow 3 registry webhooks: a signed notification triggers an immediate reconcile.

Optional fast path: without `BLUEGREEN_WEBHOOK_SECRET` the route answers 403 and processes
converge on their control interval as usual. The signature is MLflow's: base64 HMAC-SHA256 of
`{delivery_id}.{timestamp}.{body}` in `X-MLflow-Signature: v1,<sig>`.

A signature stays valid for the clock-skew window, so each delivery ID is remembered for that
long: a captured delivery replayed within the window is answered 200 (MLflow retries deliveries
it did not see answered) but does not reconcile again.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import attrs
from litestar import Request, post
from litestar.datastructures import State
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.openapi.datastructures import ResponseSpec

from bluegreen import metrics
from bluegreen.api.schemas import ErrorBody
from bluegreen.logging import event
from bluegreen.wiring import Runtime

log = logging.getLogger("bluegreen.webhooks")
WEBHOOK_ERRORS = {
    401: ResponseSpec(ErrorBody, description="Missing, stale or invalid signature"),
    403: ResponseSpec(ErrorBody, description="Webhooks disabled: no BLUEGREEN_WEBHOOK_SECRET"),
}
MAX_CLOCK_SKEW_S = 300
"""Older deliveries are refused: a captured request cannot be replayed later."""
MAX_DELIVERY_ID_CHARS = 200
SWEEP_INTERVAL_S = 60.0


@attrs.define
class DeliveryLog:
    """The delivery IDs seen within the replay window, as marker files in the state dir, so
    that every worker on the host shares them (a replay sent to a sibling worker is caught
    too). Another host does not see them: a replay there costs one reconcile, which is
    idempotent. Only deliveries with a valid signature get here, so only the holder of the
    secret can add markers."""

    directory: Path
    window_s: float = 2 * MAX_CLOCK_SKEW_S
    _last_sweep: float = attrs.field(init=False, default=0.0)

    def first_time(self, delivery_id: str, now: float) -> bool:
        self.directory.mkdir(parents=True, exist_ok=True)
        if now - self._last_sweep > SWEEP_INTERVAL_S:
            self._sweep(now)
        name = hashlib.sha256(delivery_id.encode("utf-8", "surrogatepass")).hexdigest()
        try:
            fd = os.open(self.directory / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return False
        os.close(fd)
        return True

    def _sweep(self, now: float) -> None:
        self._last_sweep = now
        for marker in self.directory.iterdir():
            try:
                if marker.stat().st_mtime < now - self.window_s:
                    marker.unlink()
            except FileNotFoundError:
                pass  # a sibling worker swept it first


def expected_signature(secret: str, delivery_id: str, timestamp: str, body: str) -> str:
    digest = hmac.new(
        secret.encode("utf-8"), f"{delivery_id}.{timestamp}.{body}".encode(), hashlib.sha256
    ).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def verify(secret: str, headers: Any, body: bytes, now: float) -> None:
    signature = headers.get("x-mlflow-signature", "")
    delivery_id = headers.get("x-mlflow-delivery-id", "")
    timestamp = headers.get("x-mlflow-timestamp", "")
    if not delivery_id or len(delivery_id) > MAX_DELIVERY_ID_CHARS:
        raise NotAuthorizedException("missing or invalid X-MLflow-Delivery-Id")
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
    secret = runtime.settings.admin.webhook_secret
    if not secret:
        raise PermissionDeniedException("webhooks disabled: BLUEGREEN_WEBHOOK_SECRET is not set")
    body = await request.body()
    now = time.time()
    verify(secret, request.headers, body, now)
    deliveries: DeliveryLog = state.webhook_deliveries
    delivery_id = request.headers["x-mlflow-delivery-id"]
    if not deliveries.first_time(delivery_id, now):
        metrics.WEBHOOK_REPLAYS.inc()
        event(log, "webhook.replayed", logging.WARNING, delivery_id=delivery_id[:64],
              peer=request.client.host if request.client else None)  # fmt: skip
        return {"accepted": True, "reconcile": False, "duplicate": True}
    try:
        payload = json.loads(body)
    except ValueError:
        payload = {}
    data = payload.get("data", payload) if isinstance(payload, dict) else {}
    name = data.get("name") if isinstance(data, dict) else None
    relevant = name in (None, runtime.settings.registry.model_name)
    if relevant:
        runtime.controller.wake()
    event(log, "webhook.received", entity=payload.get("entity") if isinstance(payload, dict)
          else None, action=payload.get("action") if isinstance(payload, dict) else None,
          model=name, reconcile=relevant)  # fmt: skip
    return {"accepted": True, "reconcile": relevant}
