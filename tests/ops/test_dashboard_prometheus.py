"""Every PromQL expression of the dashboard (and of the alert rules) against a real Prometheus
scraping a real bluegreen app that served real registry versions, failed a corrupt one and
hot-swapped through a canary under traffic.

Panels must show data after that scenario, except the few targets listed in MAY_BE_EMPTY (each
with the reason the scenario cannot produce it); those must still be valid queries about
metrics bluegreen exports (checked in test_dashboard.py).
"""

from __future__ import annotations

import json
import math
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.ops.conftest import REPO
from tests.support.faults import metric
from tests.support.models import TestRegistry
from tests.support.servers import AppServer, MlflowServer, Process, free_port, wait_http

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ADMIN = {"Authorization": "Bearer ops-test-token"}
# (panel title, legendFormat) of targets allowed to be empty after the scenario.
MAY_BE_EMPTY = {
    ("Errors by route and status", "shed: {{reason}}"): "nothing is shed below the admission limit",
    ("Drain duration per slot", "p99 {{slot}}"): "one drain only: its histogram series appears "
    "with the observation already counted, so rate() sees no increase (the mean target has data)",
}
SUBSTITUTIONS = {
    # Grafana computes these from the time range; the scenario lasts about a minute.
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "10m",
    "instance": ".*",
    "route": ".*",
}
TEXTS = [
    "정말 최고의 영화",
    "시간 낭비, 최악",
    "그냥 그랬다",
    "배우 연기가 훌륭하고 감동적",
    "지루하고 노잼",
]


def substitute(expr: str) -> str:
    def replace(match: re.Match[str]) -> str:
        return SUBSTITUTIONS[match.group(1) or match.group(2)]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", replace, expr)


class Prometheus(Process):
    """Prometheus scraping `target` every second and evaluating the project's rules."""

    def __init__(self, workdir: Path, binary: str, target: str) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(REPO / "deploy/prometheus/alerts.yml")],
            "scrape_configs": [
                {"job_name": "bluegreen", "static_configs": [{"targets": [target]}]}
            ],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        args = [
            binary, f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]  # fmt: skip
        super().__init__(args, {}, workdir / "prometheus.log", workdir)

    def start(self) -> None:
        super().start()
        wait_http(f"{self.url}/-/ready", timeout=60, proc=self.proc)

    started = 0.0
    """Unix time the scenario's traffic began (start of the range queries)."""

    def query(self, expr: str) -> dict[str, Any]:
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=15)
        body: dict[str, Any] = response.json()
        return body

    def query_range(self, expr: str, step: str = "2s") -> dict[str, Any]:
        """What a time series panel asks for: the scenario's whole time range."""
        params = {"query": expr, "start": self.started, "end": time.time(), "step": step}
        response = httpx.get(f"{self.url}/api/v1/query_range", params=params, timeout=15)
        body: dict[str, Any] = response.json()
        return body

    def label_values(self, label: str, match: str) -> list[str]:
        response = httpx.get(
            f"{self.url}/api/v1/label/{label}/values", params={"match[]": match}, timeout=15
        )
        body = response.json()
        assert body["status"] == "success", body
        return list(body["data"])


def wait_scrapes(prometheus: Prometheus, n: int, timeout: float = 60) -> None:
    """Wait for `n` more successful scrapes: on a fast machine the whole scenario can fit
    between two scrapes, and a panel's rate() needs two samples around the traffic."""

    def scrapes() -> int:
        result = prometheus.query("count_over_time(up[10m])")["data"]["result"]
        return int(float(result[0]["value"][1])) if result else 0

    target = scrapes() + n
    deadline = time.monotonic() + timeout
    while scrapes() < target:
        assert time.monotonic() < deadline, f"Prometheus made fewer than {n} scrapes"
        time.sleep(0.25)


def traffic(app: AppServer, rounds: int = 1) -> None:
    with httpx.Client(base_url=app.url, timeout=10) as client:
        for _ in range(rounds):
            for text in TEXTS:
                assert client.post("/predict", json={"text": text}).status_code == 200
            assert client.post("/predict/batch", json={"texts": TEXTS}).status_code == 200
            assert client.post("/predict", json={"text": ""}).status_code == 400
            client.get("/readyz")


