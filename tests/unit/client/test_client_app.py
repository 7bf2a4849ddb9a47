"""The client against the real app (create_app over FakeRegistry/FakeLoader): every route it
calls answers what it parses, errors arrive as the right class with their request id."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import AsyncTestClient, TestClient

from bluegreen.client import (
    AsyncClient,
    BadRequest,
    Client,
    Conflict,
    Forbidden,
    NotFound,
    Unauthorized,
    Unprocessable,
)
from bluegreen.serving.contract import LABELS
from tests.fakes import FakeLoader, FakeRegistry
from tests.unit.api.conftest import TOKEN, start_app


def test_predict_answers_one_text(client: Client) -> None:
    prediction = client.predict("최고의 영화")
    assert prediction.model_version == 1
    assert prediction.sentiment in LABELS
    assert prediction.score == max(prediction.details.values())
    assert set(prediction.details) == set(LABELS)


def test_predict_batch_answers_every_text_from_one_version(client: Client) -> None:
    batch = client.predict_batch(["최고", "최악", "그냥 그래"])
    assert len(batch.results) == 3
    assert batch.model_version == 1
    assert batch.model_slot in ("blue", "green")


def test_a_refused_input_is_bad_request_naming_the_field_and_the_request_id(
    client: Client,
) -> None:
    with pytest.raises(BadRequest) as caught:
        client.predict("   ", request_id="client-req-1")
    error = caught.value
    assert error.status_code == 400
    assert error.error == "invalid_request"
    assert error.field == "text"
    assert error.request_id == "client-req-1"


def test_too_many_texts_is_bad_request(client: Client) -> None:
    with pytest.raises(BadRequest, match="at most 4 texts"):
        client.predict_batch(["a"] * 5)


def test_health_and_readiness(client: Client) -> None:
    assert client.health().status == "ok"
    ready = client.ready()
    assert ready.ready
    assert ready.version == 1


def test_readiness_is_an_answer_not_an_error_before_a_version_serves(
    tmp_path: Any, loader: FakeLoader
) -> None:
    for app in start_app(tmp_path, FakeRegistry(), loader, ready=False):
        ready = Client(http=app).ready()
        assert not ready.ready
        assert ready.status == "not_ready"
        assert ready.reason


def test_v2_metadata_and_health(client: Client) -> None:
    assert client.server_live()
    assert client.server_ready()
    server = client.server_metadata()
    assert server.name == "bluegreen"
    assert "binary_tensor_data" in server.extensions
    model = client.model_metadata()
    assert model.name == "ensemble-sentiment-model"
    assert model.versions == ["1"]
    assert [t.name for t in model.outputs] == ["probabilities", "label"]
    assert client.model_metadata(1).parameters["role"] == "live"
    assert client.model_ready()
    assert client.model_ready(1)
    assert not client.model_ready(7)


@pytest.mark.parametrize("binary", [False, True])
def test_v2_infer_json_and_binary_agree_with_predict(client: Client, binary: bool) -> None:
    texts = ["정말 최고의 영화", "시간 낭비"]
    inference = client.infer(texts, id="r1", binary=binary)
    assert inference.model_version == 1
    assert inference.id == "r1"
    assert inference.slot in ("blue", "green")
    batch = client.predict_batch(texts)
    assert inference.labels == [r.sentiment for r in batch.results]
    for row, result in zip(inference.probabilities, batch.results, strict=True):
        assert row == pytest.approx([result.details[label] for label in LABELS], abs=1e-6)


def test_v2_infer_pinned_to_a_version_that_is_not_loaded_is_not_found(client: Client) -> None:
    assert client.infer(["좋아요"], version=1).model_version == 1
    with pytest.raises(NotFound) as caught:
        client.infer(["좋아요"], version=9, request_id="pin-9")
    assert "not loaded" in caught.value.error  # OIP errors carry only a text
    assert caught.value.request_id == "pin-9"


def test_v2_infer_of_an_unknown_model_is_not_found(app: TestClient[Any]) -> None:
    with pytest.raises(NotFound, match="unknown model"):
        Client(http=app, model_name="other-model").infer(["좋아요"])


def test_admin_slots_names_the_live_version(client: Client) -> None:
    slots = client.slots()
    assert slots.model == "ensemble-sentiment-model"
    assert slots.live_version == 1
    assert slots.readiness is not None
    assert slots.readiness.ready


def test_admin_needs_the_right_token(app: TestClient[Any]) -> None:
    with pytest.raises(Unauthorized) as caught:
        Client(http=app).slots()
    assert caught.value.status_code == 401
    with pytest.raises(Unauthorized):
        Client(token="wrong", http=app).slots()


def test_admin_disabled_is_forbidden(tmp_path: Any, loader: FakeLoader) -> None:
    registry = FakeRegistry()
    registry.add(1)
    for app in start_app(tmp_path, registry, loader, ready=True, admin_token=None):
        with pytest.raises(Forbidden):
            Client(token=TOKEN, http=app).slots()


def test_an_invalid_actor_is_refused_before_anything_happens(app: TestClient[Any]) -> None:
    with pytest.raises(BadRequest):
        Client(token=TOKEN, actor="no spaces allowed", http=app).reload()


def test_reload_deploys_what_the_registry_names_and_rollback_goes_back(
    client: Client, registry: FakeRegistry
) -> None:
    registry.add(2)
    reloaded = client.reload()
    assert reloaded.status == "deployed"
    assert reloaded.version == 2
    assert client.predict("좋아요").model_version == 2
    back = client.rollback()
    assert back.version == 1
    assert client.predict("좋아요").model_version == 1
    assert client.slots().live_version == 1


def test_rollback_walks_back_through_the_fleet_history_never_forward(
    client: Client, registry: FakeRegistry
) -> None:
    for version in (2, 3):
        registry.add(version)
        assert client.reload().version == version
    assert client.rollback().version == 2
    second = client.rollback()
    assert (second.version, second.from_version) == (1, 2)
    assert client.predict("좋아요").model_version == 1
    with pytest.raises(Conflict):
        client.rollback()
    view = client.versions()
    assert view.alias.version == 1
    assert view.live_version == 1
    assert [h.action for h in view.history[:2]] == ["rollback", "rollback"]
    assert [v.version for v in view.versions] == [3, 2, 1]


def test_reject_and_unreject_a_version(client: Client, registry: FakeRegistry) -> None:
    registry.add(2, alias=False)
    rejected = client.reject(2, "answers wrong on sarcasm")
    assert rejected.version == 2
    assert rejected.rejected is not None
    assert "answers wrong on sarcasm" in rejected.rejected
    view = client.versions()
    assert next(v for v in view.versions if v.version == 2).rejected == rejected.rejected
    with pytest.raises(Unprocessable):
        client.promote(2)
    cleared = client.unreject(2)
    assert cleared.was == rejected.rejected
    with pytest.raises(Conflict):
        client.unreject(2)
    assert client.promote(2).version == 2
    assert client.slots().live_version == 2
    with pytest.raises(NotFound):
        client.reject(99, "no such version")


def test_promote_without_a_candidate_is_a_conflict(client: Client) -> None:
    with pytest.raises(Conflict) as caught:
        client.promote(request_id="promote-1")
    assert caught.value.request_id == "promote-1"


def test_pinning_an_unknown_version_is_not_found(client: Client) -> None:
    with pytest.raises(NotFound):
        client.promote(42)


def test_pinning_a_registered_version_serves_it(client: Client, registry: FakeRegistry) -> None:
    registry.add(2, alias=False)
    result = client.promote(2)
    assert result.version == 2
    assert client.slots().live_version == 2


def test_canary_percent_and_abort(client: Client) -> None:
    assert client.set_canary(12.5).percent == 12.5
    with pytest.raises(Conflict):
        client.abort_canary()
    with pytest.raises(BadRequest):
        client.set_canary(120)


async def test_the_async_client_speaks_the_same_api(
    tmp_path: Any, registry: FakeRegistry, loader: FakeLoader
) -> None:
    from bluegreen.app import create_app
    from bluegreen.settings import Settings

    settings = Settings.of(state_dir=tmp_path, bootstrap=False, admin_token=TOKEN)
    app = create_app(settings, registry=registry, loader_factory=loader.factory)  # type: ignore[arg-type]
    async with AsyncTestClient(app) as http, AsyncClient(token=TOKEN, http=http) as client:
        for _ in range(500):
            if (await client.ready()).ready:
                break
            await __import__("asyncio").sleep(0.01)
        assert (await client.predict("최고")).model_version == 1
        assert len((await client.predict_batch(["a", "b"])).results) == 2
        assert (await client.infer(["a"], binary=True)).model_version == 1
        assert (await client.slots()).live_version == 1
        with pytest.raises(Conflict):
            await client.rollback()
