"""OIP V2 tensors: JSON and binary requests decode to texts, responses round-trip, and every
malformed or oversized request is a 400 that names the problem."""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
import pytest

from bluegreen.api.errors import InvalidInput
from bluegreen.api.v2_codec import (
    DecodedRequest,
    Limits,
    decode_request,
    encode_bytes,
    encode_response,
)
from bluegreen.serving.contract import LABELS

LIMITS = Limits(max_batch=4, max_text_chars=10)
TEXTS = ["최고의 영화", "시간 낭비", ""]


def json_request(texts: list[Any], **extra: Any) -> bytes:
    tensor = {"name": "text", "shape": [len(texts)], "datatype": "BYTES", "data": texts}
    return json.dumps({"inputs": [tensor], **extra}).encode()


def binary_request(
    raw: bytes, shape: list[int], *, trailing: bytes = b"", size: object = None, **extra: Any
) -> tuple[bytes, str]:
    declared = len(raw) if size is None else size
    tensor = {"name": "text", "shape": shape, "datatype": "BYTES",
              "parameters": {"binary_data_size": declared}, **extra}  # fmt: skip
    header = json.dumps({"inputs": [tensor]}).encode()
    return header + raw + trailing, str(len(header))


def decode_binary_response(body: bytes, header_length: int) -> dict[str, Any]:
    """An independent reader of the extension, as a client would read it."""
    header = json.loads(body[:header_length])
    offset = header_length
    for output in header["outputs"]:
        size = output.get("parameters", {}).get("binary_data_size")
        if size is None:
            continue
        chunk = body[offset : offset + size]
        offset += size
        if output["datatype"] == "FP32":
            output["data"] = np.frombuffer(chunk, dtype="<f4").tolist()
        else:
            items, at = [], 0
            while at < len(chunk):
                (n,) = struct.unpack_from("<I", chunk, at)
                items.append(chunk[at + 4 : at + 4 + n].decode())
                at += 4 + n
            output["data"] = items
    assert offset == len(body)
    return dict(header)


def test_json_request_decodes_texts_id_and_defaults_to_all_outputs_as_json() -> None:
    decoded = decode_request(json_request(TEXTS, id="req-1"), None, LIMITS)
    assert decoded.texts == TEXTS
    assert decoded.id == "req-1"
    assert decoded.outputs == (("probabilities", False), ("label", False))


def test_binary_request_round_trips_utf8_and_empty_elements() -> None:
    body, length = binary_request(encode_bytes(TEXTS), [3])
    assert decode_request(body, length, LIMITS).texts == TEXTS


def test_binary_data_output_and_per_output_binary_data() -> None:
    params = {"parameters": {"binary_data_output": True}}
    assert decode_request(json_request(["a"], **params), None, LIMITS).outputs == (
        ("probabilities", True),
        ("label", True),
    )
    outputs = [{"name": "label", "parameters": {"binary_data": False}}, {"name": "probabilities"}]
    decoded = decode_request(json_request(["a"], outputs=outputs, **params), None, LIMITS)
    assert decoded.outputs == (("label", False), ("probabilities", True))


def probs(n: int) -> np.ndarray[Any, Any]:
    rng = np.random.default_rng(n)
    table = rng.random((n, len(LABELS)))
    return np.asarray(table / table.sum(axis=1, keepdims=True), dtype=np.float64)


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_response_round_trips_probabilities_and_labels(binary: bool) -> None:
    table = probs(3)
    request = DecodedRequest(TEXTS, "r", (("probabilities", binary), ("label", binary)))
    body, header_length = encode_response(
        request, table, model_name="m", version=7, parameters={"slot": "blue"}
    )
    if binary:
        assert header_length is not None
        response = decode_binary_response(body, header_length)
    else:
        assert header_length is None
        response = json.loads(body)
    assert response["model_name"] == "m"
    assert response["model_version"] == "7"
    assert response["id"] == "r"
    assert response["parameters"] == {"slot": "blue"}
    by_name = {o["name"]: o for o in response["outputs"]}
    assert [o["name"] for o in response["outputs"]] == ["probabilities", "label"]
    assert by_name["probabilities"]["datatype"] == "FP32"
    assert by_name["probabilities"]["shape"] == [3, 3]
    got = np.array(by_name["probabilities"]["data"]).reshape(3, 3)
    np.testing.assert_allclose(got, table, rtol=1e-6)
    assert by_name["label"]["shape"] == [3]
    assert by_name["label"]["data"] == [LABELS[i] for i in table.argmax(axis=1)]


