"""Open Inference Protocol V2 routes on the real app: health, metadata, JSON and binary
inference on live and pinned versions, and OIP `{"error": ...}` bodies for every 4xx."""

from __future__ import annotations

import json
import re
import struct
from typing import Any

import numpy as np
import pytest
from litestar.testing import TestClient

from bluegreen.serving.contract import LABELS
from tests.fakes import FakeRegistry
from tests.unit.api.conftest import ADMIN, ClientFactory

MODEL = "ensemble-sentiment-model"
INFER = f"/v2/models/{MODEL}/infer"


def infer_body(texts: list[str], **extra: Any) -> dict[str, Any]:
    tensor = {"name": "text", "shape": [len(texts)], "datatype": "BYTES", "data": texts}
    return {"inputs": [tensor], **extra}


def binary_body(texts: list[str], **extra: Any) -> tuple[bytes, dict[str, str]]:
    raw = b"".join(struct.pack("<I", len(t.encode())) + t.encode() for t in texts)
    tensor = {"name": "text", "shape": [len(texts)], "datatype": "BYTES",
              "parameters": {"binary_data_size": len(raw)}}  # fmt: skip
    header = json.dumps({"inputs": [tensor], **extra}).encode()
    return header + raw, {"Inference-Header-Content-Length": str(len(header))}


