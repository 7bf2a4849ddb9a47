"""The fleet's promotion history lives in the registry: rollback walks back one step per call
(v3 -> v2 -> v1), never forward, and a restarted server follows the same history; a version
rejected by an admin is un-rejected and then served; workers that record the same event at
the same moment leave one entry. Real mlflow server, real uvicorn."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from bluegreen.control import history
from bluegreen.registry import Registry
from tests.integration.conftest import AppFactory
from tests.support.faults import served_version, wait_until
from tests.support.models import TestRegistry

pytestmark = pytest.mark.integration
TOKEN = "history-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}", "X-Admin-Actor": "ops@history"}
ENV = {"BLUEGREEN_ADMIN_TOKEN": TOKEN}


def admin(url: str, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
    return httpx.request(method, f"{url}/admin{path}", json=body, headers=ADMIN, timeout=60)


def serves(url: str, version: int) -> None:
    wait_until(lambda: served_version(url) == version, timeout=30, what=f"serves v{version}")


@pytest.mark.timeout(300)
def test_rollback_walks_back_the_registry_history_across_a_restart(
    registry: TestRegistry, start_app: AppFactory
) -> None:
    v1 = registry.register()
    app = start_app(env=ENV)
    serves(app.url, v1)
    v2 = registry.register()  # a trainer's `--alias production`: followed, and recorded
    serves(app.url, v2)
    v3 = registry.register()
    serves(app.url, v3)

    first = admin(app.url, "POST", "/rollback")
    assert first.status_code == 200, first.text
    assert (first.json()["version"], first.json()["from_version"]) == (v2, v3)
    serves(app.url, v2)
    assert registry.alias_version() == v2

    # A new process knows nothing but the registry: it serves v2 and goes back to v1 from
    # there (before, a restarted process answered 409, and a second rollback went forward).
    app.stop()
    restarted = start_app(env=ENV)
    serves(restarted.url, v2)
    second = admin(restarted.url, "POST", "/rollback")
    assert second.status_code == 200, second.text
    assert (second.json()["version"], second.json()["from_version"]) == (v1, v2)
    serves(restarted.url, v1)
    assert registry.alias_version() == v1

    nothing = admin(restarted.url, "POST", "/rollback")
    assert nothing.status_code == 409, nothing.text
    assert nothing.json()["error"] == "conflict"

    view = admin(restarted.url, "GET", "/versions").json()
    assert view["alias"] == {"name": "production", "version": v1}
    assert view["live_version"] == v1
    steps = [(e["action"], e["version"], e["from_version"]) for e in view["history"]]
    assert steps == [
        ("rollback", v1, v2), ("rollback", v2, v3), ("promote", v3, v2), ("promote", v2, v1),
        ("bootstrap", v1, None),
    ]  # fmt: skip
    assert view["history"][0]["who"].startswith("ops@history from ")
    assert [v["version"] for v in view["versions"]] == [v3, v2, v1]
    assert all(v["in_history"] and v["rejected"] is None for v in view["versions"])


@pytest.mark.timeout(240)
def test_a_rejected_version_is_unrejected_and_then_served(
    registry: TestRegistry, start_app: AppFactory
) -> None:
    v1 = registry.register()
    app = start_app(env=ENV)
    serves(app.url, v1)
    v2 = registry.register()
    serves(app.url, v2)

    rejected = admin(app.url, "POST", "/reject", {"version": v2, "reason": "wrong labels"})
    assert rejected.status_code == 200, rejected.text
    serves(app.url, v1)  # it was live: the fleet went back to the last good version
    assert registry.alias_version() == v1
    assert registry.tags(v2)["bluegreen.rejected"].startswith("admin: wrong labels")
    assert admin(app.url, "POST", "/reject", {"version": 999, "reason": "x"}).status_code == 404

    refused = admin(app.url, "POST", "/promote", {"version": v2})
    assert refused.status_code == 422, refused.text
    view = admin(app.url, "GET", "/versions").json()
    assert {v["version"]: v["rejected"] for v in view["versions"]}[v2].startswith("admin: ")

    cleared = admin(app.url, "POST", "/unreject", {"version": v2})
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["was"].startswith("admin: wrong labels")
    tags = registry.tags(v2)
    assert "bluegreen.rejected" not in tags
    assert "ops@history" in tags["bluegreen.unrejected"]  # the audit entry
    again = admin(app.url, "POST", "/unreject", {"version": v2})
    assert again.status_code == 409, again.text

    pinned = admin(app.url, "POST", "/promote", {"version": v2})
    assert pinned.status_code == 200, pinned.text
    serves(app.url, v2)
    assert registry.alias_version() == v2
    actions = [(e["action"], e["version"]) for e in admin(app.url, "GET", "/versions").json()[
        "history"]]  # fmt: skip
    assert actions[:2] == [("pin", v2), ("repair", v1)]


def test_processes_that_record_one_event_at_the_same_moment_leave_one_entry(
    registry: TestRegistry,
) -> None:
    registry.register()
    # Two workers' registry clients; both read the history, then both append: the
    # interleaving that gave every follower of one alias move an entry of its own.
    first, second = (Registry(registry.tracking_uri, registry.model_name, "production", ())
                     for _ in range(2))  # fmt: skip
    follow = history.Entry(2, 1, history.Action.PROMOTE, "bluegreen", "followed alias", 1.0)
    for event_id in ("promote:2", None):
        read_first, read_second = first.control_view(), second.control_view()
        keys = {
            first.append_history(follow.to_json(), 100, read_first.history, event_id=event_id),
            second.append_history(follow.to_json(), 100, read_second.history, event_id=event_id),
        }
        entries = history.parse(first.control_view().history)
        if event_id is not None:
            assert len(keys) == 1, keys
            assert len(entries) == 1, entries
        else:  # distinct events (two admins' actions) must both stay
            assert len(keys) == 2, keys
            assert len(entries) == 3, entries
