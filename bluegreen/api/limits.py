"""A server-side bound on reading a request body.

uvicorn times out idle keep-alive connections but not a client that sends a body slowly
(slowloris): the handler would wait on `receive()` forever while holding a connection and a
`limit_concurrency` place. This middleware gives the whole body `timeout_s` from the first
read; past it the request fails with 408 and uvicorn closes the connection. Header reads are
not visible to an ASGI app: the server's HTTP protocol bounds them (`bluegreen/edge/`).
"""

from __future__ import annotations

import asyncio

from litestar.enums import ScopeType
from litestar.exceptions import HTTPException
from litestar.types import ASGIApp, Receive, ReceiveMessage, Scope, Send


class BodyReadTimeout(HTTPException):
    status_code = 408


class BodyTimeoutMiddleware:
    def __init__(self, app: ASGIApp, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        body_done = False

        async def timed_receive() -> ReceiveMessage:
            nonlocal deadline, body_done
            if body_done:
                return await receive()
            if deadline is None:
                deadline = loop.time() + self.timeout_s
            try:
                # asyncio.timeout schedules one timer; wait_for would create a task per read.
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise BodyReadTimeout(
                    detail=f"request body not received within {self.timeout_s:g}s",
                    headers={"Connection": "close"},
                ) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        await self.app(scope, timed_receive, send)
