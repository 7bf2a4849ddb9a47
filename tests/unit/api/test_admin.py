"""The admin control plane: bearer auth on every route, strict bodies, 4xx for bad states."""

from __future__ import annotations

import io
import json
import logging
import re
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient
from prometheus_client import REGISTRY

from bluegreen.api.admin_auth import FailureThrottle
from bluegreen.logging import JsonFormatter
from tests.fakes import FakeLoader, FakeRegistry
from tests.unit.api.conftest import ADMIN, TOKEN, ClientFactory

JSON = {"Content-Type": "application/json"}


def admin_calls(app: Litestar) -> list[tuple[str, str]]:
    """Every (method, path) the app serves under /admin, path parameters filled in."""
    calls = []
    for route in app.routes:
        if not route.path.startswith("/admin"):
            continue
        path = re.sub(r"\{[^}]+\}", "1", route.path)
        calls.extend((method, path) for method in sorted(route.methods) if method != "OPTIONS")
    return calls


def call(client: TestClient[Any], method: str, path: str, **kwargs: Any) -> Any:
    body = {"percent": 5} if path == "/admin/canary" else None
    return client.request(method, path, json=body, **kwargs)


def test_the_admin_surface_is_what_we_think(client: TestClient[Any]) -> None:
    calls = admin_calls(client.app)  # type: ignore[arg-type]
    assert ("GET", "/admin/slots") in calls
    assert ("POST", "/admin/promote") in calls
    assert ("POST", "/admin/rollback") in calls
    assert ("POST", "/admin/reload") in calls
    assert ("PUT", "/admin/canary") in calls


def test_every_admin_route_requires_a_token(client: TestClient[Any]) -> None:
    """Enumerates app.routes, so a new admin route cannot slip in unprotected."""
    calls = admin_calls(client.app)  # type: ignore[arg-type]
    assert len(calls) >= 5
    for method, path in calls:
        response = call(client, method, path)
        assert response.status_code in (401, 403), (method, path, response.status_code)
        assert response.json()["status_code"] == response.status_code


def test_every_admin_route_refuses_a_wrong_token(client: TestClient[Any]) -> None:
    for method, path in admin_calls(client.app):  # type: ignore[arg-type]
        response = call(client, method, path, headers={"Authorization": "Bearer nope"})
        assert response.status_code == 401, (method, path)


def test_every_admin_route_is_403_when_admin_is_disabled(api: ClientFactory) -> None:
    with api(admin_token=None) as client:
        calls = admin_calls(client.app)  # type: ignore[arg-type]
        for method, path in calls:
            for headers in ({}, ADMIN, {"Authorization": "Bearer "}):
                response = call(client, method, path, headers=headers)
                assert response.status_code == 403, (method, path, headers)
                assert response.json()["error"] == "forbidden"


def test_missing_token_is_401_with_www_authenticate(client: TestClient[Any]) -> None:
    response = client.get("/admin/slots")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"] == "unauthorized"


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer wrong",
        f"Bearer {TOKEN}x",
        f"Bearer {TOKEN[:-1]}",
        f"Basic {TOKEN}",
        TOKEN,
        "Bearer",
        "Bearer ",
        f"Token {TOKEN}",
        "Bearer 토큰".encode(),
        b"Bearer \xff\xfe",
    ],
)
def test_wrong_token_is_401(client: TestClient[Any], authorization: str | bytes) -> None:
    response = client.get("/admin/slots", headers={"Authorization": authorization})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


def test_right_token_is_200(client: TestClient[Any]) -> None:
    response = client.get("/admin/slots", headers=ADMIN)
    assert response.status_code == 200
    body = response.json()
    assert body["live"] in ("blue", "green")
    assert {s["slot"] for s in body["slots"]} == {"blue", "green"}
    live = next(s for s in body["slots"] if s["slot"] == body["live"])
    assert live["state"] == "live"
    assert live["version"] == 1
    assert body["registry"]["last_error"] is None


def test_scheme_is_case_insensitive(client: TestClient[Any]) -> None:
    response = client.get("/admin/slots", headers={"Authorization": f"bearer {TOKEN}"})
    assert response.status_code == 200


BAD_CANARY: list[tuple[str, Any, str | None]] = [
    ("over 100", {"percent": 101}, "percent"),
    ("negative", {"percent": -1}, "percent"),
    ("string", {"percent": "5"}, "percent"),
    ("null", {"percent": None}, "percent"),
    ("bool", {"percent": True}, "percent"),
    ("missing", {}, "percent"),
    ("unknown field", {"percent": 5, "share": 0.05}, "share"),
    ("top-level array", [5], None),
    ("top-level number", 5, None),
]


@pytest.mark.parametrize(("case", "payload", "field"), BAD_CANARY, ids=[c[0] for c in BAD_CANARY])
def test_bad_canary_body_is_400(
    client: TestClient[Any], case: str, payload: Any, field: str | None
) -> None:
    response = client.put(
        "/admin/canary", content=json.dumps(payload).encode(), headers={**ADMIN, **JSON}
    )
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["status_code"] == 400
    if field is not None:
        assert body["field"] == field


