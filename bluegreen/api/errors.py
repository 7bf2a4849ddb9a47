"""Domain errors → HTTP, in one place. Every error body is `ErrorBody` JSON, naming the request's
id; no tracebacks."""

from __future__ import annotations

import logging
import re
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import (
    HTTP_400_BAD_REQUEST,
    HTTP_500_INTERNAL_SERVER_ERROR,
    HTTP_503_SERVICE_UNAVAILABLE,
    HTTP_504_GATEWAY_TIMEOUT,
)

from bluegreen.api.request_id import current_request_id
from bluegreen.control.errors import ControlError
from bluegreen.logging import event
from bluegreen.registry import RegistryDeadlineExceeded, RegistryUnavailable
from bluegreen.serving.predictor import ModelFailed, NoLiveModel, Overloaded

log = logging.getLogger("bluegreen.api")
RETRY_AFTER_S = "5"


class InvalidInput(Exception):
    """Well-formed JSON that breaks a rule msgspec cannot express (trimmed length, limits)."""

    def __init__(self, detail: str, field: str | None = None, status_code: int = 400) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        self.status_code = status_code


class RequestTimedOut(Exception):
    pass


def error_response(
    status: int, error: str, detail: str, field: str | None = None, retry: bool = False
) -> Response[dict[str, Any]]:
    body: dict[str, Any] = {"status_code": status, "error": error, "detail": detail}
    if field is not None:
        body["field"] = field
    request_id = current_request_id()
    if request_id is not None:
        body["request_id"] = request_id
    headers = {"Retry-After": RETRY_AFTER_S} if retry else None
    return Response(body, status_code=status, headers=headers)


_FIELD_RES = (re.compile(r"field `([^`]+)`"), re.compile(r"at `\$\.?([^`]*)`"))


def _validation(_: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    detail = str(exc.detail)
    field: str | None = None
    extra = exc.extra
    if isinstance(extra, list) and extra and isinstance(extra[0], dict):
        message = str(extra[0].get("message", ""))
        if message in {"'data'", "data"}:  # Litestar's wording for a missing body
            message = "request body is required: a JSON object"
        detail = f"{detail}: {message}" if message else detail
        field = next(
            (m.group(1) for r in _FIELD_RES if (m := r.search(message)) and m.group(1)),
            None,
        )
        if field is None and extra[0].get("key") not in (None, "data"):
            field = str(extra[0]["key"])
    return error_response(HTTP_400_BAD_REQUEST, "invalid_request", detail, field)


def _http(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    names = {401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
             408: "request_timeout", 413: "payload_too_large",
             415: "unsupported_media_type", 429: "too_many_requests"}  # fmt: skip
    error = names.get(exc.status_code, "http_error")
    if exc.status_code == 400:
        error = "invalid_json" if "JSON" in str(exc.detail) else "invalid_request"
    response = error_response(exc.status_code, error, str(exc.detail))
    if exc.headers:
        response.headers.update(exc.headers)
    return response


def _not_utf8(_: Request[Any, Any, Any], exc: UnicodeDecodeError) -> Response[Any]:
    # msgspec raises UnicodeDecodeError (not DecodeError) for invalid UTF-8 inside a JSON
    # string, and Litestar lets it through: without this it would be a 500.
    return error_response(HTTP_400_BAD_REQUEST, "invalid_json", "request body is not valid UTF-8")


def _invalid(_: Request[Any, Any, Any], exc: InvalidInput) -> Response[Any]:
    return error_response(exc.status_code, "invalid_request", exc.detail, exc.field)


def _no_model(_: Request[Any, Any, Any], exc: NoLiveModel) -> Response[Any]:
    return error_response(HTTP_503_SERVICE_UNAVAILABLE, "no_model", str(exc), retry=True)


def _overloaded(_: Request[Any, Any, Any], exc: Overloaded) -> Response[Any]:
    return error_response(HTTP_503_SERVICE_UNAVAILABLE, "overloaded", str(exc), retry=True)


def _model_failed(_: Request[Any, Any, Any], exc: ModelFailed) -> Response[Any]:
    return error_response(HTTP_500_INTERNAL_SERVER_ERROR, "model_error",
                          "the model failed on this input")  # fmt: skip


def _timeout(_: Request[Any, Any, Any], exc: RequestTimedOut) -> Response[Any]:
    return error_response(HTTP_504_GATEWAY_TIMEOUT, "timeout", str(exc), retry=True)


def _control(_: Request[Any, Any, Any], exc: ControlError) -> Response[Any]:
    error = {404: "not_found", 409: "conflict"}.get(exc.status_code, "rejected")
    return error_response(exc.status_code, error, str(exc))


def _registry(_: Request[Any, Any, Any], exc: RegistryUnavailable) -> Response[Any]:
    return error_response(HTTP_503_SERVICE_UNAVAILABLE, "registry_unavailable", str(exc),
                          retry=True)  # fmt: skip


def _registry_deadline(_: Request[Any, Any, Any], exc: RegistryDeadlineExceeded) -> Response[Any]:
    return error_response(HTTP_504_GATEWAY_TIMEOUT, "registry_deadline_exceeded", str(exc),
                          retry=True)  # fmt: skip


def _too_deep(_: Request[Any, Any, Any], exc: RecursionError) -> Response[Any]:
    # msgspec refuses JSON nested deeper than its limit with RecursionError: bad input, not ours.
    return error_response(HTTP_400_BAD_REQUEST, "invalid_json", "JSON is nested too deeply")


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    event(log, "request.unhandled", logging.ERROR, path=request.scope.get("path"),
          error=f"{type(exc).__name__}: {exc}"[:300])  # fmt: skip
    return error_response(HTTP_500_INTERNAL_SERVER_ERROR, "internal", "internal error")


EXCEPTION_HANDLERS: dict[Any, Any] = {
    ValidationException: _validation,
    HTTPException: _http,
    InvalidInput: _invalid,
    UnicodeDecodeError: _not_utf8,
    NoLiveModel: _no_model,
    Overloaded: _overloaded,
    ModelFailed: _model_failed,
    RequestTimedOut: _timeout,
    ControlError: _control,
    RegistryDeadlineExceeded: _registry_deadline,
    RegistryUnavailable: _registry,
    RecursionError: _too_deep,
    Exception: _unexpected,
}
