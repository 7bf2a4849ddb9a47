"""The Grafana dashboard: generated from code, well-formed, and only about real metrics."""

from __future__ import annotations

import importlib.util
import json
import re
from types import ModuleType
from typing import Any

import pytest

from tests.ops.conftest import REPO
from tests.ops.promql import exported_metrics, referenced_metrics

DASHBOARD = REPO / "dashboards/bluegreen.json"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "build_dashboard", REPO / "dashboards/build_dashboard.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def test_committed_json_equals_generator_output() -> None:
    assert DASHBOARD.read_text() == generator().render(), (
        "dashboards/bluegreen.json is stale: run python dashboards/build_dashboard.py"
    )


def test_identity_and_schema() -> None:
    data = dashboard()
    assert data["uid"] == "bluegreen-serving"
    assert data["title"]
    assert 39 <= data["schemaVersion"] <= 41  # Grafana 11.x
    variables = {v["name"]: v for v in data["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in data["panels"]]
    assert len(ids) == len(set(ids))
    for panel in data["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24


@pytest.mark.parametrize("panel", panels(), ids=lambda p: p["title"])
def test_panel_uses_the_datasource_variable_and_has_queries(panel: dict[str, Any]) -> None:
    assert panel["datasource"] == DATASOURCE
    exprs = [t.get("expr") for t in panel["targets"]]
    assert exprs
    assert all(exprs)
    for tgt in panel["targets"]:
        assert tgt["datasource"] == DATASOURCE
    assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"])


@pytest.mark.parametrize("panel", panels(), ids=lambda p: p["title"])
def test_panel_queries_only_metrics_bluegreen_exports(panel: dict[str, Any]) -> None:
    for tgt in panel["targets"]:
        unknown = referenced_metrics(tgt["expr"]) - exported_metrics()
        assert not unknown, f"{tgt['refId']}: not exported by bluegreen.metrics: {unknown}"


def test_required_panels_are_present() -> None:
    text = " ".join(t["expr"] for p in panels() for t in p["targets"])
    for metric in (
        "http_requests_total", "http_request_duration_seconds_bucket", "model_version_info",
        "bluegreen_slot_state", "bluegreen_prediction_duration_seconds_bucket",
        "bluegreen_canary_share", "model_load_total", "model_load_success_total",
        "bluegreen_model_load_failures_total", "model_hot_swap_total",
        "bluegreen_model_load_duration_seconds", "bluegreen_slot_inflight",
        "bluegreen_rollbacks_total", "bluegreen_registry_polls_total",
        "bluegreen_registry_last_success_timestamp_seconds",
        "bluegreen_process_resident_memory_bytes",
    ):  # fmt: skip
        assert metric in text, metric
    assert re.search(r"histogram_quantile\(0\.99, .*http_request_duration_seconds_bucket", text)
