"""The control plane under abuse, over real HTTP against one real server: spoofed actors and
forwarded addresses, guessed tokens, replayed webhooks."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from mlflow.webhooks.delivery import _generate_hmac_signature

from tests.integration.conftest import AppFactory
from tests.support.models import TestRegistry
from tests.support.servers import AppServer

pytestmark = pytest.mark.integration
TOKEN = "abuse-admin-token-51c2"
SECRET = "abuse-webhook-secret"
MAX_FAILURES = 5


@pytest.fixture
def app(registry: TestRegistry, start_app: AppFactory) -> AppServer:
    registry.register()
    return start_app(
        env={
            "BLUEGREEN_ADMIN_TOKEN": TOKEN,
            "BLUEGREEN_WEBHOOK_SECRET": SECRET,
            "BLUEGREEN_ADMIN_AUTH_MAX_FAILURES": str(MAX_FAILURES),
        }
    )


def from_address(address: str) -> httpx.Client:
    """A client whose connections leave from another loopback address: another peer."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=10)


def events(app: AppServer, name: str) -> list[dict[str, object]]:
    return [e for e in app.log_events() if e.get("event") == name]


@pytest.mark.timeout(240)
def test_control_plane_abuse_is_logged_throttled_and_not_replayed(
    app: AppServer, model_name: str
) -> None:
    admin = {"Authorization": f"Bearer {TOKEN}"}
    # A spoofed actor and a forwarded address from a peer that is no configured proxy.
    spoof = {**admin, "X-Admin-Actor": "root@10.9.9.9", "X-Forwarded-For": "10.9.9.9"}
    assert httpx.post(f"{app.url}/admin/reload", headers=spoof, timeout=30).status_code == 200
    forged = {**admin, "X-Admin-Actor": "eve\u0085x"}
    response = httpx.post(
        f"{app.url}/admin/reload",
        headers={k: v.encode("utf-8") for k, v in forged.items()},
        timeout=30,
    )
    assert response.status_code == 400
    audit = events(app, "admin.action")
    assert len(audit) == 1  # the forged actor was refused before acting
    assert audit[0]["actor"] == "root@10.9.9.9"
    assert audit[0]["peer"] == "127.0.0.1"  # neither the actor nor X-Forwarded-For

    # Guessing tokens from one peer: logged, then throttled; another peer is unaffected.
    with from_address("127.0.0.77") as guesser:
        for attempt in range(MAX_FAILURES):
            wrong = {"Authorization": f"Bearer guess-{attempt}"}
            assert guesser.get(f"{app.url}/admin/slots", headers=wrong).status_code == 401
        throttled = guesser.get(f"{app.url}/admin/slots", headers=admin)
        assert throttled.status_code == 429
        assert int(throttled.headers["retry-after"]) >= 1
    assert httpx.get(f"{app.url}/admin/slots", headers=admin, timeout=10).status_code == 200
    failed = events(app, "admin.auth_failed")
    assert len(failed) == MAX_FAILURES
    assert {e["peer"] for e in failed} == {"127.0.0.77"}
    assert all("guess" not in json.dumps(e) for e in failed)  # presented tokens are not logged

    # A replayed webhook delivery is answered, but reconciles once only.
    body = json.dumps({"entity": "model_version_alias", "action": "created",
                       "data": {"name": model_name, "alias": "production"}})  # fmt: skip
    timestamp = str(int(time.time()))
    headers = {
        "content-type": "application/json",
        "X-MLflow-Delivery-Id": "delivery-1",
        "X-MLflow-Timestamp": timestamp,
        "X-MLflow-Signature": _generate_hmac_signature(SECRET, "delivery-1", timestamp, body),
    }
    first = httpx.post(f"{app.url}/webhooks/mlflow", content=body, headers=headers, timeout=10)
    assert first.json() == {"accepted": True, "reconcile": True}
    for _ in range(3):
        replay = httpx.post(f"{app.url}/webhooks/mlflow", content=body, headers=headers,
                            timeout=10)  # fmt: skip
        assert replay.status_code == 200
        assert replay.json()["duplicate"] is True
        assert replay.json()["reconcile"] is False
    assert len(events(app, "webhook.received")) == 1
    assert len(events(app, "webhook.replayed")) == 3
