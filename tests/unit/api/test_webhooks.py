"""The webhook fast path accepts MLflow-signed deliveries only, and wakes the poller."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from litestar.testing import TestClient
from mlflow.webhooks.delivery import _generate_hmac_signature

from bluegreen.api.webhooks import SWEEP_INTERVAL_S, DeliveryLog
from bluegreen.app import create_app
from bluegreen.settings import Settings
from tests.fakes import FakeLoader, FakeRegistry

SECRET = "webhook-secret"


def client(tmp_path: Path, secret: str | None = SECRET) -> TestClient:  # type: ignore[type-arg]
    registry = FakeRegistry()
    registry.add(1)
    settings = Settings.of(state_dir=tmp_path, bootstrap=False, webhook_secret=secret)
    return TestClient(create_app(settings, registry=registry, loader_factory=FakeLoader().factory))


def signed(
    body: str, *, secret: str = SECRET, age_s: int = 0, delivery_id: str = "d-1"
) -> dict[str, str]:
    timestamp = str(int(time.time()) - age_s)
    return {
        "content-type": "application/json",
        "X-MLflow-Delivery-Id": delivery_id,
        "X-MLflow-Timestamp": timestamp,
        # MLflow's own signer: proves we verify exactly what the tracking server sends.
        "X-MLflow-Signature": _generate_hmac_signature(secret, delivery_id, timestamp, body),
    }


BODY = json.dumps(
    {
        "entity": "model_version_alias",
        "action": "created",
        "data": {"name": "ensemble-sentiment-model", "alias": "production"},
    }
)


def test_valid_signature_wakes_the_poller(tmp_path: Path) -> None:
    with client(tmp_path) as c:
        controller = c.app.state.runtime.controller
        controller._wake.clear()
        response = c.post("/webhooks/mlflow", content=BODY, headers=signed(BODY))
        assert response.status_code == 200
        assert response.json() == {"accepted": True, "reconcile": True}


def test_other_models_do_not_trigger_a_reconcile(tmp_path: Path) -> None:
    body = json.dumps({"entity": "model_version", "action": "created", "data": {"name": "x"}})
    with client(tmp_path) as c:
        response = c.post("/webhooks/mlflow", content=body, headers=signed(body))
        assert response.json()["reconcile"] is False


@pytest.mark.parametrize(
    "headers",
    [
        signed(BODY, secret="wrong"),
        signed(BODY, age_s=3600),
        {k: v for k, v in signed(BODY).items() if k != "X-MLflow-Signature"},
        {**signed(BODY), "X-MLflow-Timestamp": "not-a-number"},
        signed(BODY, delivery_id=""),
        signed(BODY, delivery_id="d" * 201),
    ],
    ids=["wrong-secret", "stale", "unsigned", "bad-timestamp", "no-id", "id-too-long"],
)
def test_bad_deliveries_are_refused(tmp_path: Path, headers: dict[str, str]) -> None:
    with client(tmp_path) as c:
        response = c.post("/webhooks/mlflow", content=BODY, headers=headers)
        assert response.status_code == 401
        assert response.json()["error"] == "unauthorized"


def test_tampered_body_is_refused(tmp_path: Path) -> None:
    with client(tmp_path) as c:
        response = c.post("/webhooks/mlflow", content=BODY + " ", headers=signed(BODY))
        assert response.status_code == 401


def test_disabled_without_a_secret(tmp_path: Path) -> None:
    with client(tmp_path, secret=None) as c:
        response = c.post("/webhooks/mlflow", content=BODY, headers=signed(BODY))
        assert response.status_code == 403


def test_a_replayed_delivery_is_answered_but_does_not_reconcile(tmp_path: Path) -> None:
    with client(tmp_path) as c:
        controller = c.app.state.runtime.controller
        headers = signed(BODY, delivery_id="d-replay")
        first = c.post("/webhooks/mlflow", content=BODY, headers=headers)
        assert first.json() == {"accepted": True, "reconcile": True}
        controller._wake.clear()
        again = c.post("/webhooks/mlflow", content=BODY, headers=headers)
        assert again.status_code == 200
        assert again.json() == {"accepted": True, "reconcile": False, "duplicate": True}
        assert not controller._wake.is_set()
        fresh = c.post("/webhooks/mlflow", content=BODY, headers=signed(BODY, delivery_id="d-2"))
        assert fresh.json()["reconcile"] is True


def test_sibling_workers_share_the_delivery_log(tmp_path: Path) -> None:
    now = time.time()
    one, two = DeliveryLog(tmp_path / "d"), DeliveryLog(tmp_path / "d")
    assert one.first_time("abc", now)
    assert not two.first_time("abc", now)
    assert two.first_time("abd", now)


def test_the_delivery_log_forgets_after_the_window(tmp_path: Path) -> None:
    log = DeliveryLog(tmp_path / "d", window_s=10)
    assert log.first_time("old", time.time())
    marker = next((tmp_path / "d").iterdir())
    past = time.time() - 60
    os.utime(marker, (past, past))
    assert log.first_time("new", time.time() + SWEEP_INTERVAL_S + 1)  # sweeps on the way
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) != [marker.name]
    assert not marker.exists()
