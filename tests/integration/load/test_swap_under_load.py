"""Swap under load, the CI profile: constant Locust load while good, canaried, corrupt and
contract-breaking versions are registered. The full profile is `just loadtest-swap`.

The load test is run as its command, `python -m loadtests.swap_under_load`, and judged on the
summary it writes: tests never import the load tests or the benchmarks (they import the tests'
support code, never the reverse; tests/unit/test_layout.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.timeout(480)
@pytest.mark.parametrize("workers", [1, 2])
def test_swaps_under_constant_load_fail_no_request(tmp_path: Path, workers: int) -> None:
    command = [
        sys.executable, "-m", "loadtests.swap_under_load",
        "--profile", "short", "--workers", str(workers), "--out", str(tmp_path),
    ]  # fmt: skip
    done = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=450, check=False
    )
    summary_file = tmp_path / "summary.json"
    assert summary_file.is_file(), done.stderr[-4000:]
    (result,) = json.loads(summary_file.read_text(encoding="utf-8"))
    stats = result["stats"]
    assert result["workers"] == workers
    assert stats["failed"] == 0, stats["failures_sample"]
    assert stats["locust_failures"] == 0
    assert stats["requests"] > 200
    assert stats["v2_requests"] > 20  # Open Inference Protocol traffic through the same swaps
    # The corrupt and the contract-breaking versions were rejected and never answered.
    assert len(stats["bad_versions"]) == 2
    assert not set(stats["versions_seen"]) & {str(v) for v in stats["bad_versions"]}
    failed_checks = [name for name, ok in result["checks"].items() if not ok]
    assert not failed_checks, (failed_checks, stats)
    assert Path(result["png"]).stat().st_size > 10_000
    # Latency during swaps is recorded, not asserted: this machine's noise would make it flaky
    # (the bound is checked by `just bench`, which reports the ratio in BENCHMARKS.md).
    assert stats["during_swaps"]["n"] > 0
    assert stats["steady"]["n"] > 0
    assert done.returncode == 0, done.stdout[-2000:]
