"""`AsyncClient`: the asyncio transport, the same methods as `Client` (a unit test keeps their
signatures equal). Requests are built and answers read in `calls`; this class only sends."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import TypeVar

import httpx

from bluegreen.client import calls, models
from bluegreen.client.calls import Call, Endpoint
from bluegreen.client.transport import (
    DEFAULT_DEPLOY_TIMEOUT_S,
    DEFAULT_TIMEOUT_S,
    DEFAULT_URL,
    request_options,
    unreachable,
)

T = TypeVar("T")


class AsyncClient:
    """`Client` for asyncio: the same methods, awaited; `async with` closes it.

    `token` is the admin bearer token (`BLUEGREEN_ADMIN_TOKEN`), `actor` the name the audit log
    records (`X-Admin-Actor`). Every call takes `request_id`, sent as `X-Request-ID` (the
    server echoes it and logs it; errors carry it back). Pass `http` to use your own
    `httpx.AsyncClient` (its base URL, transport and timeouts; `url` and `timeout` are then not
    used, and closing this client leaves it open).

    Errors: `bluegreen.client.errors` (`ApiError` with status, error text and request id;
    `Unreachable`; `UnexpectedResponse`).
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        token: str | None = None,
        actor: str | None = None,
        model_name: str = "ensemble-sentiment-model",
        timeout: float = DEFAULT_TIMEOUT_S,
        deploy_timeout: float = DEFAULT_DEPLOY_TIMEOUT_S,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.endpoint = Endpoint(token=token, actor=actor, model_name=model_name)
        self._deploy_timeout = deploy_timeout
        self._owns_http = http is None
        self._http = http if http is not None else httpx.AsyncClient(base_url=url, timeout=timeout)

    async def call(self, call: Call[T], *, request_id: str | None = None) -> T:
        """Send one `Call` (see `bluegreen.client.calls`) and parse its answer."""
        request = self._http.build_request(
            **request_options(self.endpoint, call, request_id, self._deploy_timeout)
        )
        try:
            response = await self._http.send(request)
        except httpx.TransportError as exc:
            raise unreachable(self._http.base_url, call, exc) from exc
        return call.parse(response)

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # --- predictions and health -----------------------------------------------------------
    async def predict(self, text: str, *, request_id: str | None = None) -> models.Prediction:
        return await self.call(calls.predict(text), request_id=request_id)

    async def predict_batch(
        self, texts: Sequence[str], *, request_id: str | None = None
    ) -> models.BatchPrediction:
        return await self.call(calls.predict_batch(texts), request_id=request_id)

    async def health(self, *, request_id: str | None = None) -> models.Health:
        return await self.call(calls.health(), request_id=request_id)

    async def ready(self, *, request_id: str | None = None) -> models.Health:
        """`/readyz`; `.ready` is False (not an error) while no version serves."""
        return await self.call(calls.ready(), request_id=request_id)

    # --- Open Inference Protocol (V2) -----------------------------------------------------
    async def server_metadata(self, *, request_id: str | None = None) -> models.ServerMetadata:
        return await self.call(calls.server_metadata(), request_id=request_id)

    async def server_live(self, *, request_id: str | None = None) -> bool:
        return await self.call(calls.server_live(), request_id=request_id)

    async def server_ready(self, *, request_id: str | None = None) -> bool:
        return await self.call(calls.server_ready(), request_id=request_id)

    async def model_metadata(
        self, version: int | None = None, *, request_id: str | None = None
    ) -> models.ModelMetadata:
        """The live version's metadata, or a loaded version's."""
        return await self.call(calls.model_metadata(self.endpoint, version), request_id=request_id)

    async def model_ready(
        self, version: int | None = None, *, request_id: str | None = None
    ) -> bool:
        return await self.call(calls.model_ready(self.endpoint, version), request_id=request_id)

    async def infer(
        self,
        texts: Sequence[str],
        *,
        version: int | None = None,
        id: str | None = None,
        binary: bool = False,
        request_id: str | None = None,
    ) -> models.Inference:
        """V2 inference on the live version, or pinned to a loaded `version`."""
        call = calls.infer(self.endpoint, texts, version=version, id=id, binary=binary)
        return await self.call(call, request_id=request_id)

    # --- /admin ---------------------------------------------------------------------------
    async def slots(self, *, request_id: str | None = None) -> models.Slots:
        return await self.call(calls.slots(), request_id=request_id)

    async def versions(self, *, request_id: str | None = None) -> models.Versions:
        return await self.call(calls.versions(), request_id=request_id)

    async def promote(
        self, version: int | None = None, *, request_id: str | None = None
    ) -> models.PromoteResult:
        """Promote the canary now, or pin `version` (load, smoke, promote, move the alias)."""
        return await self.call(calls.promote(version), request_id=request_id)

    async def rollback(self, *, request_id: str | None = None) -> models.RollbackResult:
        return await self.call(calls.rollback(), request_id=request_id)

    async def reload(self, *, request_id: str | None = None) -> models.ReloadResult:
        return await self.call(calls.reload(), request_id=request_id)

    async def set_canary(
        self, percent: float, *, request_id: str | None = None
    ) -> models.CanaryResult:
        return await self.call(calls.set_canary(percent), request_id=request_id)

    async def abort_canary(self, *, request_id: str | None = None) -> models.AbortResult:
        return await self.call(calls.abort_canary(), request_id=request_id)

    async def reject(
        self, version: int, reason: str, *, request_id: str | None = None
    ) -> models.RejectResult:
        return await self.call(calls.reject(version, reason), request_id=request_id)

    async def unreject(
        self, version: int, *, request_id: str | None = None
    ) -> models.UnrejectResult:
        return await self.call(calls.unreject(version), request_id=request_id)