def assert_oip_error(response: Any, status: int, *words: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    message = body["error"]
    assert isinstance(message, str)
    assert "status_code" not in body  # the OIP form, not /predict's ErrorBody
    assert "detail" not in body
    assert "Traceback" not in response.text
    for word in words:
        assert word in message, message
    return str(message)


def test_server_metadata_and_health(client: TestClient[Any]) -> None:
    meta = client.get("/v2").json()
    assert meta["name"] == "bluegreen"
    assert meta["version"]
    assert "binary_tensor_data" in meta["extensions"]
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    assert client.get(f"/v2/models/{MODEL}/ready").json() == {"ready": True}
    assert client.get(f"/v2/models/{MODEL}/versions/1/ready").status_code == 200


def test_model_metadata_names_tensors_and_label_order(client: TestClient[Any]) -> None:
    meta = client.get(f"/v2/models/{MODEL}").json()
    assert meta["name"] == MODEL
    assert meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    probs, label = meta["outputs"]
    assert (probs["name"], probs["datatype"], probs["shape"]) == ("probabilities", "FP32", [-1, 3])
    assert probs["parameters"]["labels"] == list(LABELS)
    assert (label["name"], label["datatype"], label["shape"]) == ("label", "BYTES", [-1])
    assert meta["parameters"]["role"] == "live"
    assert meta["parameters"]["version"] == "1"
    assert client.get(f"/v2/models/{MODEL}/versions/1").json() == meta


def test_json_infer_answers_labels_probabilities_version_slot_and_id(
    client: TestClient[Any],
) -> None:
    texts = ["정말 최고의 영화", "시간 낭비 최악"]
    response = client.post(INFER, json=infer_body(texts, id="req-7"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_name"] == MODEL
    assert body["model_version"] == "1" == response.headers["x-model-version"]
    assert body["id"] == "req-7"
    assert body["parameters"]["slot"] == response.headers["x-model-slot"]
    outputs = {o["name"]: o for o in body["outputs"]}
    assert outputs["label"]["data"] == ["긍정", "부정"]
    table = np.array(outputs["probabilities"]["data"]).reshape(outputs["probabilities"]["shape"])
    assert table.shape == (2, 3)
    np.testing.assert_allclose(table.sum(axis=1), 1.0, atol=1e-5)
    # same model, same answer as /predict
    details = client.post("/predict", json={"text": texts[0]}).json()["details"]
    np.testing.assert_allclose(table[0], [details[label] for label in LABELS], rtol=1e-6)


def test_binary_infer_in_and_out(client: TestClient[Any]) -> None:
    content, headers = binary_body(["최고", "지루"], parameters={"binary_data_output": True})
    response = client.post(INFER, content=content, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    length = int(response.headers["inference-header-content-length"])
    header = json.loads(response.content[:length])
    sizes = [o["parameters"]["binary_data_size"] for o in header["outputs"]]
    assert [o["name"] for o in header["outputs"]] == ["probabilities", "label"]
    assert all("data" not in o for o in header["outputs"])
    blob = response.content[length:]
    assert len(blob) == sum(sizes)
    table = np.frombuffer(blob[: sizes[0]], dtype="<f4").reshape(2, 3)
    np.testing.assert_allclose(table.sum(axis=1), 1.0, atol=1e-5)
    labels, at, raw = [], 0, blob[sizes[0] :]
    while at < len(raw):
        (n,) = struct.unpack_from("<I", raw, at)
        labels.append(raw[at + 4 : at + 4 + n].decode())
        at += 4 + n
    assert labels == ["긍정", "부정"]


def test_binary_input_with_json_output(client: TestClient[Any]) -> None:
    content, headers = binary_body(["최고"], outputs=[{"name": "label"}])
    response = client.post(INFER, content=content, headers=headers)
    assert response.status_code == 200, response.text
    assert "inference-header-content-length" not in response.headers
    assert response.json()["outputs"] == [
        {"name": "label", "datatype": "BYTES", "shape": [1], "data": ["긍정"]}
    ]


def tensor(**fields: Any) -> dict[str, Any]:
    return {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["a"]} | fields]}


BAD: list[tuple[str, Any, tuple[str, ...]]] = [
    ("wrong datatype", tensor(datatype="FP32"), ("datatype BYTES",)),
    ("wrong shape", tensor(shape=[1, 1]), ("shape [N]",)),
    ("shape vs data", tensor(shape=[2]), ("2", "1 elements")),
    ("over max_batch", infer_body(["a"] * 5), ("at most 4",)),
    ("over max_text_chars", infer_body(["가" * 51]), ("longer than 50", "text")),
    ("blank text", infer_body(["a", "\u200b"]), ("empty", "text[1]")),
    ("unknown output", infer_body(["a"], outputs=[{"name": "logits"}]), ("logits",)),
]


@pytest.mark.parametrize(("case", "body", "words"), BAD, ids=[c[0] for c in BAD])
def test_bad_tensors_are_oip_400s(
    client: TestClient[Any], case: str, body: Any, words: tuple[str, ...]
) -> None:
    assert_oip_error(client.post(INFER, json=body), 400, *words)


def test_bad_json_and_bad_binary_framing_are_oip_400s(client: TestClient[Any]) -> None:
    assert_oip_error(client.post(INFER, content=b"{nope"), 400, "JSON")
    assert_oip_error(client.post(INFER, content=b""), 400, "JSON")
    content, headers = binary_body(["최고"])
    assert_oip_error(
        client.post(INFER, content=content, headers={"Inference-Header-Content-Length": "9999"}),
        400,
        "Inference-Header-Content-Length",
    )
    assert_oip_error(client.post(INFER, content=content[:-1], headers=headers), 400, "bytes")


def test_body_over_the_limit_is_an_oip_413(client: TestClient[Any]) -> None:
    response = client.post(INFER, json=infer_body(["가" * 40] * 40))
    assert_oip_error(response, 413)


@pytest.mark.parametrize(
    "path",
    [
        "/v2/models/other-model",
        "/v2/models/other-model/ready",
        f"/v2/models/{MODEL}/versions/2",
        f"/v2/models/{MODEL}/versions/abc",
        f"/v2/models/{MODEL}/versions/2/ready",
    ],
)
def test_unknown_model_or_version_is_an_oip_404(client: TestClient[Any], path: str) -> None:
    assert_oip_error(client.get(path), 404)


def test_infer_on_unknown_model_or_version_is_an_oip_404(client: TestClient[Any]) -> None:
    body = infer_body(["최고"])
    assert_oip_error(client.post("/v2/models/other/infer", json=body), 404, "other")
    assert_oip_error(client.post(f"/v2/models/{MODEL}/versions/9/infer", json=body), 404, "9")


def test_not_ready_before_a_model_is_live(api: ClientFactory, registry: FakeRegistry) -> None:
    registry.alias = None
    registry.versions.clear()
    with api(ready=False) as client:
        assert client.get("/v2/health/live").status_code == 200
        ready = client.get("/v2/health/ready")
        assert ready.status_code == 503
        assert ready.headers["retry-after"]
        assert client.get(f"/v2/models/{MODEL}/ready").status_code == 503
        assert_oip_error(client.get(f"/v2/models/{MODEL}"), 503)
        response = client.post(INFER, json=infer_body(["최고"]))
        assert_oip_error(response, 503)
        assert response.headers["retry-after"]


def test_pinned_versions_during_a_canary_and_404_once_unloaded(
    api: ClientFactory, registry: FakeRegistry
) -> None:
    with api(canary_percent=50, canary_min_requests=10**6, canary_min_seconds=10**5) as client:
        registry.add(2)
        assert client.post("/admin/reload", headers=ADMIN).status_code == 200
        meta = client.get(f"/v2/models/{MODEL}").json()
        assert sorted(meta["versions"]) == ["1", "2"]
        assert meta["parameters"]["role"] == "live"
        candidate = client.get(f"/v2/models/{MODEL}/versions/2").json()
        assert candidate["parameters"]["role"] == "candidate"
        assert candidate["parameters"]["slot"] != meta["parameters"]["slot"]
        for version in ("1", "2"):
            for _ in range(10):  # pinned: never the canary's coin
                response = client.post(
                    f"/v2/models/{MODEL}/versions/{version}/infer", json=infer_body(["최고"])
                )
                assert response.status_code == 200, response.text
                assert response.json()["model_version"] == version
        # the live route is the canary's split, like /predict
        seen = {
            client.post(INFER, json=infer_body(["최고"]), headers={"X-Request-ID": f"c{i}"}).json()[
                "model_version"
            ]
            for i in range(40)
        }
        assert seen == {"1", "2"}
        assert client.post("/admin/canary/abort", headers=ADMIN).status_code == 200
        gone = client.post(f"/v2/models/{MODEL}/versions/2/infer", json=infer_body(["최고"]))
        assert_oip_error(gone, 404, "version 2")
        assert_oip_error(client.get(f"/v2/models/{MODEL}/versions/2"), 404)


def test_v2_routes_are_in_the_schema_and_metrics_use_templates(client: TestClient[Any]) -> None:
    paths = client.get("/schema/openapi.json").json()["paths"]
    version = "/v2/models/{name}/versions/{version}"
    for path in ("/v2", "/v2/health/live", "/v2/health/ready", "/v2/models/{name}",
                 "/v2/models/{name}/ready", "/v2/models/{name}/infer", version,
                 f"{version}/ready", f"{version}/infer"):  # fmt: skip
        assert path in paths, path
    infer = paths["/v2/models/{name}/infer"]["post"]
    media = {"application/json", "application/octet-stream"}
    assert media <= set(infer["requestBody"]["content"])
    assert media <= set(infer["responses"]["200"]["content"])
    assert {"400", "404", "413", "503"} <= set(infer["responses"])
    # what fuzzers check against: the not-ready answers are documented too
    assert "503" in paths["/v2/health/ready"]["get"]["responses"]
    assert "503" in paths["/v2/models/{name}/ready"]["get"]["responses"]
    client.post(f"/v2/models/{MODEL}/versions/1/infer", json=infer_body(["최고"]))
    client.get(f"/v2/models/{MODEL}/versions/77")
    exposition = client.get("/metrics").text
    assert 'path="/v2/models/{name}/versions/{version}/infer"' in exposition
    assert 'path="/v2/models/{name}/versions/{version}"' in exposition
    assert "versions/77" not in exposition
    assert f"/v2/models/{MODEL}" not in exposition


ROUTER_405 = [
    ("GET", INFER, "POST"),
    ("GET", f"/v2/models/{MODEL}/versions/1/infer", "POST"),
    ("DELETE", "/v2", "GET"),
    ("PUT", "/v2/health/live", "GET"),
    ("POST", f"/v2/models/{MODEL}", "GET"),
]


@pytest.mark.parametrize(("method", "path", "allowed"), ROUTER_405)
def test_a_wrong_method_on_a_v2_route_is_an_oip_405_naming_what_is_allowed(
    client: TestClient[Any], method: str, path: str, allowed: str
) -> None:
    response = client.request(method, path, headers={"X-Request-ID": "wrong-method-1"})
    message = assert_oip_error(response, 405, method, allowed)
    assert allowed in {m.strip() for m in response.headers["allow"].split(",")}
    assert method not in response.headers["allow"]
    assert response.headers["x-request-id"] == "wrong-method-1"
    assert response.json() == {"error": message, "request_id": "wrong-method-1"}


@pytest.mark.parametrize(
    "path", ["/v2/nope", f"/v2/models/{MODEL}/versions/1/infer/more", "/v2/health"]
)
def test_an_unknown_v2_path_is_an_oip_404_with_the_made_request_id(
    client: TestClient[Any], path: str
) -> None:
    response = client.get(path)
    assert_oip_error(response, 404, "Open Inference Protocol route")
    made = response.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    assert response.json()["request_id"] == made


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/no-such-route", 404), ("GET", "/v2x/models", 404), ("GET", "/predict", 405),
     ("DELETE", "/healthz", 405)],
)  # fmt: skip
def test_routes_outside_v2_keep_the_error_body_form(
    client: TestClient[Any], method: str, path: str, status: int
) -> None:
    response = client.request(method, path, headers={"X-Request-ID": "plain-1"})
    assert response.status_code == status
    body = response.json()
    assert body["status_code"] == status
    assert body["error"] in {"not_found", "method_not_allowed"}
    assert body["request_id"] == "plain-1" == response.headers["x-request-id"]


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("POST", INFER, {"json": tensor(datatype="FP32")}, 400),
        ("POST", INFER, {"content": b"{nope"}, 400),
        ("POST", "/v2/models/other/infer", {"json": infer_body(["a"])}, 404),
        ("GET", f"/v2/models/{MODEL}/versions/9", {}, 404),
        ("POST", INFER, {"json": infer_body(["가" * 40] * 40)}, 413),
    ],
    ids=["400-tensor", "400-json", "404-model", "404-version", "413"],
)
def test_v2_handler_errors_name_the_request_id_in_body_and_header(
    client: TestClient[Any], method: str, path: str, kwargs: dict[str, Any], status: int
) -> None:
    sent = f"v2-err-{status}"
    response = client.request(method, path, headers={"X-Request-ID": sent}, **kwargs)
    assert_oip_error(response, status)
    assert response.headers["x-request-id"] == sent
    assert response.json()["request_id"] == sent
    assert set(response.json()) == {"error", "request_id"}


