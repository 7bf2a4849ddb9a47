"""Matrix rows 4, 5, 8: versions that are too slow, fail only on real traffic, or arrive back to
back. The live model answers every request throughout (background load, zero failures)."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.integration.conftest import AppFactory
from tests.support.faults import Load, metric, served_version, wait_until
from tests.support.models import TestRegistry

pytestmark = pytest.mark.integration
TOKEN = "faults-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


@pytest.mark.timeout(180)
def test_version_over_smoke_latency_budget_is_rejected(
    registry: TestRegistry, start_app: AppFactory
) -> None:
    v1 = registry.register()
    app = start_app(
        # No control checks: the admin reload below must be the one that meets the version.
        env={
            "BLUEGREEN_ADMIN_TOKEN": TOKEN,
            "BLUEGREEN_SMOKE_LATENCY_BUDGET_MS": "100",
            "BLUEGREEN_CONTROL_INTERVAL_S": "0",
        }
    )
    before = metric(app.url, "bluegreen_model_load_failures_total", reason="smoke_failed")
    with Load(app.url, clients=3) as load:
        slow = registry.register("slow", delay_s=0.4)  # 4x the budget on every call
        reload = httpx.post(f"{app.url}/admin/reload", headers=ADMIN, timeout=60)
        time.sleep(0.5)
    report = load.stop()
    assert reload.json()["status"] == "failed", reload.text
    assert "latency" in reload.json()["detail"]
    assert not report.failures, report.summary()
    assert report.versions() == {v1}
    assert "bluegreen.rejected" in registry.tags(slow)
    assert registry.alias_version() == v1
    # The alert rule (ModelLoadFailing) keys on this label.
    assert (
        metric(app.url, "bluegreen_model_load_failures_total", reason="smoke_failed") == before + 1
    )


@pytest.mark.timeout(180)
def test_canary_failing_on_real_traffic_is_rejected_with_no_client_errors(
    registry: TestRegistry, start_app: AppFactory
) -> None:
    v1 = registry.register()
    app = start_app(
        env={
            "BLUEGREEN_ADMIN_TOKEN": TOKEN,
            "BLUEGREEN_CANARY_PERCENT": "50",
            "BLUEGREEN_CANARY_MIN_REQUESTS": "20",
            "BLUEGREEN_CANARY_MIN_SECONDS": "1",
        }
    )
    with Load(app.url, clients=3) as load:
        bad = registry.register("traffic_error")  # passes smoke, raises on anything else
        reload = httpx.post(f"{app.url}/admin/reload", headers=ADMIN, timeout=60)
        # the canary started, by this reload or by the control check just before it
        assert reload.json()["version"] == bad, reload.text
        assert reload.json()["status"] in {"deployed", "unchanged"}, reload.text
        wait_until(
            lambda: "bluegreen.rejected" in registry.tags(bad), timeout=60, what="canary rejected"
        )
        # the alias moves a few registry calls after the tag
        wait_until(lambda: registry.alias_version() == v1, timeout=10, what="alias restored")
        time.sleep(0.5)
    report = load.stop()
    assert not report.failures, report.summary()
    assert report.versions() == {v1}  # the candidate never answered a request successfully
    assert "canary" in registry.tags(bad)["bluegreen.rejected"]
    assert registry.alias_version() == v1
    assert metric(app.url, "bluegreen_canary_decisions_total", decision="rejected") == 1
    assert metric(app.url, "bluegreen_model_load_failures_total", reason="canary_rejected") == 1
    assert metric(app.url, "bluegreen_canary_last_rejected_timestamp_seconds") > 0
    assert metric(app.url, "bluegreen_prediction_errors_total", version=str(bad)) > 0
    assert served_version(app.url) == v1


@pytest.mark.timeout(180)
def test_back_to_back_versions_end_on_newest_never_go_backwards_and_free_all(
    registry: TestRegistry, start_app: AppFactory
) -> None:
    v1 = registry.register()
    app = start_app()  # no admin: the control interval (1 s) drives both swaps
    with Load(app.url, clients=3) as load:
        time.sleep(0.5)
        v2 = registry.register()
        v3 = registry.register()
        wait_until(lambda: served_version(app.url) == v3, timeout=30, what="serves v3")
        time.sleep(1.5)  # let the old slot drain and free
    report = load.stop()
    assert not report.failures, report.summary()
    assert report.versions() <= {v1, v2, v3}
    for client in range(load.clients):
        seq = report.sequence(client)
        assert seq == sorted(seq), f"client {client} went backwards: {seq}"
        assert seq[-1] == v3
    events = app.log_events()
    loaded = {e["version"] for e in events if e["event"] == "model.load.end"}
    freed = {e["version"] for e in events if e["event"] == "model.freed"}
    assert loaded - {v3} <= freed, (loaded, freed)
    assert not [e for e in events if e["event"] == "model.free.leak"]
    assert metric(app.url, "bluegreen_model_free_leaks_total") == 0
