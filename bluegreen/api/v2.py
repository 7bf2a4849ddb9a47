"""Open Inference Protocol (KServe / Triton V2) REST routes over the same slots as /predict.

Inference goes through the same predictor, router, canary, input limits and contract checks
as /predict; only the wire format differs (`v2_codec`). Every error under /v2 has the OIP form
`{"error": "...", "request_id": "..."}`: the app's handlers decide the status and headers, and
this module reshapes their body, so both APIs agree on what is an error. That holds for the
router's own 404 and 405 too (`oip_on_v2_paths`), which no route's handlers ever see.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.datastructures import State
from litestar.enums import MediaType
from litestar.exceptions import HTTPException, MethodNotAllowedException, NotFoundException
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import (
    OpenAPIFormat,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    RequestBody,
    Schema,
)

from bluegreen.api.errors import EXCEPTION_HANDLERS, RequestTimedOut
from bluegreen.api.predict import (
    _check_batch_chars,
    _check_texts,
    _client_key,
    _headers,
    _log_request,
)
from bluegreen.api.request_id import current_request_id
from bluegreen.api.v2_codec import (
    HEADER_LENGTH,
    INPUT_NAME,
    OUTPUT_LABEL,
    OUTPUT_PROBABILITIES,
    DecodedRequest,
    Limits,
    decode_request,
    encode_response,
)
from bluegreen.serving.contract import LABELS
from bluegreen.serving.predictor import NoLiveModel, Prediction, VersionNotLoaded
from bluegreen.serving.slot import Slot
from bluegreen.wiring import Runtime

SERVER_NAME = "bluegreen"
EXTENSIONS = ["binary_tensor_data"]
PLATFORM = "bluegreen"
try:
    SERVER_VERSION = importlib.metadata.version("bluegreen")
except importlib.metadata.PackageNotFoundError:  # a source tree run without installing
    SERVER_VERSION = "0+unknown"
RETRY_AFTER = {"Retry-After": "5"}


class OipError(msgspec.Struct, omit_defaults=True):
    error: str
    request_id: Annotated[
        str | None,
        msgspec.Meta(description="The request's id, as in the X-Request-ID response header"),
    ] = None


class ServerMetadata(msgspec.Struct):
    name: str
    version: str
    extensions: list[str]


class MetadataTensor(msgspec.Struct, omit_defaults=True):
    name: str
    datatype: str
    shape: list[int]
    parameters: dict[str, Any] | None = None


class ModelMetadata(msgspec.Struct):
    name: str
    versions: list[str]
    platform: str
    inputs: list[MetadataTensor]
    outputs: list[MetadataTensor]
    parameters: dict[str, Any]


class OutputTensor(msgspec.Struct, omit_defaults=True):
    name: str
    datatype: str
    shape: list[int]
    parameters: dict[str, Any] | None = None
    """`binary_data_size` when the data follows the JSON header instead of `data`."""
    data: list[Any] | None = None


class InferResponse(msgspec.Struct, omit_defaults=True):
    """Documents the JSON response; the route encodes it with `v2_codec.encode_response`."""

    model_name: str
    model_version: str
    outputs: list[OutputTensor]
    parameters: dict[str, Any]
    id: str | None = None


class LiveBody(msgspec.Struct):
    live: bool


class ReadyBody(msgspec.Struct):
    ready: bool


INPUTS = [MetadataTensor(INPUT_NAME, "BYTES", [-1])]
OUTPUTS = [
    MetadataTensor(OUTPUT_PROBABILITIES, "FP32", [-1, len(LABELS)], {"labels": list(LABELS)}),
    MetadataTensor(OUTPUT_LABEL, "BYTES", [-1]),
]
OIP_ERRORS = {
    400: ResponseSpec(OipError, description="Bad tensor, datatype, shape, JSON or limits"),
    404: ResponseSpec(OipError, description="Unknown model name, or version not loaded"),
    413: ResponseSpec(OipError, description="Body over BLUEGREEN_MAX_BODY_BYTES"),
    503: ResponseSpec(OipError, description="No live model yet, or overloaded; see Retry-After"),
    504: ResponseSpec(OipError, description="Prediction exceeded BLUEGREEN_REQUEST_TIMEOUT_S"),
}
INFER_RESPONSES = {
    200: ResponseSpec(
        InferResponse,
        description="JSON, or with `Inference-Header-Content-Length` (application/octet-stream) "
        "a JSON header of that many bytes followed by the binary outputs",
    ),
    **OIP_ERRORS,
}
NOT_READY = {503: ResponseSpec(ReadyBody, description="Not ready yet; see Retry-After")}
_PARAMETERS = Schema(
    type=OpenAPIType.OBJECT,
    additional_properties=Schema(
        one_of=[
            Schema(type=OpenAPIType.BOOLEAN),
            Schema(type=OpenAPIType.NUMBER),
            Schema(type=OpenAPIType.STRING),
        ]
    ),
)
_INFER_REQUEST = Schema(
    type=OpenAPIType.OBJECT,
    required=["inputs"],
    properties={
        "id": Schema(type=OpenAPIType.STRING),
        "parameters": _PARAMETERS,
        "inputs": Schema(
            type=OpenAPIType.ARRAY,
            items=Schema(
                type=OpenAPIType.OBJECT,
                required=["name", "shape", "datatype"],
                properties={
                    "name": Schema(type=OpenAPIType.STRING, examples=[INPUT_NAME]),
                    "shape": Schema(type=OpenAPIType.ARRAY, items=Schema(type=OpenAPIType.INTEGER)),
                    "datatype": Schema(type=OpenAPIType.STRING, examples=["BYTES"]),
                    "parameters": _PARAMETERS,
                    "data": Schema(type=OpenAPIType.ARRAY, items=Schema(type=OpenAPIType.STRING)),
                },
            ),
        ),
        "outputs": Schema(
            type=OpenAPIType.ARRAY,
            items=Schema(
                type=OpenAPIType.OBJECT,
                required=["name"],
                properties={"name": Schema(type=OpenAPIType.STRING), "parameters": _PARAMETERS},
            ),
        ),
    },
)


_BINARY = OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY))


@dataclass
class InferOperation(Operation):
    """The body is read raw (it may carry binary tensor data), so Litestar cannot derive its
    schema from a parameter: it is declared here."""

    def __post_init__(self) -> None:
        self.request_body = RequestBody(
            required=True,
            description="OIP inference request: JSON, or with `Inference-Header-Content-Length` "
            "a JSON header of that many bytes followed by binary tensor data",
            content={
                "application/json": OpenAPIMediaType(schema=_INFER_REQUEST),
                "application/octet-stream": _BINARY,
            },
        )
        ok = (self.responses or {}).get("200")
        if isinstance(ok, OpenAPIResponse) and ok.content is not None:
            ok.content["application/octet-stream"] = _BINARY


def _oip(handler: Callable[..., Response[Any]]) -> Callable[..., Response[Any]]:
    """Wrap an app exception handler: same status and headers, the body in OIP form."""

    def handle(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
        response = handler(request, exc)
        content = response.content
        body: dict[str, Any]
        if isinstance(content, dict) and "detail" in content:
            field = content.get("field")
            body = {"error": f"{content['detail']} ({field})" if field else str(content["detail"])}
            body.update((k, v) for k, v in content.items()
                        if k not in {"status_code", "error", "detail", "field"})  # fmt: skip
        else:
            body = {"error": str(content)}
            if (request_id := current_request_id()) is not None:
                body["request_id"] = request_id
        return Response(body, status_code=response.status_code, headers=dict(response.headers))

    return handle


def _not_loaded(request: Request[Any, Any, Any], exc: VersionNotLoaded) -> Response[Any]:
    return _oip(EXCEPTION_HANDLERS[HTTPException])(request, NotFoundException(str(exc)))


OIP_EXCEPTION_HANDLERS: dict[Any, Any] = {
    **{key: _oip(handler) for key, handler in EXCEPTION_HANDLERS.items()},
    VersionNotLoaded: _not_loaded,
}

PREFIX = "/v2"


def is_v2_path(scope: Any) -> bool:
    path: str = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root):  # mounted under a prefix: the path includes it
        path = path[len(root) :]
    return path == PREFIX or path.startswith(PREFIX + "/")


def _said_plainly(request: Request[Any, Any, Any], exc: Exception) -> Exception:
    """The router's 404 and 405 say only "Not Found" and "Method Not Allowed"."""
    if isinstance(exc, MethodNotAllowedException):
        allowed = (exc.headers or {}).get("allow", "")
        return MethodNotAllowedException(
            f"method {request.method} is not allowed here; allowed: {allowed}",
            headers=exc.headers,
        )
    if isinstance(exc, NotFoundException) and exc.detail == "Not Found":
        return NotFoundException("no Open Inference Protocol route has this path")
    return exc