def test_v2_answers_echo_the_request_id_header_and_the_oip_id(client: TestClient[Any]) -> None:
    ok = client.post(INFER, json=infer_body(["최고"], id="oip-1"), headers={"X-Request-ID": "h-1"})
    assert ok.status_code == 200
    assert (ok.headers["x-request-id"], ok.json()["id"]) == ("h-1", "oip-1")
    content, headers = binary_body(["최고"], id="oip-2", parameters={"binary_data_output": True})
    binary = client.post(INFER, content=content, headers=headers)
    length = int(binary.headers["inference-header-content-length"])
    assert json.loads(binary.content[:length])["id"] == "oip-2"
    assert re.fullmatch(r"[0-9a-f]{32}", binary.headers["x-request-id"])
    # no OIP id sent, none answered
    assert "id" not in client.post(INFER, json=infer_body(["최고"])).json()
    for path in ("/v2", "/v2/health/live", f"/v2/models/{MODEL}"):
        assert client.get(path, headers={"X-Request-ID": "meta-1"}).headers["x-request-id"] == (
            "meta-1"
        )


def test_the_schema_documents_the_request_id_of_oip_errors(client: TestClient[Any]) -> None:
    schema = client.get("/schema/openapi.json").json()
    oip_error = schema["components"]["schemas"]["OipError"]
    assert oip_error["required"] == ["error"]
    assert "request_id" in oip_error["properties"]