BAD_PROMOTE: list[tuple[str, Any, str | None]] = [
    ("zero", {"version": 0}, "version"),
    ("negative", {"version": -3}, "version"),
    ("string", {"version": "2"}, "version"),
    ("float", {"version": 1.5}, "version"),
    ("integral float", {"version": 2.0}, "version"),
    ("bool", {"version": True}, "version"),
    ("unknown field", {"version": 1, "force": True}, "force"),
    ("top-level array", [1], None),
]


@pytest.mark.parametrize(("case", "payload", "field"), BAD_PROMOTE, ids=[c[0] for c in BAD_PROMOTE])
def test_bad_promote_body_is_400(
    client: TestClient[Any], case: str, payload: Any, field: str | None
) -> None:
    response = client.post(
        "/admin/promote", content=json.dumps(payload).encode(), headers={**ADMIN, **JSON}
    )
    assert response.status_code == 400, response.text
    body = response.json()
    if field is not None:
        assert body["field"] == field


def test_bad_json_to_admin_is_400(client: TestClient[Any]) -> None:
    response = client.put("/admin/canary", content=b"{nope", headers={**ADMIN, **JSON})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_json"


def test_promote_without_candidate_is_409(client: TestClient[Any]) -> None:
    for kwargs in ({}, {"json": {}}, {"json": {"version": None}}):
        response = client.post("/admin/promote", headers=ADMIN, **kwargs)
        assert response.status_code == 409, response.text
        assert response.json()["error"] == "conflict"


def test_rollback_without_previous_is_409(client: TestClient[Any]) -> None:
    response = client.post("/admin/rollback", headers=ADMIN)
    assert response.status_code == 409
    assert "no previous version" in response.json()["detail"]


def test_abort_without_canary_is_409(client: TestClient[Any]) -> None:
    assert client.post("/admin/canary/abort", headers=ADMIN).status_code == 409


def test_pin_unknown_version_is_404(client: TestClient[Any]) -> None:
    response = client.post("/admin/promote", json={"version": 99}, headers=ADMIN)
    assert response.status_code == 404
    body = response.json()
    assert body["error"] == "not_found"
    assert "99" in body["detail"]


def test_pin_rejected_version_is_422(api: ClientFactory, registry: FakeRegistry) -> None:
    registry.add(2, alias=False)
    registry.versions[2]["bluegreen.rejected"] = "smoke: nan"
    with api() as client:
        response = client.post("/admin/promote", json={"version": 2}, headers=ADMIN)
        assert response.status_code == 422
        assert response.json()["error"] == "rejected"


def test_admin_happy_path_pin_and_rollback(api: ClientFactory, registry: FakeRegistry) -> None:
    registry.add(2, alias=False)
    with api() as client:
        pinned = client.post("/admin/promote", json={"version": 2}, headers=ADMIN)
        assert pinned.status_code == 200, pinned.text
        assert pinned.json()["version"] == 2
        assert registry.alias == 2
        first = client.post("/predict", json={"text": "최고"})
        assert first.headers["x-model-version"] == "2"

        rolled = client.post("/admin/rollback", headers=ADMIN)
        assert rolled.status_code == 200, rolled.text
        assert rolled.json()["version"] == 1
        assert client.post("/predict", json={"text": "최고"}).headers["x-model-version"] == "1"
        assert client.get("/admin/slots", headers=ADMIN).json()["previous_version"] == 2


def test_admin_canary_reload_promote_and_abort(api: ClientFactory, registry: FakeRegistry) -> None:
    with api(canary_min_requests=10**6, canary_min_seconds=10**5) as client:
        share = client.put("/admin/canary", json={"percent": 25}, headers=ADMIN)
        assert share.status_code == 200
        assert share.json() == {"percent": 25, "fleet_error": None}
        assert registry.canary_percent == 25

        registry.add(2)
        reload = client.post("/admin/reload", headers=ADMIN)
        assert reload.status_code == 200
        assert reload.json()["status"] == "deployed"
        slots = client.get("/admin/slots", headers=ADMIN).json()
        assert slots["candidate"] is not None
        assert slots["canary_share"] == 0.25

        promoted = client.post("/admin/promote", headers=ADMIN)
        assert promoted.status_code == 200
        assert promoted.json()["version"] == 2

        registry.add(3)
        client.post("/admin/reload", headers=ADMIN)
        aborted = client.post("/admin/canary/abort", headers=ADMIN)
        assert aborted.status_code == 200
        assert aborted.json() == {"aborted_version": 3}
        assert "bluegreen.rejected" in registry.versions[3]


def test_reload_behind_a_stuck_load_is_202_in_progress(
    api: ClientFactory, registry: FakeRegistry, loader: FakeLoader
) -> None:
    loader.hangs.add(2)
    try:
        with api(admin_reload_wait_s=0.3, load_timeout_s=30) as client:
            registry.add(2)
            response = client.post("/admin/reload", headers=ADMIN)
            assert response.status_code == 202, response.text
            assert response.json()["status"] == "in_progress"
            assert response.json()["version"] == 2
            assert client.get("/readyz").json()["version"] == 1  # live serves meanwhile
    finally:
        loader.unblock.set()


