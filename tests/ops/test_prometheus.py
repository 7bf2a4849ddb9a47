"""Prometheus scrape config and alert rules: promtool checks and unit tests, plus coverage."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ops.conftest import REPO
from tests.ops.promql import PROMETHEUS_METRICS, exported_metrics, referenced_metrics

PROMETHEUS_DIR = REPO / "deploy/prometheus"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
ALERTS_TEST = PROMETHEUS_DIR / "alerts_test.yml"
REQUIRED_ALERTS = {
    "BluegreenNoLiveModel",
    "BluegreenModelLoadFailing",
    "BluegreenCanaryRejected",
    "BluegreenSwapStuckDraining",
    "BluegreenErrorBudgetFastBurn",
    "BluegreenErrorBudgetSlowBurn",
    "BluegreenLatencyP99High",
    "BluegreenRegistryUnreachable",
    "BluegreenMemoryGrowthAcrossSwaps",
}


def rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(ALERTS.read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def promtool_run(promtool: str, *args: str, cwd: Path = PROMETHEUS_DIR) -> None:
    result = subprocess.run(
        [promtool, *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_check_config(promtool: str) -> None:
    promtool_run(promtool, "check", "config", "prometheus.yml")


def test_promtool_check_rules(promtool: str) -> None:
    promtool_run(promtool, "check", "rules", "alerts.yml")


def test_promtool_test_rules(promtool: str) -> None:
    promtool_run(promtool, "test", "rules", "alerts_test.yml")


def test_every_required_alert_exists_and_has_a_firing_unit_test() -> None:
    alerts = {rule["alert"]: rule for rule in rules() if "alert" in rule}
    assert set(alerts) >= REQUIRED_ALERTS
    tested = set()
    for case in yaml.safe_load(ALERTS_TEST.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            if check.get("exp_alerts"):
                tested.add(check["alertname"])
    assert set(alerts) <= tested, f"alerts without a firing test: {set(alerts) - tested}"
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        assert {"summary", "description"} <= set(rule["annotations"]), name


@pytest.mark.parametrize("rule", rules(), ids=lambda r: r.get("alert") or r.get("record"))
def test_rules_use_only_metrics_bluegreen_exports(rule: dict[str, Any]) -> None:
    recorded = {r["record"] for r in rules() if "record" in r}
    known = exported_metrics() | PROMETHEUS_METRICS | recorded
    unknown = referenced_metrics(rule["expr"]) - known
    assert not unknown, f"not exported by bluegreen.metrics: {unknown}"
