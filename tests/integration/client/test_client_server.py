"""bluegreen.client over real sockets: the async client against a real uvicorn server and a
real `mlflow server` (the README journey drives the sync client through the CLI). A pin
waits for a real load and smoke test, a binary V2 inference is pinned to the new version, a
rollback goes back, and a refusal carries the id the server gave the request."""

from __future__ import annotations

import pytest

from bluegreen.client import AsyncClient, Conflict, NotFound, Unauthorized
from tests.integration.conftest import AppFactory
from tests.support.models import TestRegistry

pytestmark = pytest.mark.integration
TOKEN = "client-token"


@pytest.mark.timeout(300)
async def test_the_async_client_against_a_real_server(
    registry: TestRegistry, start_app: AppFactory
) -> None:
    v1 = registry.register()
    app = start_app(env={"BLUEGREEN_ADMIN_TOKEN": TOKEN})
    bg = AsyncClient(app.url, token=TOKEN, actor="ops@client", model_name=registry.model_name)
    async with bg:
        assert (await bg.ready()).version == v1
        assert await bg.server_ready()
        assert (await bg.predict("최고의 영화", request_id="it-1")).model_version == v1

        v2 = registry.register(alias=None)
        pinned = await bg.promote(v2)
        assert (pinned.version, pinned.from_version) == (v2, v1)
        inference = await bg.infer(["최고의 영화", "최악"], version=v2, binary=True, id="b1")
        assert (inference.model_version, inference.id) == (v2, "b1")
        assert len(inference.probabilities) == 2
        with pytest.raises(NotFound):
            await bg.infer(["최고"], version=v2 + 5)

        back = await bg.rollback()
        assert (back.version, back.from_version) == (v1, v2)
        assert (await bg.slots()).live_version == v1
        view = await bg.versions()
        assert view.alias.version == v1
        assert view.history[0].action == "rollback"
        assert "ops@client" in view.history[0].who

        with pytest.raises(Conflict) as refused:
            await bg.rollback()
        assert refused.value.request_id  # made by the server: the client sent none

    async with AsyncClient(app.url, token="wrong") as stranger:
        with pytest.raises(Unauthorized):
            await stranger.slots()