def test_mixed_response_puts_only_binary_outputs_after_the_header() -> None:
    request = DecodedRequest(["a"], None, (("label", True), ("probabilities", False)))
    body, header_length = encode_response(
        request, probs(1), model_name="m", version=1, parameters={}
    )
    assert header_length is not None
    response = decode_binary_response(body, header_length)
    assert "id" not in response
    assert [o["name"] for o in response["outputs"]] == ["label", "probabilities"]
    assert "data" in json.loads(body[:header_length])["outputs"][1]
    assert len(body) - header_length == 4 + len(response["outputs"][0]["data"][0].encode())


def too_many_prefixed() -> tuple[bytes, str]:
    return binary_request(encode_bytes(["a", "b"]), [1])


BAD: dict[str, tuple[bytes, str | None, str]] = {
    "not json": (b"{nope", None, "not valid JSON"),
    "not utf-8 json": (b'{"inputs": [{"name": "\xff"}]}', None, "not valid JSON"),
    "deeply nested": (
        json_request(["a"]).replace(b'["a"]', b"[" * 100_000),
        None,
        "not valid JSON",
    ),
    "unknown field": (json_request(["a"], extra=1), None, "invalid inference request"),
    "no inputs": (b'{"inputs": []}', None, "exactly one input named 'text'"),
    "wrong input name": (
        json.dumps(
            {"inputs": [{"name": "x", "shape": [1], "datatype": "BYTES", "data": ["a"]}]}
        ).encode(),
        None,
        "exactly one input named 'text'",
    ),
    "two inputs": (
        json.dumps(
            {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["a"]}] * 2}
        ).encode(),
        None,
        "exactly one input",
    ),
    "wrong datatype": (json_request(["a"]).replace(b"BYTES", b"FP32"), None, "datatype BYTES"),
    "2-d shape": (json_request(["a"]).replace(b"[1]", b"[1, 1]"), None, "shape [N]"),
    "zero shape": (json_request([]), None, "N >= 1"),
    "negative shape": (json_request(["a"]).replace(b"[1]", b"[-1]"), None, "N >= 1"),
    "over max_batch": (json_request(["a"] * 5), None, "at most 4 texts"),
    "shape vs data": (json_request(["a", "b"]).replace(b"[2]", b"[3]"), None, "but 2 elements"),
    "non-string data": (json_request([1]), None, "must be strings"),
    "nested data": (json_request([["a"]]), None, "must be strings"),
    "no data": (
        json.dumps({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES"}]}).encode(),
        None,
        "neither data",
    ),
    "unknown output": (json_request(["a"], outputs=[{"name": "x"}]), None, "unknown output"),
    "output twice": (json_request(["a"], outputs=[{"name": "label"}] * 2), None, "twice"),
    "classification": (
        json_request(["a"], outputs=[{"name": "label", "parameters": {"classification": 2}}]),
        None,
        "classification",
    ),
    "non-bool binary flag": (
        json_request(["a"], parameters={"binary_data_output": 1}),
        None,
        "must be a boolean",
    ),
    "header length not a number": (json_request(["a"]), "12a", "non-negative integer"),
    "negative header length": (json_request(["a"]), "-1", "non-negative integer"),
    "zero header length": (json_request(["a"]), "0", "the body has"),
    "header length past the body": (json_request(["a"]), "100000", "the body has"),
    "binary without declaration": (
        json_request(["a"]) + b"xx",
        str(len(json_request(["a"]))),
        "no input declares",
    ),
    "binary size vs bytes": (
        *binary_request(encode_bytes(["a"]), [1], trailing=b"z"),
        "bytes follow",
    ),
    "data and binary": (*binary_request(encode_bytes(["a"]), [1], data=["a"]), "both data"),
    "bool binary size": (
        *binary_request(encode_bytes(["a"]), [1], size=True),
        "must be an integer",
    ),
    "more elements than shape": (*too_many_prefixed(), "more than the 1 elements"),
    "fewer elements than shape": (*binary_request(encode_bytes(["a"]), [2]), "holds 1 elements"),
    "truncated prefix": (*binary_request(b"\x01\x00", [1]), "inside an element's length"),
    "length past the data": (*binary_request(struct.pack("<I", 30) + b"abc", [1]), "3 are left"),
    "element over max bytes": (
        *binary_request(struct.pack("<I", 41) + b"a" * 41, [1]),
        "over the 40",
    ),
    "element not utf-8": (*binary_request(struct.pack("<I", 2) + b"\xff\xfe", [1]), "UTF-8"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_requests_are_400_with_a_reason(case: str) -> None:
    body, header_length, reason = BAD[case]
    with pytest.raises(InvalidInput) as caught:
        decode_request(body, header_length, LIMITS)
    assert caught.value.status_code == 400
    assert reason in caught.value.detail
