"""Matrix row 9: 100 consecutive swaps of a 20 MB-ballast model: memory, threads and file
descriptors of the worker stay flat (a leaked model would add 20 MB per swap)."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.integration.conftest import AppFactory
from tests.support.faults import Load, metric, proc_stats, wait_until
from tests.support.models import TestRegistry

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SWAPS = 100
TOKEN = "soak-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


@pytest.mark.timeout(420)
def test_100_swaps_keep_rss_threads_and_fds_flat(
    registry: TestRegistry, start_app: AppFactory
) -> None:
    registry.register("good", ballast_mb=20)
    app = start_app(env={"BLUEGREEN_ADMIN_TOKEN": TOKEN, "BLUEGREEN_CONTROL_INTERVAL_S": "0.5"})
    samples = []
    with Load(app.url, clients=2, pause_s=0.01) as load:
        for i in range(SWAPS):
            # Same logged source every time (cached by TestRegistry): only a new version row.
            version = registry.register("good", ballast_mb=20)
            reload = httpx.post(f"{app.url}/admin/reload", headers=ADMIN, timeout=60)
            assert reload.status_code == 200, reload.text
            assert reload.json()["version"] == version, reload.text
            if i in (0, SWAPS // 2 - 1, SWAPS - 1):
                # Sample once the previous version is freed and its pages handed back
                # (malloc_trim runs off the loop, just after the free).
                wait_until(
                    lambda n=i + 1: metric(app.url, "bluegreen_models_freed_total") >= n,
                    timeout=30, what="the previous version freed",
                )  # fmt: skip
                time.sleep(0.5)
                samples.append(proc_stats(app.pid))
    report = load.stop()
    first, middle, last = samples
    growth = (last.rss - first.rss) / first.rss
    print(f"after swap 1: {first}; after swap {SWAPS // 2}: {middle}; after swap {SWAPS}: {last}; "
          f"RSS growth {growth:+.1%}; load: {report.summary()}")  # fmt: skip
    assert not report.failures, report.summary()
    # Steady state (swap 50 -> 100): a leaked 20 MB model per swap would add ~1 GB here.
    steady = (last.rss - middle.rss) / middle.rss
    assert steady < 0.02, f"RSS grew {steady:.1%} between swap {SWAPS // 2} and {SWAPS}"
    assert last.threads <= first.threads + 4, (first, last)
    assert abs(last.fds - first.fds) <= 5, (first, last)
    # Freeing collects cycles too (MLflow's per-download thread pools among them), so
    # threads and RSS stay at their first-swap level.
    assert growth < 0.10, f"RSS grew {growth:.1%}"
    assert metric(app.url, "bluegreen_model_free_leaks_total") == 0
    assert metric(app.url, "model_hot_swap_total") == SWAPS