def test_registry_down_on_reload_is_503(api: ClientFactory, registry: FakeRegistry) -> None:
    with api() as client:
        registry.down = True
        response = client.post("/admin/reload", headers=ADMIN)
        assert response.status_code == 503
        assert response.json()["error"] == "registry_unavailable"
        assert response.headers["retry-after"]


def test_admin_token_never_reaches_the_logs(
    api: ClientFactory,
    registry: FakeRegistry,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = logging.getLogger()
    # Let create_app install its JSON handler on this test's captured stdout (restored after).
    monkeypatch.setattr(root, "handlers", [])
    sink = io.StringIO()
    registry.add(2, alias=False)
    wrong = "Bearer wrong-" + TOKEN[::-1]
    with api(log_level="DEBUG", admin_auth_max_failures=100) as client:
        extra = logging.StreamHandler(sink)
        extra.setFormatter(JsonFormatter())
        root.addHandler(extra)
        root.addHandler(caplog.handler)
        caplog.set_level(logging.DEBUG)
        for headers in ({"Authorization": wrong}, {"Authorization": TOKEN}, ADMIN):
            client.get("/admin/slots", headers=headers)
            client.post("/admin/reload", headers=headers)
            client.put("/admin/canary", json={"percent": 10}, headers=headers)
            client.post("/admin/promote", json={"version": 2}, headers=headers)
            client.post("/admin/rollback", headers=headers)
            client.post("/admin/promote", json={"version": "x"}, headers=headers)
        client.post("/predict", json={"text": "최고"}, headers=ADMIN)
    captured = capsys.readouterr()
    logged = captured.out + captured.err + sink.getvalue() + caplog.text
    logged += "".join(repr(r.__dict__) for r in caplog.records)
    assert "admin.action" in logged  # the audit log did run and was captured
    assert TOKEN not in logged
    assert TOKEN[::-1] not in logged
    assert registry.versions[2]["bluegreen.promoted_by"]
    assert TOKEN not in json.dumps(registry.versions)


def test_failed_logins_are_logged_and_throttled_per_peer(
    api: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    def counted(reason: str) -> float:
        value = REGISTRY.get_sample_value("bluegreen_admin_auth_failures_total", {"reason": reason})
        return value or 0.0

    before = {reason: counted(reason) for reason in ("invalid", "throttled")}
    with api(admin_auth_max_failures=3, admin_auth_window_s=60) as client:
        for _ in range(3):
            bad = client.get("/admin/slots", headers={"Authorization": "Bearer nope"})
            assert bad.status_code == 401
        # The fourth try is refused before the token is looked at: even the right one.
        throttled = client.get("/admin/slots", headers=ADMIN)
        assert throttled.status_code == 429
        assert throttled.json()["error"] == "too_many_requests"
        assert 1 <= int(throttled.headers["retry-after"]) <= 60
        failures = [r for r in caplog.records if r.getMessage() == "admin.auth_failed"]
        assert len(failures) == 3  # one line per failure; throttled tries only count a metric
        fields = failures[-1].fields  # type: ignore[attr-defined]
        assert fields["peer"] == "testclient"
        assert fields["reason"] == "invalid"
        assert fields["throttled"] is True
        assert counted("invalid") - before["invalid"] == 3
        assert counted("throttled") - before["throttled"] == 1


def test_the_throttle_window_slides() -> None:
    throttle = FailureThrottle(max_failures=2, window_s=10)
    assert throttle.retry_after("a", 0) is None
    throttle.record("a", 0)
    throttle.record("a", 5)
    assert throttle.retry_after("a", 6) == pytest.approx(4)
    assert throttle.retry_after("b", 6) is None  # per peer
    assert throttle.retry_after("a", 10.5) is None
    assert throttle.record("a", 11) == 2  # the stamp at 0 has left the window


def test_audit_log_keeps_actor_and_peer_apart(
    api: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    with api() as client:
        spoof = {**ADMIN, "X-Admin-Actor": "alice@10.0.0.9"}
        assert client.post("/admin/reload", headers=spoof).status_code == 200
        audit = [r for r in caplog.records if r.getMessage() == "admin.action"]
        fields = audit[-1].fields  # type: ignore[attr-defined]
        assert fields["actor"] == "alice@10.0.0.9"
        assert fields["peer"] == "testclient"
        assert "who" not in fields


@pytest.mark.parametrize("actor", ["", "a b", "x\u0085y", "a" * 65, "eve\nlevel=error", "관리자"])
def test_an_actor_that_could_forge_log_structure_is_400(
    api: ClientFactory, caplog: pytest.LogCaptureFixture, actor: str
) -> None:
    with api() as client:
        headers = {**ADMIN, "X-Admin-Actor": actor.encode("utf-8")}
        response = client.post("/admin/reload", headers=headers)  # type: ignore[arg-type]
        assert response.status_code == 400, response.text
        assert response.json()["field"] == "x-admin-actor"
        # Refused before acting: no reload ran, so nothing was audited.
        assert not [r for r in caplog.records if r.getMessage() == "admin.action"]
