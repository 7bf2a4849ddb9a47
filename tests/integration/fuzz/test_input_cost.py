"""Input cost and honest limits over real HTTP, against the real ensemble: hostile Unicode costs
no more than plain Korean of the same length, invisible-only text is refused like whitespace,
long texts are read to their end, and a batch is held to its character budget."""

from __future__ import annotations

import json
import statistics
import time
import unicodedata
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from tests.support.models import EnsembleVersions
from tests.support.servers import AppServer, MlflowServer

pytestmark = pytest.mark.integration

TEXT_CHARS = 5000
BATCH = 64
BUDGET = TEXT_CHARS * BATCH


@pytest.fixture(scope="module")
def app(
    tmp_path_factory: pytest.TempPathFactory, mlflow_server: MlflowServer, ensemble_fit: Any
) -> Iterator[AppServer]:
    name = f"input-{uuid.uuid4().hex[:8]}"
    EnsembleVersions(ensemble_fit, mlflow_server.url, name).register()
    server = AppServer(
        tmp_path_factory.mktemp("input-app"),
        mlflow_server.url,
        env={
            "BLUEGREEN_MODEL_NAME": name,
            "BLUEGREEN_MAX_TEXT_CHARS": str(TEXT_CHARS),
            "BLUEGREEN_MAX_BATCH": str(BATCH + 1),  # so that only the budget refuses 65 texts
            "BLUEGREEN_MAX_BATCH_CHARS": str(BUDGET),
            "BLUEGREEN_MAX_BODY_BYTES": str(4 << 20),
        },
    )
    try:
        server.start()
        yield server
    finally:
        server.stop()


def _post(client: httpx.Client, path: str, payload: Any) -> httpx.Response:
    # raw UTF-8, not \\u escapes: a batch of marks would be three times the bytes of Korean
    body = json.dumps(payload, ensure_ascii=False).encode()
    return client.post(path, content=body, headers={"content-type": "application/json"})


def _korean_batch() -> list[str]:
    review = "정말 최고의 영화 재밌다 ㅋㅋ 배우 연기 좋다 스토리도 탄탄하고 음악도 훌륭했다 "
    long = review * (TEXT_CHARS // len(review) + BATCH)
    return [long[i : i + TEXT_CHARS] for i in range(BATCH)]


def _combining_batch() -> list[str]:
    """Runs of combining marks that NFC, unbounded, reorders in quadratic time."""
    rng = np.random.default_rng(7)
    marks = [chr(c) for c in range(0x20000) if unicodedata.combining(chr(c))]
    n = TEXT_CHARS - 1
    kinds = [
        lambda: "a" + "".join(sorted(rng.choice(marks, n), key=unicodedata.combining)[::-1]),
        lambda: "a" + "".join(rng.choice(marks, n)),
        lambda: "\u0f73" * TEXT_CHARS,  # decomposes into two non-starters
        lambda: "a" + "\u0301" * n,
    ]
    return [kinds[i % len(kinds)]() for i in range(BATCH)]


def test_a_batch_of_combining_marks_costs_at_most_three_korean_batches(app: AppServer) -> None:
    korean, hostile = _korean_batch(), _combining_batch()
    assert sum(map(len, korean)) == sum(map(len, hostile)) == BUDGET
    times: dict[str, list[float]] = {"korean": [], "hostile": []}
    with httpx.Client(base_url=app.url, timeout=60) as client:
        for _ in range(2):  # warm-up: first requests pay one-off costs
            for texts in (korean, hostile):
                assert _post(client, "/predict/batch", {"texts": texts}).status_code == 200
        for _ in range(7):  # alternate, so that load from elsewhere hits both alike
            for name, texts in (("korean", korean), ("hostile", hostile)):
                started = time.perf_counter()
                response = _post(client, "/predict/batch", {"texts": texts})
                times[name].append(time.perf_counter() - started)
                assert response.status_code == 200, response.text[:300]
                assert len(response.json()["results"]) == BATCH
    korean_s, hostile_s = (statistics.median(times[k]) for k in ("korean", "hostile"))
    assert hostile_s <= 3 * korean_s, times


@pytest.mark.parametrize("text", ["\u200b", "\ufeff", "\x00", "\u200b\ufeff\x00 \u2028"])
def test_invisible_only_text_is_400_like_whitespace(app: AppServer, text: str) -> None:
    with httpx.Client(base_url=app.url, timeout=30) as client:
        blank = _post(client, "/predict", {"text": "  \t "})
        response = _post(client, "/predict", {"text": text})
        in_batch = _post(client, "/predict/batch", {"texts": ["최고의 영화", text]})
    assert blank.status_code == response.status_code == in_batch.status_code == 400
    want = {k: blank.json()[k] for k in ("status_code", "error", "detail", "field")}
    assert {k: response.json()[k] for k in want} == want
    assert in_batch.json()["field"] == "texts[1]"
    assert in_batch.json()["detail"] == want["detail"]


def test_a_long_text_is_read_to_its_end(app: AppServer) -> None:
    """4,000 characters whose second half turns negative: the answer sees the second half
    (the model once read the first 2,000 characters only, and answered as for the first)."""
    head = ("주말에 극장에서 이 영화를 봤다 " * 200)[:2000]
    tail = ("최악의 영화 시간 낭비 돈 아까움 " * 200)[:2000]
    with httpx.Client(base_url=app.url, timeout=30) as client:
        first = _post(client, "/predict", {"text": head}).json()
        whole = _post(client, "/predict", {"text": head + tail}).json()
        too_long = _post(client, "/predict", {"text": "가" * (TEXT_CHARS + 1)})
    assert whole["sentiment"] == "부정"
    assert whole["details"]["부정"] > first["details"]["부정"] + 0.1, (first, whole)
    assert too_long.status_code == 400
    assert str(TEXT_CHARS) in too_long.json()["detail"]


def test_a_batch_over_the_character_budget_is_400_naming_it(app: AppServer) -> None:
    texts = [*_korean_batch(), "한 글자 더"]
    with httpx.Client(base_url=app.url, timeout=30) as client:
        response = _post(client, "/predict/batch", {"texts": texts})
    assert response.status_code == 400
    body = response.json()
    assert (body["error"], body["field"]) == ("invalid_request", "texts")
    assert str(BUDGET) in body["detail"]
