"""POST /predict and /predict/batch: answers, headers, and a clear 4xx for every bad input."""

from __future__ import annotations

import json
from typing import Any

import pytest
from litestar.testing import TestClient

from bluegreen.serving.contract import LABELS
from tests.fakes import FakeLoader, FakeRegistry, SwitchableModel
from tests.unit.api.conftest import ADMIN, ClientFactory

JSON = {"Content-Type": "application/json"}


def assert_error(response: Any, status: int, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["status_code"] == status
    assert isinstance(body["error"], str)
    assert body["error"]
    assert isinstance(body["detail"], str)
    assert body["detail"]
    assert "Traceback" not in response.text
    if field is not None:
        assert body.get("field") == field, body
    return dict(body)


def test_predict_answers_200_with_body_and_headers(client: TestClient[Any]) -> None:
    response = client.post("/predict", json={"text": "정말 최고의 영화 강력 추천"})
    assert response.status_code == 200  # not Litestar's POST default 201
    body = response.json()
    assert body["sentiment"] == "긍정"
    assert set(body["details"]) == set(LABELS)
    assert sum(body["details"].values()) == pytest.approx(1.0)
    assert body["score"] == pytest.approx(max(body["details"].values()))
    assert body["model_version"] == 1
    assert body["model_slot"] in ("blue", "green")
    assert response.headers["x-model-version"] == "1"
    assert response.headers["x-model-slot"] == body["model_slot"]


def test_negative_review(client: TestClient[Any]) -> None:
    body = client.post("/predict", json={"text": "최악의 영화 시간 낭비"}).json()
    assert body["sentiment"] == "부정"


def test_batch_answers_200_in_order(client: TestClient[Any]) -> None:
    texts = ["최고의 명작", "최악 노잼", "정말 감동"]
    response = client.post("/predict/batch", json={"texts": texts})
    assert response.status_code == 200
    body = response.json()
    assert [r["sentiment"] for r in body["results"]] == ["긍정", "부정", "긍정"]
    assert body["model_version"] == 1
    assert response.headers["x-model-version"] == "1"
    assert response.headers["x-model-slot"] == body["model_slot"]


def test_text_at_the_length_limit_is_accepted(client: TestClient[Any]) -> None:
    assert client.post("/predict", json={"text": "가" * 50}).status_code == 200


def test_content_type_with_charset_is_accepted(client: TestClient[Any]) -> None:
    response = client.post(
        "/predict",
        content=json.dumps({"text": "최고"}).encode(),
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert response.status_code == 200


BAD_SINGLE: list[tuple[str, Any, int, str | None]] = [
    ("missing text", {}, 400, "text"),
    ("number", {"text": 5}, 400, "text"),
    ("list", {"text": ["a"]}, 400, "text"),
    ("object", {"text": {"a": 1}}, 400, "text"),
    ("bool", {"text": True}, 400, "text"),
    ("null text", {"text": None}, 400, "text"),
    ("empty", {"text": ""}, 400, "text"),
    ("whitespace", {"text": " \t\n "}, 400, "text"),
    ("too long", {"text": "가" * 51}, 400, "text"),
    ("unknown field", {"text": "최고", "lang": "ko"}, 400, "lang"),
    ("top-level array", [{"text": "최고"}], 400, None),
    ("top-level string", "최고", 400, None),
    ("top-level null", None, 400, None),
]


@pytest.mark.parametrize(
    ("case", "payload", "status", "field"), BAD_SINGLE, ids=[c[0] for c in BAD_SINGLE]
)
def test_bad_single_input(
    client: TestClient[Any], case: str, payload: Any, status: int, field: str | None
) -> None:
    response = client.post("/predict", content=json.dumps(payload).encode(), headers=JSON)
    assert_error(response, status, field)


def test_too_long_names_the_limit(client: TestClient[Any]) -> None:
    body = assert_error(client.post("/predict", json={"text": "가" * 51}), 400, "text")
    assert "50" in body["detail"]


BAD_BATCH: list[tuple[str, Any, str | None]] = [
    ("missing texts", {}, "texts"),
    ("empty batch", {"texts": []}, "texts"),
    ("over max", {"texts": ["최고"] * 5}, "texts"),
    ("not a list", {"texts": "최고"}, "texts"),
    ("non-string item", {"texts": ["최고", 3]}, "texts[1]"),
    ("null item", {"texts": ["최고", None]}, "texts[1]"),
    ("empty item", {"texts": ["최고", ""]}, "texts[1]"),
    ("whitespace item", {"texts": ["최고", "   "]}, "texts[1]"),
    ("long item", {"texts": ["최고", "가" * 51]}, "texts[1]"),
    ("unknown field", {"texts": ["최고"], "x": 1}, "x"),
    ("top-level array", ["최고"], None),
]


@pytest.mark.parametrize(("case", "payload", "field"), BAD_BATCH, ids=[c[0] for c in BAD_BATCH])
def test_bad_batch_input(
    client: TestClient[Any], case: str, payload: Any, field: str | None
) -> None:
    response = client.post("/predict/batch", content=json.dumps(payload).encode(), headers=JSON)
    assert_error(response, 400, field)


def test_batch_over_max_names_the_limit(client: TestClient[Any]) -> None:
    body = assert_error(client.post("/predict/batch", json={"texts": ["a"] * 5}), 400, "texts")
    assert "at most 4" in body["detail"]


@pytest.mark.parametrize("route", ["/predict", "/predict/batch"])
@pytest.mark.parametrize(
    "raw",
    [b"{bad json", b'{"text": "unterminated', b"", b"\xff\xfe\x00", b'{"text": "\xff\xfe"}'],
    ids=["malformed", "truncated", "empty body", "binary", "non-utf8 in string"],
)
def test_undecodable_bodies_are_400(client: TestClient[Any], route: str, raw: bytes) -> None:
    assert_error(client.post(route, content=raw, headers=JSON), 400)


def test_invalid_json_is_named(client: TestClient[Any]) -> None:
    body = assert_error(client.post("/predict", content=b"{bad", headers=JSON), 400)
    assert body["error"] == "invalid_json"


def test_body_over_limit_is_413(client: TestClient[Any]) -> None:
    raw = json.dumps({"text": "a" * 5000}).encode()
    body = assert_error(client.post("/predict", content=raw, headers=JSON), 413)
    assert body["error"] == "payload_too_large"


@pytest.mark.parametrize("route", ["/predict", "/predict/batch"])
@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml", None]
)
def test_wrong_content_type_is_415(
    client: TestClient[Any], route: str, content_type: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post(route, content=b'{"text": "\xec\xb5\x9c\xea\xb3\xa0"}', headers=headers)
    body = assert_error(response, 415)
    assert body["error"] == "unsupported_media_type"


def test_wrong_method_is_a_json_4xx(client: TestClient[Any]) -> None:
    assert_error(client.get("/predict"), 405)


def test_no_model_yet_is_503_with_retry_after(api: ClientFactory, registry: FakeRegistry) -> None:
    registry.versions.clear()
    registry.alias = None
    with api(ready=False) as client:
        for route, payload in (
            ("/predict", {"text": "최고"}),
            ("/predict/batch", {"texts": ["a"]}),
        ):
            response = client.post(route, json=payload)
            body = assert_error(response, 503)
            assert body["error"] == "no_model"
            assert int(response.headers["retry-after"]) > 0
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.headers["retry-after"]
        assert ready.json()["status"] == "not_ready"
        assert ready.json()["reason"]
        assert client.get("/healthz").status_code == 200


def test_model_failure_is_a_json_500_without_details(
    api: ClientFactory, loader: FakeLoader
) -> None:
    model = SwitchableModel()
    loader.factories[1] = lambda: model
    with api() as client:
        model.failing = True
        response = client.post("/predict", json={"text": "최고"})
        body = assert_error(response, 500)
        assert body["error"] == "model_error"
        assert "candidate broke" not in response.text


def test_same_request_id_sticks_to_one_slot_during_a_canary(
    api: ClientFactory, registry: FakeRegistry
) -> None:
    with api(canary_percent=50, canary_min_requests=10**6, canary_min_seconds=10**5) as client:
        registry.add(2)
        reload = client.post("/admin/reload", headers=ADMIN)
        assert reload.status_code == 200, reload.text
        seen: dict[str, set[str]] = {}
        for i in range(40):
            key = f"client-{i}"
            for _ in range(3):
                r = client.post("/predict", json={"text": "최고"}, headers={"X-Request-ID": key})
                assert r.status_code == 200
                seen.setdefault(key, set()).add(r.headers["x-model-version"])
        assert all(len(versions) == 1 for versions in seen.values())
        assert set().union(*seen.values()) == {"1", "2"}  # both versions answered someone


@pytest.mark.parametrize(
    "text", ["\u200b", "\ufeff\u200b", "\x00", "\x00\u200b \ufeff\t", "\u2028\u200f"]
)
def test_invisible_only_text_is_400_like_whitespace(client: TestClient[Any], text: str) -> None:
    blank = assert_error(client.post("/predict", json={"text": " "}), 400, "text")
    body = assert_error(client.post("/predict", json={"text": text}), 400, "text")
    assert (body["error"], body["detail"]) == (blank["error"], blank["detail"])
    response = client.post("/predict/batch", json={"texts": ["최고", text]})
    assert assert_error(response, 400, "texts[1]")["detail"] == blank["detail"]


def test_visible_text_among_invisible_characters_is_answered(client: TestClient[Any]) -> None:
    assert client.post("/predict", json={"text": "\u200b최고\ufeff"}).status_code == 200


def test_batch_over_the_character_budget_names_the_limit(api: ClientFactory) -> None:
    with api(max_text_chars=50, max_batch=8, max_batch_chars=120) as client:
        ok = client.post("/predict/batch", json={"texts": ["가" * 50, "나" * 50, "다" * 20]})
        assert ok.status_code == 200, ok.text
        over = client.post("/predict/batch", json={"texts": ["가" * 50, "나" * 50, "다" * 21]})
        body = assert_error(over, 400, "texts")
        assert body["error"] == "invalid_request"
        assert "120" in body["detail"]
        assert "121" in body["detail"]
        # a single text is bounded by max_text_chars alone
        assert client.post("/predict", json={"text": "가" * 50}).status_code == 200
