"""Canary split and admin actions across two uvicorn workers sharing one registry alias."""

from __future__ import annotations

import collections
import time

import httpx
import pytest

from tests.integration.conftest import AppFactory
from tests.integration.serving.test_hot_swap import ADMIN
from tests.support.models import TestRegistry
from tests.support.servers import AppServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def sample_versions(app: AppServer, n: int, *, keyed: bool = True) -> collections.Counter[int]:
    """One connection per request: the kernel hands each to whichever worker accepts first,
    so the sample spans both workers (a keep-alive connection would stay on one)."""
    counts: collections.Counter[int] = collections.Counter()
    with httpx.Client(base_url=app.url, timeout=30) as client:
        for i in range(n):
            headers = {"Connection": "close"}
            if keyed:
                headers["X-Request-ID"] = f"user-{i}"
            r = client.post("/predict", json={"text": f"최고의 영화 {i}"}, headers=headers)
            assert r.status_code == 200, r.text
            counts[int(r.headers["x-model-version"])] += 1
    return counts


def wait_all_serve(app: AppServer, version: int, timeout: float = 30) -> float:
    """Seconds until 100 consecutive responses (spread over both workers) come from `version`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if set(sample_versions(app, 100, keyed=False)) == {version}:
            return time.monotonic() - started
        time.sleep(0.2)
    raise AssertionError(f"not all workers serve {version} after {timeout}s")


def test_canary_split_promotion_rejection_pin_and_rollback(
    registry: TestRegistry, start_app: AppFactory
) -> None:
    v1 = registry.register()
    app = start_app(
        workers=2,
        env={
            "BLUEGREEN_ADMIN_TOKEN": "test-token",
            "BLUEGREEN_CANARY_PERCENT": "20",
            "BLUEGREEN_CANARY_MIN_REQUESTS": "400",
            "BLUEGREEN_CANARY_MIN_SECONDS": "4",
            "BLUEGREEN_CANARY_MAX_P95_RATIO": "3",
            "BLUEGREEN_CONTROL_INTERVAL_S": "0.5",
        },
    )
    assert set(sample_versions(app, 20)) == {v1}

    # A good candidate: both workers canary it at ~20%, then promote it on their own.
    v2 = registry.register()
    time.sleep(3)
    counts = sample_versions(app, 300)
    share = counts[v2] / sum(counts.values())
    print(
        f"observed canary share {share:.3f} (configured 0.20) over {sum(counts.values())} requests"
    )
    assert 0.08 <= share <= 0.35, counts
    # Sticky: the same request id keeps landing on the same version while the canary runs.
    with httpx.Client(base_url=app.url, timeout=30) as client:
        seen = {
            client.post(
                "/predict", json={"text": "최고"}, headers={"X-Request-ID": "user-7"}
            ).headers["x-model-version"]
            for _ in range(20)
        }
    assert len(seen) == 1
    sample_versions(app, 900)
    wait_all_serve(app, v2, timeout=60)

    # A slow candidate: passes smoke, but p95 on real traffic is far worse → auto-rejected.
    v3 = registry.register("traffic_slow", delay_s=0.05)
    time.sleep(3)
    failures = 0
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        counts = sample_versions(app, 200, keyed=False)
        if "bluegreen.rejected" in registry.tags(v3) and counts[v3] == 0:
            break
    assert "bluegreen.rejected" in registry.tags(v3)
    assert failures == 0
    assert registry.alias_version() == v2
    wait_all_serve(app, v2, timeout=30)

    # Pin v1 through one worker: every worker converges within the control interval.
    pinned = httpx.post(f"{app.url}/admin/promote", json={"version": v1}, headers=ADMIN, timeout=60)
    assert pinned.status_code == 200, pinned.text
    convergence = wait_all_serve(app, v1, timeout=30)
    print(f"pin convergence across 2 workers: {convergence:.2f}s")
    assert registry.alias_version() == v1

    # Rollback returns to the previous version (v2) everywhere.
    rolled = httpx.post(f"{app.url}/admin/rollback", headers=ADMIN, timeout=60)
    assert rolled.status_code == 200, rolled.text
    assert rolled.json()["version"] == v2
    wait_all_serve(app, v2, timeout=30)
    assert registry.alias_version() == v2
