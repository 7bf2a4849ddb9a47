"""What the client sends and how it reads answers, over httpx.MockTransport: the admin routes
of the contract the server is still growing (versions, reject, unreject), headers, error
classes, and the sync/async twins staying the same API."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable

import httpx
import pytest

from bluegreen.client import (
    ApiError,
    AsyncClient,
    Client,
    ClientError,
    Conflict,
    GatewayTimeout,
    NotFound,
    ServerError,
    ServiceUnavailable,
    UnexpectedResponse,
    Unreachable,
)
from bluegreen.client.calls import decode_bytes, encode_bytes

Handler = Callable[[httpx.Request], httpx.Response]
seen: list[httpx.Request] = []


def mock(handler: Handler, **kwargs: object) -> Client:
    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    http = httpx.Client(base_url="http://bg.test", transport=httpx.MockTransport(record))
    return Client(http=http, **kwargs)  # type: ignore[arg-type]


def answer(status: int, body: object, **headers: str) -> Handler:
    return lambda _: httpx.Response(status, json=body, headers=headers)


VERSIONS = {
    "model": "ensemble-sentiment-model",
    "alias": {"name": "production", "version": 3},
    "live_version": 3,
    "history": [
        {"version": 3, "from_version": 2, "action": "promote", "who": "ci from 10.0.0.1",
         "why": "pinned", "at": 1700000300.5},
        {"version": 2, "from_version": 1, "action": "promote", "who": "bluegreen",
         "why": "canary passed", "at": 1700000200.0},
        {"version": 1, "from_version": None, "action": "bootstrap", "who": "bluegreen",
         "why": "first start", "at": 1700000100.0},
    ],
    "versions": [
        {"version": 4, "rejected": "smoke: accuracy 0.2", "created_at": 1700000400.0,
         "in_history": False},
        {"version": 3, "rejected": None, "created_at": 1700000300.0, "in_history": True},
    ],
}  # fmt: skip


def test_versions_reads_the_contract() -> None:
    versions = mock(answer(200, VERSIONS), token="t").versions()
    assert versions.alias.name == "production"
    assert versions.alias.version == 3
    assert versions.live_version == 3
    assert [h.version for h in versions.history] == [3, 2, 1]
    assert versions.history[0].from_version == 2
    assert versions.history[2].from_version is None
    assert versions.history[0].action == "promote"
    assert versions.versions[0].rejected == "smoke: accuracy 0.2"
    assert not versions.versions[0].in_history


def test_admin_calls_send_token_actor_and_request_id() -> None:
    seen.clear()
    client = mock(answer(200, {"version": 3, "from_version": 4, "mode": "reload"}),
                  token="s3cret", actor="ops@example")  # fmt: skip
    assert client.rollback(request_id="abc-1").version == 3
    request = seen[-1]
    assert request.method == "POST"
    assert request.url.path == "/admin/rollback"
    assert request.headers["authorization"] == "Bearer s3cret"
    assert request.headers["x-admin-actor"] == "ops@example"
    assert request.headers["x-request-id"] == "abc-1"


def test_predictions_never_carry_the_admin_token() -> None:
    seen.clear()
    body = {"sentiment": "긍정", "score": 0.9, "details": {"긍정": 0.9}, "model_version": 1,
            "model_slot": "blue"}  # fmt: skip
    mock(answer(200, body), token="s3cret", actor="me").predict("좋아요")
    assert "authorization" not in seen[-1].headers
    assert "x-admin-actor" not in seen[-1].headers
    assert "x-request-id" not in seen[-1].headers
    assert json.loads(seen[-1].content) == {"text": "좋아요"}


@pytest.mark.parametrize(
    ("call", "path", "body"),
    [
        (lambda c: c.reject(4, "wrong answers on sarcasm"), "/admin/reject",
         {"version": 4, "reason": "wrong answers on sarcasm"}),
        (lambda c: c.unreject(4), "/admin/unreject", {"version": 4}),
        (lambda c: c.promote(4), "/admin/promote", {"version": 4}),
        (lambda c: c.set_canary(10), "/admin/canary", {"percent": 10.0}),
    ],
)  # fmt: skip
def test_admin_bodies(call: Callable[[Client], object], path: str, body: object) -> None:
    seen.clear()
    call(mock(answer(200, {"version": 4, "percent": 10.0}), token="t"))
    assert seen[-1].url.path == path
    assert json.loads(seen[-1].content) == body
    assert seen[-1].headers["content-type"] == "application/json"


def test_promote_without_a_version_sends_no_body() -> None:
    seen.clear()
    mock(answer(200, {"version": 2}), token="t").promote()
    assert seen[-1].content == b""


def test_an_error_body_becomes_its_class_with_text_and_request_id() -> None:
    body = {"status_code": 409, "error": "conflict", "detail": "nothing to roll back to",
            "request_id": "body-id"}  # fmt: skip
    with pytest.raises(Conflict) as caught:
        mock(answer(409, body, **{"X-Request-ID": "header-id"}), token="t").rollback()
    error = caught.value
    assert isinstance(error, ClientError)
    assert (error.status_code, error.error) == (409, "conflict")
    assert error.detail == "nothing to roll back to"
    assert error.request_id == "header-id"  # the header wins; the body is the fallback
    assert "nothing to roll back to" in str(error)


def test_the_request_id_falls_back_to_the_body() -> None:
    body = {"status_code": 404, "error": "not_found", "detail": "version 9", "request_id": "b1"}
    with pytest.raises(NotFound) as caught:
        mock(answer(404, body), token="t").unreject(9)
    assert caught.value.request_id == "b1"


def test_an_oip_error_keeps_its_text() -> None:
    with pytest.raises(NotFound) as caught:
        mock(answer(404, {"error": "version 9 is not loaded"})).infer(["a"], version=9)
    assert caught.value.error == caught.value.detail == "version 9 is not loaded"


def test_retry_after_and_server_errors() -> None:
    body = {"status_code": 503, "error": "registry_unavailable", "detail": "deadline"}
    with pytest.raises(ServiceUnavailable) as caught:
        mock(answer(503, body, **{"Retry-After": "5"}), token="t").reload()
    assert isinstance(caught.value, ServerError)
    assert caught.value.retry_after == 5.0
    with pytest.raises(GatewayTimeout):
        mock(answer(504, body), token="t").versions()


def test_an_unlisted_status_gets_its_range_class() -> None:
    with pytest.raises(ClientError) as caught:
        mock(answer(418, {"error": "teapot", "detail": "no"})).health()
    assert type(caught.value) is ClientError
    with pytest.raises(ServerError) as server:
        mock(lambda _: httpx.Response(502, text="<html>bad gateway</html>")).health()
    assert type(server.value) is ServerError
    assert "bad gateway" in server.value.detail


def test_a_success_with_an_unreadable_body_is_unexpected() -> None:
    with pytest.raises(UnexpectedResponse) as caught:
        mock(answer(200, {"surprise": True}, **{"X-Request-ID": "r9"}), token="t").slots()
    assert caught.value.request_id == "r9"
    assert not isinstance(caught.value, ApiError)


def test_no_server_is_unreachable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(Unreachable, match="connection refused"):
        mock(refuse).health()


def test_binary_inference_answers_are_decoded() -> None:
    import struct

    header = json.dumps({
        "model_name": "m", "model_version": "3", "id": "x", "parameters": {"slot": "green"},
        "outputs": [
            {"name": "probabilities", "datatype": "FP32", "shape": [1, 3],
             "parameters": {"binary_data_size": 12}},
            {"name": "label", "datatype": "BYTES", "shape": [1],
             "parameters": {"binary_data_size": 4 + len("긍정".encode())}},
        ],
    }).encode()  # fmt: skip
    blob = struct.pack("<3f", 0.25, 0.25, 0.5) + encode_bytes(["긍정"])

    def handler(request: httpx.Request) -> httpx.Response:
        assert int(request.headers["inference-header-content-length"]) < len(request.content)
        length = {"Inference-Header-Content-Length": str(len(header))}
        return httpx.Response(200, content=header + blob, headers=length)

    inference = mock(handler).infer(["좋아요"], binary=True)
    assert inference.model_version == 3
    assert inference.slot == "green"
    assert inference.labels == ["긍정"]
    assert inference.probabilities == [[0.25, 0.25, 0.5]]


def test_bytes_elements_round_trip() -> None:
    items = ["", "긍정", "a\x00b"]
    assert decode_bytes(encode_bytes(items), 3) == items
    with pytest.raises(ValueError):
        decode_bytes(encode_bytes(items), 2)


def test_sync_and_async_clients_have_the_same_methods_and_signatures() -> None:
    def api(cls: type) -> dict[str, inspect.Signature]:
        return {
            name: inspect.signature(member)
            for name, member in vars(cls).items()
            if callable(member) and not name.startswith("_") and name not in {"close", "aclose"}
        }

    sync, aio = api(Client), api(AsyncClient)
    assert sync.keys() == aio.keys()
    for name, signature in sync.items():
        assert aio[name].parameters == signature.parameters, name
        assert inspect.iscoroutinefunction(getattr(AsyncClient, name)), name
    assert len(sync) >= 20
