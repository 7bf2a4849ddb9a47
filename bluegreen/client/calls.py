"""Every call of the bluegreen API as data: what to send (`Call`) and how to read the answer.

Both transports (`Client`, `AsyncClient`) only send a `Call` and hand the response to its
`parse`; nothing about a route lives anywhere else, so the sync and async clients cannot
drift apart.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import attrs
import httpx
import msgspec

from bluegreen.client import models
from bluegreen.client.errors import REQUEST_ID_HEADER, UnexpectedResponse, error_from

T = TypeVar("T")

JSON = "application/json"
OIP_HEADER_LENGTH = "Inference-Header-Content-Length"
OIP_INPUT = "text"
OIP_PROBABILITIES = "probabilities"
OIP_LABEL = "label"
_LENGTH = struct.Struct("<I")


@attrs.frozen
class Call(Generic[T]):
    """One request and the function that turns its response into a `T` (or raises)."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    body: bytes | None = None
    headers: Mapping[str, str] = attrs.field(factory=dict)
    admin: bool = False
    """Sends the bearer token and the actor."""
    slow: bool = False
    """May load and smoke-test a version: gets the client's longer deploy timeout."""


@attrs.frozen(kw_only=True)
class Endpoint:
    """What every request of one client carries: its token, actor and model name."""

    token: str | None = attrs.field(default=None, repr=False)
    actor: str | None = None
    model_name: str = "ensemble-sentiment-model"

    def headers(self, call: Call[Any], request_id: str | None) -> dict[str, str]:
        headers = {"Accept": JSON, **call.headers}
        if request_id is not None:
            headers[REQUEST_ID_HEADER] = request_id
        if call.admin:
            if self.token:
                headers["Authorization"] = f"Bearer {self.token}"
            if self.actor:
                headers["X-Admin-Actor"] = self.actor
        return headers

    def model_path(self, version: int | None = None) -> str:
        path = f"/v2/models/{quote(self.model_name, safe='')}"
        return path if version is None else f"{path}/versions/{int(version)}"


def _json(value: object) -> bytes:
    return msgspec.json.encode(value)


def _request_id(response: httpx.Response) -> str | None:
    value: str | None = response.headers.get(REQUEST_ID_HEADER)
    return value


def _decode(response: httpx.Response, kind: type[T]) -> T:
    try:
        return msgspec.json.decode(response.content, type=kind)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise UnexpectedResponse(
            f"{response.request.method} {response.request.url.path} answered "
            f"{response.status_code} with a body this client cannot read: {exc}",
            status_code=response.status_code,
            request_id=_request_id(response),
        ) from exc


def expect(kind: type[T]) -> Callable[[httpx.Response], T]:
    """Parse a success into `kind`; raise the matching `ApiError` for anything else."""

    def parse(response: httpx.Response) -> T:
        if not response.is_success:
            raise error_from(response)
        return _decode(response, kind)

    return parse


def _flag(*, false_on: tuple[int, ...]) -> Callable[[httpx.Response], bool]:
    """A yes/no probe: 200 is True, the statuses in `false_on` False, anything else raises."""

    def parse(response: httpx.Response) -> bool:
        if response.status_code == 200:
            return True
        if response.status_code in false_on:
            return False
        raise error_from(response)

    return parse


def _health(response: httpx.Response) -> models.Health:
    # /readyz answers 503 with a body that is the answer, not an error
    if response.status_code in (200, 503):
        return _decode(response, models.Health)
    raise error_from(response)


# --- predictions ---------------------------------------------------------------------------
def predict(text: str) -> Call[models.Prediction]:
    return Call("POST", "/predict", expect(models.Prediction), _json({"text": text}),
                {"Content-Type": JSON})  # fmt: skip


def predict_batch(texts: Sequence[str]) -> Call[models.BatchPrediction]:
    return Call("POST", "/predict/batch", expect(models.BatchPrediction),
                _json({"texts": list(texts)}), {"Content-Type": JSON})  # fmt: skip


def health() -> Call[models.Health]:
    return Call("GET", "/healthz", expect(models.Health))


def ready() -> Call[models.Health]:
    return Call("GET", "/readyz", _health)


# --- Open Inference Protocol (V2) ----------------------------------------------------------
def server_metadata() -> Call[models.ServerMetadata]:
    return Call("GET", "/v2", expect(models.ServerMetadata))


def server_live() -> Call[bool]:
    return Call("GET", "/v2/health/live", _flag(false_on=(503,)))


def server_ready() -> Call[bool]:
    return Call("GET", "/v2/health/ready", _flag(false_on=(503,)))


def model_metadata(endpoint: Endpoint, version: int | None) -> Call[models.ModelMetadata]:
    return Call("GET", endpoint.model_path(version), expect(models.ModelMetadata))


def model_ready(endpoint: Endpoint, version: int | None) -> Call[bool]:
    # a version that is not loaded is 404: for a readiness probe that is "not ready"
    false_on = (503,) if version is None else (503, 404)
    return Call("GET", f"{endpoint.model_path(version)}/ready", _flag(false_on=false_on))


class _Tensor(msgspec.Struct):
    name: str
    datatype: str
    shape: list[int]
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class _InferBody(msgspec.Struct):
    model_name: str
    model_version: str
    outputs: list[_Tensor]
    id: str | None = None
    parameters: dict[str, Any] | None = None


def encode_bytes(items: Sequence[str]) -> bytes:
    """BYTES elements in the binary tensor data form: a 4-byte little-endian length each."""
    parts: list[bytes] = []
    for item in items:
        raw = item.encode()
        parts += (_LENGTH.pack(len(raw)), raw)
    return b"".join(parts)