def wait_live(app: AppServer, version: int, previous: int, timeout: float = 120) -> None:
    """Traffic until every worker serves `version` (livemax: `previous` drops to 0 only when
    the last worker swapped); the canary needs traffic to decide."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        traffic(app)
        if (
            metric(app.url, "model_version_info", version=str(version)) == 1
            and metric(app.url, "model_version_info", version=str(previous)) == 0
        ):
            return
    pytest.fail(f"version {version} never became live everywhere:\n{app.log_text()[-4000:]}")


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory, prometheus_bin: str) -> Iterator[Prometheus]:
    root = tmp_path_factory.mktemp("dashboard")
    mlflow = MlflowServer(root / "mlflow")
    app: AppServer | None = None
    prometheus: Prometheus | None = None
    try:
        mlflow.start()
        registry = TestRegistry(mlflow.url, f"sentiment-{uuid.uuid4().hex[:8]}")
        v1 = registry.register()
        app = AppServer(
            root / "app",
            mlflow.url,
            workers=2,
            env={
                "BLUEGREEN_MODEL_NAME": registry.model_name,
                "BLUEGREEN_ADMIN_TOKEN": ADMIN["Authorization"].split()[1],
                "BLUEGREEN_POLL_INTERVAL_S": "2",
                "BLUEGREEN_CANARY_PERCENT": "50",
                "BLUEGREEN_CANARY_MIN_REQUESTS": "10",
                "BLUEGREEN_CANARY_MIN_SECONDS": "1",
                "BLUEGREEN_CANARY_SHADOW_FRACTION": "1.0",
                # each worker judges its own canary on ~10 requests of a busy CI machine: keep
                # the latency bound out of the way so the promotion is deterministic
                "BLUEGREEN_CANARY_MAX_P95_RATIO": "1000",
            },
        )
        # The multiprocess dir must exist before bluegreen.metrics is imported (see
        # test_dockerfile.py::test_image_command_serves_healthz, which checks a fresh start).
        Path(app.env["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)
        app.start(timeout=120)
        # /readyz answers from whichever worker accepts the connection: wait until both
        # workers have loaded v1 (the counter sums over workers).
        deadline = time.monotonic() + 60
        while metric(app.url, "model_load_success_total") < 2:
            assert time.monotonic() < deadline, app.log_text()[-3000:]
            time.sleep(0.5)
        prometheus = Prometheus(root / "prometheus", prometheus_bin, f"127.0.0.1:{app.port}")
        prometheus.start()
        prometheus.started = time.time()
        # Traffic before Prometheus's first scrape would leave rate() nothing to see.
        wait_scrapes(prometheus, 2)
        traffic(app, rounds=5)
        # a version that cannot load: failures and the failure timestamp appear
        registry.register_corrupt()
        httpx.post(f"{app.url}/admin/reload", headers=ADMIN, timeout=120)
        traffic(app, rounds=3)
        # a good version: load, smoke, canary at 50%, promotion, drain, free
        v3 = registry.register()
        httpx.post(f"{app.url}/admin/reload", headers=ADMIN, timeout=120)
        wait_live(app, v3, v1)
        traffic(app, rounds=5)
        wait_scrapes(prometheus, 5)  # a few more scrapes and rule evaluations
        yield prometheus
    finally:
        for process in (prometheus, app, mlflow):
            if process is not None:
                process.stop()


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((REPO / "dashboards/bluegreen.json").read_text())
    return data


def dashboard_targets() -> list[tuple[str, str, str, bool]]:
    return [
        (panel["title"], target["legendFormat"], target["expr"], target["instant"])
        for panel in dashboard()["panels"]
        if panel["type"] != "row"
        for target in panel["targets"]
    ]


def finite_values(result: list[dict[str, Any]]) -> list[float]:
    samples = [r["value"] for r in result if "value" in r]
    samples += [v for r in result for v in r.get("values", [])]
    return [float(v[1]) for v in samples if math.isfinite(float(v[1]))]


@pytest.mark.parametrize(
    ("title", "legend", "expr", "instant"),
    dashboard_targets(),
    ids=lambda v: v if isinstance(v, str) and "(" not in v else "",
)
def test_panel_query_returns_data(
    scenario: Prometheus, title: str, legend: str, expr: str, instant: bool
) -> None:
    """Instant targets (stat panels) are queried now, time series over the scenario's range,
    as Grafana would; each needs at least one finite value."""
    query = substitute(expr)
    body = scenario.query(query) if instant else scenario.query_range(query)
    assert body["status"] == "success", body
    result = body["data"]["result"]
    if (title, legend) in MAY_BE_EMPTY:
        return
    assert result, f"{title} / {legend}: no data for {query}"
    assert finite_values(result), f"{title} / {legend}: only NaN/Inf: {result}"


def test_template_variables_have_values(scenario: Prometheus) -> None:
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = substitute(variable["definition"])
        match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)
        assert match, query
        assert scenario.label_values(match.group(2), match.group(1)), query


def test_annotation_queries_are_valid(scenario: Prometheus) -> None:
    for annotation in dashboard()["annotations"]["list"]:
        if "expr" in annotation:
            body = scenario.query(substitute(annotation["expr"]))
            assert body["status"] == "success", body


def test_alert_and_recording_rules_evaluate(scenario: Prometheus) -> None:
    rules = yaml.safe_load((REPO / "deploy/prometheus/alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            body = scenario.query(rule["expr"])
            assert body["status"] == "success", (rule, body)
    # the SLO recording rules see the prediction traffic
    assert scenario.query("bluegreen:http_predict_requests:rate5m")["data"]["result"]
    # nothing is wrong in this scenario except the corrupt version
    firing = scenario.query('ALERTS{alertstate="firing"}')["data"]["result"]
    names = {alert["metric"]["alertname"] for alert in firing}
    assert names <= {"BluegreenModelLoadFailing"}, names
