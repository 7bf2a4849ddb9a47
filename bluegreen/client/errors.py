"""What a call to a bluegreen server can fail with.

`ApiError` is an answer the server gave (a status code, its error text, the request id); its
subclasses say which kind. `Unreachable` is no answer at all (connection refused, timeout),
`UnexpectedResponse` an answer that is not what the API documents. Every one is a
`BluegreenError`, so `except BluegreenError` catches them all.
"""

from __future__ import annotations

from typing import ClassVar

import httpx
import msgspec

REQUEST_ID_HEADER = "X-Request-ID"


class BluegreenError(Exception):
    """Base of every error this client raises."""


class Unreachable(BluegreenError):
    """No answer: the connection failed or timed out."""


class UnexpectedResponse(BluegreenError):
    """The server answered with a success status but a body this client cannot read."""

    def __init__(self, message: str, *, status_code: int, request_id: str | None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.request_id = request_id


class ApiError(BluegreenError):
    """The server refused or failed a request."""

    status: ClassVar[int | None] = None
    """The status code this class stands for (None: any in its range)."""

    def __init__(
        self,
        status_code: int,
        error: str,
        detail: str,
        *,
        request_id: str | None = None,
        field: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.status_code = status_code
        self.error = error
        """The error's short name (`invalid_request`, `conflict`...), or its text for the Open
        Inference Protocol routes, whose errors carry only a text."""
        self.detail = detail
        self.request_id = request_id
        self.field = field
        self.retry_after = retry_after
        super().__init__(f"{status_code} {error}: {detail}" if detail != error else
                         f"{status_code} {error}")  # fmt: skip


class ClientError(ApiError):
    """4xx: the server refused the request; sending it again will not help."""


class BadRequest(ClientError):
    status = 400


class Unauthorized(ClientError):
    """Missing or wrong admin token."""

    status = 401


class Forbidden(ClientError):
    """The admin API is disabled on the server (no BLUEGREEN_ADMIN_TOKEN)."""

    status = 403


class NotFound(ClientError):
    """Unknown version or model."""

    status = 404


class Conflict(ClientError):
    """Not possible in the server's current state (nothing to roll back to, no canary...)."""

    status = 409


class Unprocessable(ClientError):
    """The version was rejected (failed load, verification or smoke)."""

    status = 422


class TooManyRequests(ClientError):
    """Too many failed admin logins from this address; see `retry_after`."""

    status = 429


class ServerError(ApiError):
    """5xx: the server could not answer now; the same request may succeed later."""


class ServiceUnavailable(ServerError):
    """No live model yet, overloaded, or the registry is unavailable; see `retry_after`."""

    status = 503


class GatewayTimeout(ServerError):
    """A prediction or a registry call exceeded its deadline."""

    status = 504


_BY_STATUS: dict[int, type[ApiError]] = {
    cls.status: cls
    for cls in (
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        Conflict,
        Unprocessable,
        TooManyRequests,
        ServiceUnavailable,
        GatewayTimeout,
    )
    if cls.status is not None
}


class _ErrorBody(msgspec.Struct):
    """The app's `ErrorBody`, or the Open Inference Protocol's `{"error": "..."}`."""

    error: str | None = None
    detail: str | None = None
    field: str | None = None
    request_id: str | None = None


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:  # an HTTP date: not something a caller can sleep on directly
        return None


def error_from(response: httpx.Response) -> ApiError:
    """The `ApiError` for a response whose status is not a success."""
    try:
        body = msgspec.json.decode(response.content, type=_ErrorBody)
    except (msgspec.DecodeError, msgspec.ValidationError):
        body = _ErrorBody()
    text = body.error or response.reason_phrase or "error"
    detail = body.detail or body.error or response.text.strip()[:500] or text
    status = response.status_code
    cls = _BY_STATUS.get(status) or (ClientError if status < 500 else ServerError)
    return cls(
        status,
        text,
        detail,
        request_id=response.headers.get(REQUEST_ID_HEADER) or body.request_id,
        field=body.field,
        retry_after=_retry_after(response),
    )
