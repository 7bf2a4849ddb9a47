"""Many concurrent requests while swaps happen back to back: zero failed requests."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.integration.conftest import AppFactory
from tests.integration.serving.test_hot_swap import ADMIN, metric
from tests.support.load import Load
from tests.support.models import TestRegistry

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_back_to_back_swaps_under_concurrent_load(
    registry: TestRegistry, start_app: AppFactory
) -> None:
    v1 = registry.register()
    app = start_app(env={"BLUEGREEN_ADMIN_TOKEN": "test-token"})

    def body(worker: int, i: int) -> tuple[str, dict[str, object]]:
        if worker % 2:
            return "/predict/batch", {"texts": [f"최고의 영화 {i}", "최악", "그냥 그랬다"]}
        return "/predict", {"text": f"정말 재밌는 영화 {worker}-{i}"}

    offered = [v1]
    with Load(app.url, threads=8, body=body) as load:
        time.sleep(1.0)
        for _ in range(5):
            offered.append(registry.register())
            response = httpx.post(f"{app.url}/admin/reload", headers=ADMIN, timeout=60)
            assert response.status_code == 200, response.text
            assert response.json()["version"] == offered[-1]
        time.sleep(1.0)
    result = load.result

    assert len(result.samples) > 200
    assert result.failures == [], result.failures[:5]
    assert result.versions() <= set(offered)
    assert offered[-1] in result.versions()
    # Each client sees versions in order: after it saw v(n), never an older one.
    for samples in load.per_worker():
        seen = [s.version for s in samples]
        assert seen == sorted(seen)
    assert metric(app, "model_hot_swap_total") == 5
    assert metric(app, "bluegreen_slot_inflight") == 0
    assert metric(app, "bluegreen_model_free_leaks_total") == 0
