"""A standard Open Inference Protocol client this project did not write (Triton's
`tritonclient.http`) drives a real server: health, readiness, metadata, infer with binary and
JSON tensor data on the live and on a pinned candidate version, and errors that reach the
client as `InferenceServerException`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.integration.conftest import AppFactory
from tests.support.models import TestRegistry

pytestmark = pytest.mark.integration

TEXTS = ["정말 최고의 영화 강력 추천", "시간 낭비 최악의 영화", "그냥 그랬다"]
MAX_BATCH = 4


@pytest.fixture
def triton(registry: TestRegistry, start_app: AppFactory) -> Iterator[tuple[Any, str, int]]:
    version = registry.register()
    app = start_app(
        env={
            "BLUEGREEN_ADMIN_TOKEN": "interop-token",
            "BLUEGREEN_MAX_BATCH": str(MAX_BATCH),
            # a candidate that stays a candidate for the whole test
            "BLUEGREEN_CANARY_PERCENT": "50",
            "BLUEGREEN_CANARY_MIN_REQUESTS": "1000000",
            "BLUEGREEN_CANARY_MIN_SECONDS": "100000",
            "BLUEGREEN_CANARY_MAX_SECONDS": "100000",
        }
    )
    client = httpclient.InferenceServerClient(app.url.removeprefix("http://"))
    try:
        yield client, app.url, version
    finally:
        client.close()


def bytes_input(texts: list[str], *, binary: bool) -> Any:
    tensor = httpclient.InferInput("text", [len(texts)], "BYTES")
    tensor.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=np.object_), binary)
    return tensor


def labels_of(result: Any) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in result.as_numpy("label")]


def predict_oracle(url: str, texts: list[str]) -> list[dict[str, Any]]:
    response = httpx.post(f"{url}/predict/batch", json={"texts": texts}, timeout=30)
    assert response.status_code == 200, response.text
    return list(response.json()["results"])


def assert_agrees_with_predict(result: Any, url: str, texts: list[str]) -> None:
    oracle = predict_oracle(url, texts)
    assert labels_of(result) == [r["sentiment"] for r in oracle]
    probabilities = result.as_numpy("probabilities")
    assert probabilities.dtype == np.float32
    assert probabilities.shape == (len(texts), 3)
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert np.allclose(probabilities.max(axis=1), [r["score"] for r in oracle], atol=1e-6)


def test_triton_client_health_metadata_and_infer(
    triton: tuple[Any, str, int], registry: TestRegistry, model_name: str
) -> None:
    client, url, v1 = triton
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready(model_name)
    assert not client.is_model_ready("no-such-model")
    server = client.get_server_metadata()
    assert server["name"] == "bluegreen"
    assert "binary_tensor_data" in server["extensions"]
    meta = client.get_model_metadata(model_name)
    assert meta["name"] == model_name
    assert meta["versions"] == [str(v1)]
    assert [i["name"] for i in meta["inputs"]] == ["text"]
    assert {o["name"]: o["datatype"] for o in meta["outputs"]} == {
        "probabilities": "FP32",
        "label": "BYTES",
    }

    # Binary in, mixed out (the client's default is binary everywhere)
    outputs = [
        httpclient.InferRequestedOutput("probabilities", binary_data=True),
        httpclient.InferRequestedOutput("label", binary_data=False),
    ]
    result = client.infer(
        model_name, [bytes_input(TEXTS, binary=True)], outputs=outputs, request_id="interop-1"
    )
    response = result.get_response()
    assert response["id"] == "interop-1"
    assert response["model_name"] == model_name
    assert response["model_version"] == str(v1)
    assert response["parameters"]["slot"] in {"blue", "green"}
    assert_agrees_with_predict(result, url, TEXTS)

    # JSON in, JSON out; and no outputs named: every output, binary (binary_data_output)
    json_out = [
        httpclient.InferRequestedOutput(n, binary_data=False) for n in ("probabilities", "label")
    ]
    result = client.infer(model_name, [bytes_input(TEXTS, binary=False)], outputs=json_out)
    assert_agrees_with_predict(result, url, TEXTS)
    result = client.infer(model_name, [bytes_input(TEXTS[:1], binary=True)])
    assert_agrees_with_predict(result, url, TEXTS[:1])

    # A candidate: both versions are loaded and each can be asked for by number
    v2 = registry.register()
    deadline = time.monotonic() + 60
    while sorted(client.get_model_metadata(model_name)["versions"]) != sorted([str(v1), str(v2)]):
        assert time.monotonic() < deadline, "the candidate never loaded"
        time.sleep(0.2)
    assert client.is_model_ready(model_name, str(v2))
    for version in (v1, v2):
        pinned_meta = client.get_model_metadata(model_name, str(version))
        assert pinned_meta["parameters"]["version"] == str(version)
        for _ in range(5):
            pinned = client.infer(
                model_name, [bytes_input(TEXTS[:2], binary=True)], model_version=str(version)
            )
            assert pinned.get_response()["model_version"] == str(version)


def assert_client_error(call: Any, status: str, *words: str) -> None:
    with pytest.raises(InferenceServerException) as caught:
        call()
    assert caught.value.status() == status, caught.value
    for word in words:
        assert word in caught.value.message(), caught.value.message()


def test_errors_reach_the_triton_client_as_exceptions(
    triton: tuple[Any, str, int], model_name: str
) -> None:
    client, _, _ = triton
    good = [bytes_input(TEXTS[:1], binary=True)]
    assert_client_error(lambda: client.infer("no-such-model", good), "404", "no-such-model")
    assert_client_error(lambda: client.get_model_metadata("no-such-model"), "404")
    assert_client_error(lambda: client.infer(model_name, good, model_version="999"), "404", "999")
    wrong_type = httpclient.InferInput("text", [1], "FP32")
    wrong_type.set_data_from_numpy(np.array([1.0], dtype=np.float32))
    assert_client_error(lambda: client.infer(model_name, [wrong_type]), "400", "BYTES")
    too_many = [bytes_input(["최고"] * (MAX_BATCH + 1), binary=True)]
    assert_client_error(lambda: client.infer(model_name, too_many), "400", str(MAX_BATCH))
    blank = [bytes_input(["최고", " "], binary=False)]
    assert_client_error(lambda: client.infer(model_name, blank), "400", "empty")
    wrong_name = httpclient.InferInput("review", [1], "BYTES")
    wrong_name.set_data_from_numpy(np.array([b"x"], dtype=np.object_))
    assert_client_error(lambda: client.infer(model_name, [wrong_name]), "400", "text")


def test_a_real_server_refuses_wrong_v2_methods_and_paths_in_oip_form(
    triton: tuple[Any, str, int], model_name: str
) -> None:
    _, url, _ = triton
    refusals = [
        ("GET", f"/v2/models/{model_name}/infer", 405, "POST"),
        ("DELETE", "/v2", 405, "GET"),
        ("GET", "/v2/no-such-route", 404, None),
        ("POST", f"/v2/models/{model_name}/infer/extra", 404, None),
    ]
    for method, path, status, allowed in refusals:
        sent = f"refused-{method}-{status}"
        response = httpx.request(method, f"{url}{path}", headers={"X-Request-ID": sent}, timeout=10)
        assert response.status_code == status, (path, response.text)
        assert response.headers["content-type"].startswith("application/json")
        assert response.headers["x-request-id"] == sent
        body = response.json()
        assert set(body) == {"error", "request_id"}, body  # OIP form, not ErrorBody
        assert body["request_id"] == sent
        if allowed is not None:
            assert allowed in response.headers["allow"]
            assert method in body["error"]
            assert allowed in body["error"]
    # outside /v2 the app's own error form stays
    plain = httpx.get(f"{url}/no-such-route", headers={"X-Request-ID": "plain-1"}, timeout=10)
    assert plain.status_code == 404
    assert plain.json()["status_code"] == 404
    assert plain.json()["request_id"] == "plain-1" == plain.headers["x-request-id"]
