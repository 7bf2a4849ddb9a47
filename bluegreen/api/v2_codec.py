"""Open Inference Protocol (V2) tensors: decode an infer request, encode its response.

JSON tensor data and the binary tensor data extension are both accepted: with the
`Inference-Header-Content-Length` header the body is a JSON header followed by raw tensor
bytes, in the order of the inputs that carry `parameters.binary_data_size`. A BYTES element in
binary form is a 4-byte little-endian length and that many bytes. Every count and length is
checked against the body and the limits before anything is allocated from it, so a request
that lies about its sizes costs a 400, not memory. Pure functions: no HTTP, no model.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import attrs
import msgspec
import numpy as np
from numpy.typing import NDArray

from bluegreen.api.errors import InvalidInput
from bluegreen.serving.contract import LABELS

INPUT_NAME = "text"
OUTPUT_PROBABILITIES = "probabilities"
OUTPUT_LABEL = "label"
OUTPUT_NAMES = (OUTPUT_PROBABILITIES, OUTPUT_LABEL)
HEADER_LENGTH = "inference-header-content-length"
_LENGTH = struct.Struct("<I")
UTF8_MAX_BYTES_PER_CHAR = 4

Parameter = bool | int | float | str


class RequestInput(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Parameter] | None = None
    data: list[Any] | None = None


class RequestOutput(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    parameters: dict[str, Parameter] | None = None


class InferRequest(msgspec.Struct, forbid_unknown_fields=True):
    inputs: list[RequestInput]
    id: str | None = None
    parameters: dict[str, Parameter] | None = None
    outputs: list[RequestOutput] | None = None


_decoder = msgspec.json.Decoder(InferRequest)


@attrs.frozen
class Limits:
    max_batch: int
    max_text_chars: int


@attrs.frozen
class DecodedRequest:
    texts: list[str]
    id: str | None
    outputs: tuple[tuple[str, bool], ...]
    """(output name, send as binary) in the order the response lists them."""


def decode_request(body: bytes, header_length: str | None, limits: Limits) -> DecodedRequest:
    """Parse and bound an infer request body; raise `InvalidInput` (400) on anything wrong."""
    header, binary = _split(body, header_length)
    try:
        request = _decoder.decode(header)
    except msgspec.ValidationError as exc:
        raise InvalidInput(f"invalid inference request: {exc}") from None
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        raise InvalidInput("inference request header is not valid JSON") from None
    text_input = _only_text_input(request.inputs)
    texts = _decode_texts(text_input, binary, limits)
    return DecodedRequest(texts, request.id, _requested_outputs(request))


def _split(body: bytes, header_length: str | None) -> tuple[bytes, memoryview]:
    if header_length is None:
        return body, memoryview(b"")
    header_length = header_length.strip()
    if not header_length.isascii() or not header_length.isdigit():
        raise InvalidInput("Inference-Header-Content-Length must be a non-negative integer")
    size = int(header_length)
    if size == 0 or size > len(body):
        raise InvalidInput(
            f"Inference-Header-Content-Length is {size}, the body has {len(body)} bytes"
        )
    view = memoryview(body)
    return bytes(view[:size]), view[size:]


def _only_text_input(inputs: Sequence[RequestInput]) -> RequestInput:
    names = [tensor.name for tensor in inputs]
    if names != [INPUT_NAME]:
        raise InvalidInput(f"expected exactly one input named {INPUT_NAME!r}, got {names}")
    return inputs[0]


def _decode_texts(tensor: RequestInput, binary: memoryview, limits: Limits) -> list[str]:
    if tensor.datatype != "BYTES":
        raise InvalidInput(f"input {INPUT_NAME!r} must have datatype BYTES, got {tensor.datatype}")
    if len(tensor.shape) != 1 or tensor.shape[0] < 1:
        raise InvalidInput(f"input {INPUT_NAME!r} must have shape [N] with N >= 1, got "
                           f"{tensor.shape}")  # fmt: skip
    count = tensor.shape[0]
    if count > limits.max_batch:
        raise InvalidInput(f"at most {limits.max_batch} texts per request, got {count}")
    binary_size = (tensor.parameters or {}).get("binary_data_size")
    if binary_size is None:
        if len(binary):
            raise InvalidInput("binary data follows the header but no input declares "
                               "parameters.binary_data_size")  # fmt: skip
        return _json_texts(tensor.data, count)
    if tensor.data is not None:
        raise InvalidInput(f"input {INPUT_NAME!r} has both data and binary_data_size")
    if isinstance(binary_size, bool) or not isinstance(binary_size, int):
        raise InvalidInput("binary_data_size must be an integer")
    if binary_size != len(binary):
        raise InvalidInput(f"binary_data_size is {binary_size}, {len(binary)} bytes follow "
                           "the header")  # fmt: skip
    return _binary_texts(binary, count, limits.max_text_chars * UTF8_MAX_BYTES_PER_CHAR)


def _json_texts(data: list[Any] | None, count: int) -> list[str]:
    if data is None:
        raise InvalidInput(f"input {INPUT_NAME!r} has neither data nor binary_data_size")
    if len(data) != count:
        raise InvalidInput(f"input {INPUT_NAME!r} has shape [{count}] but {len(data)} elements")
    if not all(type(item) is str for item in data):
        raise InvalidInput(f"input {INPUT_NAME!r} elements must be strings")
    return data


def _binary_texts(data: memoryview, count: int, max_element_bytes: int) -> list[str]:
    texts: list[str] = []
    offset, end = 0, len(data)
    while offset < end:
        if len(texts) == count:
            raise InvalidInput(f"binary data holds more than the {count} elements of the shape")
        if end - offset < _LENGTH.size:
            raise InvalidInput("binary data ends inside an element's length prefix")
        (length,) = _LENGTH.unpack_from(data, offset)
        offset += _LENGTH.size
        if length > max_element_bytes:
            raise InvalidInput(f"element {len(texts)} is {length} bytes, over the "
                               f"{max_element_bytes} a text may take")  # fmt: skip
        if length > end - offset:
            raise InvalidInput(f"element {len(texts)} claims {length} bytes, "
                               f"{end - offset} are left")  # fmt: skip
        try:
            texts.append(str(data[offset : offset + length], "utf-8"))
        except UnicodeDecodeError:
            raise InvalidInput(f"element {len(texts)} is not valid UTF-8") from None
        offset += length
    if len(texts) != count:
        raise InvalidInput(f"input {INPUT_NAME!r} has shape [{count}] but binary data holds "
                           f"{len(texts)} elements")  # fmt: skip
    return texts


def _flag(parameters: dict[str, Parameter] | None, name: str) -> bool:
    value = (parameters or {}).get(name, False)
    if not isinstance(value, bool):
        raise InvalidInput(f"parameter {name!r} must be a boolean")
    return value


def _requested_outputs(request: InferRequest) -> tuple[tuple[str, bool], ...]:
    binary_default = _flag(request.parameters, "binary_data_output")
    if not request.outputs:
        return tuple((name, binary_default) for name in OUTPUT_NAMES)
    seen: list[tuple[str, bool]] = []
    for output in request.outputs:
        if output.name not in OUTPUT_NAMES:
            raise InvalidInput(f"unknown output {output.name!r}; outputs are {list(OUTPUT_NAMES)}")
        if any(output.name == name for name, _ in seen):
            raise InvalidInput(f"output {output.name!r} requested twice")
        params = output.parameters or {}
        if params.get("classification"):
            raise InvalidInput("the classification extension is not supported")
        binary = _flag(params, "binary_data") if "binary_data" in params else binary_default
        seen.append((output.name, binary))
    return tuple(seen)


def encode_bytes(items: Sequence[str]) -> bytes:
    """BYTES elements in the binary form: each a 4-byte little-endian length, then UTF-8."""
    parts: list[bytes] = []
    for item in items:
        raw = item.encode()
        parts.append(_LENGTH.pack(len(raw)))
        parts.append(raw)
    return b"".join(parts)


def encode_response(
    request: DecodedRequest,
    probabilities: NDArray[np.float64],
    *,
    model_name: str,
    version: int,
    parameters: dict[str, Parameter],
) -> tuple[bytes, int | None]:
    """The response body and, when any output is binary, the JSON header's length."""
    probs32 = np.ascontiguousarray(probabilities, dtype="<f4")
    labels = [LABELS[i] for i in probabilities.argmax(axis=1).tolist()]
    n = len(labels)
    outputs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name, binary in request.outputs:
        if name == OUTPUT_PROBABILITIES:
            tensor: dict[str, Any] = {"name": name, "datatype": "FP32", "shape": [n, len(LABELS)]}
            raw = probs32.tobytes() if binary else None
            data: list[Any] | None = None if binary else probs32.ravel().tolist()
        else:
            tensor = {"name": name, "datatype": "BYTES", "shape": [n]}
            raw = encode_bytes(labels) if binary else None
            data = None if binary else labels
        if raw is not None:
            tensor["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            tensor["data"] = data
        outputs.append(tensor)
    body: dict[str, Any] = {"model_name": model_name, "model_version": str(version)}
    if request.id is not None:
        body["id"] = request.id
    body["parameters"] = parameters
    body["outputs"] = outputs
    header = msgspec.json.encode(body)
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)
