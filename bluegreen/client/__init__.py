"""A typed client for a bluegreen server (httpx; sync `Client`, async `AsyncClient`).

    from bluegreen.client import Client

    with Client("http://127.0.0.1:8000", token=os.environ["BLUEGREEN_ADMIN_TOKEN"]) as bg:
        print(bg.predict("정말 재미있는 영화였어요!").sentiment)
        bg.rollback()
        print(bg.slots().live_version)

Results are msgspec Structs (`bluegreen.client.models`); failures raise the errors of
`bluegreen.client.errors`. The package imports nothing from the server.
"""

from bluegreen.client.aio import AsyncClient
from bluegreen.client.errors import (
    ApiError,
    BadRequest,
    BluegreenError,
    ClientError,
    Conflict,
    Forbidden,
    GatewayTimeout,
    NotFound,
    ServerError,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
    UnexpectedResponse,
    Unprocessable,
    Unreachable,
)
from bluegreen.client.sync import Client

__all__ = [
    "ApiError",
    "AsyncClient",
    "BadRequest",
    "BluegreenError",
    "Client",
    "ClientError",
    "Conflict",
    "Forbidden",
    "GatewayTimeout",
    "NotFound",
    "ServerError",
    "ServiceUnavailable",
    "TooManyRequests",
    "Unauthorized",
    "UnexpectedResponse",
    "Unprocessable",
    "Unreachable",
]