def decode_bytes(raw: bytes, count: int) -> list[str]:
    items: list[str] = []
    offset = 0
    while offset < len(raw):
        (length,) = _LENGTH.unpack_from(raw, offset)
        offset += _LENGTH.size
        items.append(raw[offset : offset + length].decode())
        offset += length
    if len(items) != count:
        raise ValueError(f"expected {count} BYTES elements, got {len(items)}")
    return items


def infer(
    endpoint: Endpoint,
    texts: Sequence[str],
    *,
    version: int | None,
    id: str | None,
    binary: bool,
) -> Call[models.Inference]:
    """`POST .../infer`: JSON tensor data, or with `binary` the binary tensor data extension
    for the input and both outputs."""
    tensor: dict[str, Any] = {"name": OIP_INPUT, "shape": [len(texts)], "datatype": "BYTES"}
    body: dict[str, Any] = {"inputs": [tensor]}
    if id is not None:
        body["id"] = id
    headers = {"Content-Type": JSON}
    if binary:
        blob = encode_bytes(texts)
        tensor["parameters"] = {"binary_data_size": len(blob)}
        body["outputs"] = [{"name": name, "parameters": {"binary_data": True}}
                           for name in (OIP_PROBABILITIES, OIP_LABEL)]  # fmt: skip
        header = _json(body)
        headers = {"Content-Type": "application/octet-stream",
                   OIP_HEADER_LENGTH: str(len(header))}  # fmt: skip
        content = header + blob
    else:
        tensor["data"] = list(texts)
        content = _json(body)
    path = f"{endpoint.model_path(version)}/infer"
    return Call("POST", path, _parse_inference, content, headers)


def _parse_inference(response: httpx.Response) -> models.Inference:
    if not response.is_success:
        raise error_from(response)
    content = response.content
    length = response.headers.get(OIP_HEADER_LENGTH)
    header, binary = (content, b"") if length is None else (content[: int(length)],
                                                           content[int(length) :])  # fmt: skip
    body = msgspec.json.decode(header, type=_InferBody) if header else None
    try:
        if body is None:
            raise ValueError("empty body")
        tensors = _output_data(body.outputs, binary)
        labels = [str(x) for x in tensors[OIP_LABEL]]
        flat = [float(x) for x in tensors[OIP_PROBABILITIES]]
        shape = next(t.shape for t in body.outputs if t.name == OIP_PROBABILITIES)
        width = shape[1]
        rows = [flat[i : i + width] for i in range(0, len(flat), width)]
        return models.Inference(
            model_name=body.model_name,
            model_version=int(body.model_version),
            id=body.id,
            slot=(body.parameters or {}).get("slot"),
            labels=labels,
            probabilities=rows,
        )
    except (KeyError, ValueError, IndexError, StopIteration, struct.error) as exc:
        raise UnexpectedResponse(
            f"unreadable inference response: {exc}",
            status_code=response.status_code,
            request_id=_request_id(response),
        ) from exc


def _output_data(outputs: Sequence[_Tensor], binary: bytes) -> dict[str, list[Any]]:
    data: dict[str, list[Any]] = {}
    offset = 0
    for tensor in outputs:
        size = (tensor.parameters or {}).get("binary_data_size")
        if size is None:
            data[tensor.name] = list(tensor.data or [])
            continue
        raw = binary[offset : offset + int(size)]
        offset += int(size)
        count = 1
        for dim in tensor.shape:
            count *= dim
        if tensor.datatype == "FP32":
            data[tensor.name] = list(struct.unpack(f"<{count}f", raw))
        elif tensor.datatype == "BYTES":
            data[tensor.name] = decode_bytes(raw, count)
        else:
            raise ValueError(f"unexpected datatype {tensor.datatype}")
    return data


# --- /admin --------------------------------------------------------------------------------
def _admin(method: str, path: str, parse: Callable[[httpx.Response], T],
           body: object = None, *, slow: bool = False) -> Call[T]:  # fmt: skip
    if body is None:
        return Call(method, f"/admin{path}", parse, admin=True, slow=slow)
    return Call(method, f"/admin{path}", parse, _json(body), {"Content-Type": JSON},
                admin=True, slow=slow)  # fmt: skip


def slots() -> Call[models.Slots]:
    return _admin("GET", "/slots", expect(models.Slots))


def versions() -> Call[models.Versions]:
    return _admin("GET", "/versions", expect(models.Versions))


def promote(version: int | None) -> Call[models.PromoteResult]:
    body = None if version is None else {"version": int(version)}
    return _admin("POST", "/promote", expect(models.PromoteResult), body, slow=True)


def rollback() -> Call[models.RollbackResult]:
    return _admin("POST", "/rollback", expect(models.RollbackResult), slow=True)


def reload() -> Call[models.ReloadResult]:
    return _admin("POST", "/reload", expect(models.ReloadResult), slow=True)


def set_canary(percent: float) -> Call[models.CanaryResult]:
    return _admin("PUT", "/canary", expect(models.CanaryResult), {"percent": float(percent)})


def abort_canary() -> Call[models.AbortResult]:
    return _admin("POST", "/canary/abort", expect(models.AbortResult), slow=True)


def reject(version: int, reason: str) -> Call[models.RejectResult]:
    return _admin("POST", "/reject", expect(models.RejectResult),
                  {"version": int(version), "reason": reason}, slow=True)  # fmt: skip


def unreject(version: int) -> Call[models.UnrejectResult]:
    return _admin("POST", "/unreject", expect(models.UnrejectResult), {"version": int(version)})


def to_json(value: object) -> str:
    """A result as indented JSON (what `bluegreen ... --json` prints)."""
    return json.dumps(msgspec.to_builtins(value), ensure_ascii=False, indent=2)
