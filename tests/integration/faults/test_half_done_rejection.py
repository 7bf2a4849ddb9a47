"""A rejection is written in two steps: the `bluegreen.rejected` tag, then the alias move. When
the second is lost (registry error, SIGTERM in between), the alias stays on a rejected version
and a fresh worker used to find nothing servable (503). Now it serves the last good version in
the registry-kept history and moves the alias there (a `repair` history entry)."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.conftest import AppFactory
from tests.support.faults import served_version, wait_until
from tests.support.models import TestRegistry

pytestmark = pytest.mark.integration
TOKEN = "repair-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
ENV = {"BLUEGREEN_ADMIN_TOKEN": TOKEN}


@pytest.mark.timeout(240)
def test_a_fresh_server_repairs_an_alias_left_on_a_rejected_version(
    registry: TestRegistry, start_app: AppFactory
) -> None:
    v1 = registry.register()
    app = start_app(env=ENV)
    wait_until(lambda: served_version(app.url) == v1, timeout=30, what="serves v1")
    v2 = registry.register()
    wait_until(lambda: served_version(app.url) == v2, timeout=30, what="serves v2")
    app.stop()

    # The half-done rejection: v3 tagged, the alias still on it.
    v3 = registry.register()
    registry.client.set_model_version_tag(
        registry.model_name, str(v3), "bluegreen.rejected", "smoke: nan (alias move lost)"
    )
    assert registry.alias_version() == v3

    fresh = start_app(env=ENV)  # waits for /readyz: before, it never became ready
    assert served_version(fresh.url) == v2
    wait_until(lambda: registry.alias_version() == v2, timeout=10, what="alias repaired")
    history = httpx.get(f"{fresh.url}/admin/versions", headers=ADMIN, timeout=10).json()["history"]
    assert (history[0]["action"], history[0]["version"], history[0]["from_version"]) == (
        "repair", v2, v3,
    )  # fmt: skip
    assert "alias move lost" in history[0]["why"]
    events = [e["event"] for e in fresh.log_events()]
    assert "registry.alias.repaired" in events
    assert "model.load.start" in events
    loads = [e for e in fresh.log_events() if e["event"] == "model.load.start"]
    assert [e["version"] for e in loads] == [v2]  # the rejected version is never loaded