def oip_on_v2_paths(handlers: dict[Any, Any]) -> dict[Any, Any]:
    """The app-level handlers, answering in OIP form on a /v2 path.

    Litestar answers a path no route matches (404) or a method a route lacks (405) with the
    app's handlers, not the router's: it cannot tell which router would have served it. A
    /v2 client still expects the OIP form there; everything else keeps the app's `ErrorBody`."""

    def for_path(handler: Callable[..., Response[Any]]) -> Callable[..., Response[Any]]:
        oip = _oip(handler)

        def handle(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
            if not is_v2_path(request.scope):
                return handler(request, exc)
            return oip(request, _said_plainly(request, exc))

        return handle

    return {key: for_path(handler) for key, handler in handlers.items()}


def _runtime(state: State) -> Runtime:
    runtime: Runtime = state.runtime
    return runtime


def _check_name(runtime: Runtime, name: str) -> None:
    if name != runtime.settings.registry.model_name:
        raise VersionNotLoaded(f"unknown model {name!r}; this server serves "
                               f"{runtime.settings.registry.model_name!r}")  # fmt: skip


def _version(version: str) -> int:
    if not version.isascii() or not version.isdigit() or len(version) > 18:
        raise VersionNotLoaded(f"version {version!r} is not loaded")
    return int(version)


def _loaded(runtime: Runtime) -> list[tuple[str, Slot]]:
    snapshot = runtime.manager.router.snapshot
    return [
        (role, slot)
        for role, slot in (("live", snapshot.live), ("candidate", snapshot.candidate))
        if slot is not None and slot.model is not None and slot.version is not None
    ]


def _metadata(
    runtime: Runtime, role: str, slot: Slot, loaded: list[tuple[str, Slot]]
) -> ModelMetadata:
    parameters = {"version": str(slot.version), "slot": slot.name, "role": role,
                  "labels": list(LABELS)}  # fmt: skip
    return ModelMetadata(
        runtime.settings.registry.model_name,
        [str(s.version) for _, s in loaded],
        PLATFORM,
        INPUTS,
        OUTPUTS,
        parameters,
    )


@get("/", summary="Server metadata")
async def server_metadata() -> ServerMetadata:
    return ServerMetadata(SERVER_NAME, SERVER_VERSION, EXTENSIONS)


@get("/health/live", summary="Server liveness")
async def server_live() -> LiveBody:
    return LiveBody(live=True)


@get(
    "/health/ready",
    summary="Server readiness: 200 only while a live model serves",
    responses=NOT_READY,
)
async def server_ready(state: State) -> Response[ReadyBody]:
    runtime = _runtime(state)
    if runtime.readiness().ready and runtime.manager.live is not None:
        return Response(ReadyBody(ready=True))
    return Response(ReadyBody(ready=False), status_code=503, headers=RETRY_AFTER)


@get("/models/{name:str}", summary="Metadata of the live version", responses=OIP_ERRORS)
async def model_metadata(name: str, state: State) -> ModelMetadata:
    runtime = _runtime(state)
    _check_name(runtime, name)
    loaded = _loaded(runtime)
    for role, slot in loaded:
        if role == "live":
            return _metadata(runtime, role, slot, loaded)
    raise NoLiveModel("no model version is live yet")


@get(
    "/models/{name:str}/ready",
    summary="Model readiness (a live version)",
    responses={404: OIP_ERRORS[404], **NOT_READY},
)
async def model_ready(name: str, state: State) -> Response[ReadyBody]:
    runtime = _runtime(state)
    _check_name(runtime, name)
    if any(role == "live" for role, _ in _loaded(runtime)):
        return Response(ReadyBody(ready=True))
    return Response(ReadyBody(ready=False), status_code=503, headers=RETRY_AFTER)


def _loaded_version(
    runtime: Runtime, name: str, version: str
) -> tuple[str, Slot, list[tuple[str, Slot]]]:
    _check_name(runtime, name)
    wanted = _version(version)
    loaded = _loaded(runtime)
    for role, slot in loaded:
        if slot.version == wanted:
            return role, slot, loaded
    raise VersionNotLoaded(f"version {version} is not loaded")


@get(
    "/models/{name:str}/versions/{version:str}",
    summary="Metadata of a loaded version (live or candidate)",
    responses=OIP_ERRORS,
)
async def version_metadata(name: str, version: str, state: State) -> ModelMetadata:
    runtime = _runtime(state)
    role, slot, loaded = _loaded_version(runtime, name, version)
    return _metadata(runtime, role, slot, loaded)


@get(
    "/models/{name:str}/versions/{version:str}/ready",
    summary="Readiness of a loaded version",
    responses=OIP_ERRORS,
)
async def version_ready(name: str, version: str, state: State) -> ReadyBody:
    _loaded_version(_runtime(state), name, version)
    return ReadyBody(ready=True)


def _decode(runtime: Runtime, data: bytes, request: Request[Any, Any, Any]) -> DecodedRequest:
    settings = runtime.settings
    decoded = decode_request(
        data,
        request.headers.get(HEADER_LENGTH),
        Limits(settings.limits.max_batch, settings.limits.max_text_chars),
    )
    _check_texts(decoded.texts, settings.limits.max_text_chars, INPUT_NAME)
    _check_batch_chars(decoded.texts, settings.limits.max_batch_chars)
    return decoded


async def _timed(runtime: Runtime, call: Awaitable[Prediction]) -> Prediction:
    try:
        async with asyncio.timeout(runtime.settings.limits.request_timeout_s):
            return await call
    except TimeoutError as exc:
        raise RequestTimedOut(
            f"prediction took longer than {runtime.settings.limits.request_timeout_s}s"
        ) from exc


def _answer(
    runtime: Runtime, route: str, decoded: DecodedRequest, prediction: Prediction
) -> Response[bytes]:
    _log_request(runtime, route, len(decoded.texts), prediction)
    body, header_length = encode_response(
        decoded,
        prediction.probabilities,
        model_name=runtime.settings.registry.model_name,
        version=prediction.version,
        parameters={"slot": prediction.slot},
    )
    headers = _headers(prediction)
    if header_length is None:
        return Response(body, media_type=MediaType.JSON, headers=headers)
    headers["Inference-Header-Content-Length"] = str(header_length)
    return Response(body, media_type="application/octet-stream", headers=headers)


@post(
    "/models/{name:str}/infer",
    status_code=200,
    media_type=MediaType.JSON,
    summary="Inference on the live version (or the canary's share)",
    responses=INFER_RESPONSES,
    operation_class=InferOperation,
)
async def infer(name: str, request: Request[Any, Any, Any], state: State) -> Response[bytes]:
    runtime = _runtime(state)
    _check_name(runtime, name)
    decoded = _decode(runtime, await request.body(), request)
    key = _client_key(request) or decoded.id
    prediction = await _timed(runtime, runtime.predictor.predict(decoded.texts, key))
    return _answer(runtime, "/v2/models/{name}/infer", decoded, prediction)


@post(
    "/models/{name:str}/versions/{version:str}/infer",
    status_code=200,
    media_type=MediaType.JSON,
    summary="Inference pinned to a loaded version; 404 once it is no longer loaded",
    responses=INFER_RESPONSES,
    operation_class=InferOperation,
)
async def infer_version(
    name: str, version: str, request: Request[Any, Any, Any], state: State
) -> Response[bytes]:
    runtime = _runtime(state)
    _check_name(runtime, name)
    wanted = _version(version)
    decoded = _decode(runtime, await request.body(), request)
    prediction = await _timed(runtime, runtime.predictor.predict_on(wanted, decoded.texts))
    return _answer(runtime, "/v2/models/{name}/versions/{version}/infer", decoded, prediction)


v2_router = Router(
    path="/v2",
    route_handlers=[
        server_metadata,
        server_live,
        server_ready,
        model_metadata,
        model_ready,
        version_metadata,
        version_ready,
        infer,
        infer_version,
    ],
    exception_handlers=OIP_EXCEPTION_HANDLERS,
    tags=["open inference protocol"],
)
