"""Many concurrent requests while swaps happen back to back: zero failed requests."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.integration.conftest import AppFactory
from tests.integration.serving.test_hot_swap import ADMIN
from tests.support.faults import Load, metric
from tests.support.models import TestRegistry

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_back_to_back_swaps_under_concurrent_load(
    registry: TestRegistry, start_app: AppFactory
) -> None:
    v1 = registry.register()
    app = start_app(env={"BLUEGREEN_ADMIN_TOKEN": "test-token"})

    offered = [v1]
    singles = Load(app.url, clients=4, body=lambda i: {"text": f"정말 재밌는 영화 {i}"})
    batches = Load(
        app.url,
        clients=4,
        path="/predict/batch",
        body=lambda i: {"texts": [f"최고의 영화 {i}", "최악", "그냥 그랬다"]},
    )
    with singles, batches:
        time.sleep(1.0)
        for _ in range(5):
            offered.append(registry.register())
            response = httpx.post(f"{app.url}/admin/reload", headers=ADMIN, timeout=60)
            assert response.status_code == 200, response.text
            assert response.json()["version"] == offered[-1]
        time.sleep(1.0)

    for report in (singles.snapshot(), batches.snapshot()):
        assert report.total > 100
        assert report.failures == [], report.summary()
        assert report.versions() <= set(offered)
        assert offered[-1] in report.versions()
        # Each client sees versions in order: after it saw v(n), never an older one.
        for client in range(4):
            seen = report.sequence(client)
            assert seen == sorted(seen)
    assert metric(app.url, "model_hot_swap_total") == 5
    assert metric(app.url, "bluegreen_slot_inflight") == 0
    assert metric(app.url, "bluegreen_model_free_leaks_total") == 0
