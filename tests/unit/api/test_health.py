"""/healthz, /readyz and /metrics (seed metric names, route-template labels)."""

from __future__ import annotations

import re
from typing import Any

from litestar.testing import TestClient

from tests.fakes import FakeRegistry
from tests.unit.api.conftest import ADMIN, ClientFactory

SEED_METRICS = (
    "http_requests_total",
    "http_request_duration_seconds",
    "model_version_info",
    "model_load_total",
    "model_load_success_total",
    "model_hot_swap_total",
)


def samples(text: str, name: str) -> list[str]:
    return [line for line in text.splitlines() if re.match(rf"{name}(\{{| )", line)]


def test_healthz_and_readyz_when_serving(client: TestClient[Any]) -> None:
    health = client.get("/healthz")
    assert health.status_code == 200
    assert health.json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"
    assert ready.json()["version"] == 1


def test_readyz_503_while_registry_unreachable(api: ClientFactory, registry: FakeRegistry) -> None:
    registry.down = True
    with api(ready=False, admin_token="t0ken") as client:
        for _ in range(200):
            ready = client.get("/readyz")
            if "registry unreachable" in ready.json().get("reason", ""):
                break
        assert ready.status_code == 503
        # Generic without a token: the error text (hosts, paths) is for admins only.
        assert ready.json() == {"status": "not_ready", "reason": "registry unreachable"}
        assert client.get("/healthz").status_code == 200
        slots = client.get("/admin/slots", headers={"Authorization": "Bearer t0ken"}).json()
        assert slots["readiness"]["reason"] == "registry unreachable"
        assert slots["readiness"]["detail"] == slots["registry"]["last_error"]
        assert slots["readiness"]["detail"]


def test_metrics_exposes_the_seed_names(client: TestClient[Any]) -> None:
    client.post("/predict", json={"text": "최고"})
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    for name in SEED_METRICS:
        assert f"# HELP {name} " in response.text, name
        assert f"# TYPE {name} " in response.text, name
    # Series exist for everything this app has done (one load, requests); swaps: see below.
    for name in SEED_METRICS[:5]:
        series = name + "_bucket" if name.endswith("_seconds") else name
        assert samples(response.text, series), name


def test_http_metrics_use_route_templates_and_status(client: TestClient[Any]) -> None:
    client.post("/predict", json={"text": "최고"})
    client.post("/predict", json={"text": ""})
    client.post("/predict/batch", json={"texts": ["a"]})
    client.get("/admin/slots", headers=ADMIN)
    client.get("/schema/some-id-12345")
    client.get("/does/not/exist/42")
    text = client.get("/metrics").text
    requests = samples(text, "http_requests_total")
    assert any('path="/predict"' in s and 'status_code="200"' in s for s in requests)
    assert any('path="/predict"' in s and 'status_code="400"' in s for s in requests)
    assert any('path="/predict/batch"' in s for s in requests)
    assert any('path="/admin/slots"' in s for s in requests)
    paths = {m.group(1) for s in requests if (m := re.search(r'path="([^"]*)"', s))}
    assert "/schema/some-id-12345" not in paths
    assert "/does/not/exist/42" not in paths
    assert "/metrics" not in paths  # scrapes are excluded
    assert all(re.fullmatch(r"[/a-z_.{}:-]*", p) for p in paths), paths
    durations = samples(text, "http_request_duration_seconds_bucket")
    assert any('path="/predict"' in s for s in durations)
    # Sub-millisecond buckets exist.
    assert any('le="0.0005"' in s or 'le="0.00025"' in s for s in durations)


def test_model_version_info_names_the_live_version(client: TestClient[Any]) -> None:
    text = client.get("/metrics").text
    live = [s for s in samples(text, "model_version_info") if s.endswith(" 1.0")]
    assert any('version="1"' in s for s in live)


def test_swap_moves_version_info_and_counts_a_hot_swap(
    api: ClientFactory, registry: FakeRegistry
) -> None:
    def value(text: str, name: str, *needles: str) -> float:
        total = 0.0
        for s in samples(text, name):
            if 'model="ensemble-sentiment-model"' in s and all(n in s for n in needles):
                total += float(s.rsplit(" ", 1)[1])
        return total

    with api() as client:
        before = client.get("/metrics").text
        registry.add(2)
        assert client.post("/admin/reload", headers=ADMIN).json()["status"] == "deployed"
        after = client.get("/metrics").text
    swaps = value(after, "model_hot_swap_total") - value(before, "model_hot_swap_total")
    assert swaps == 1
    loads = value(after, "model_load_total") - value(before, "model_load_total")
    assert loads == 1
    ok = value(after, "model_load_success_total") - value(before, "model_load_success_total")
    assert ok == 1
    assert value(after, "model_version_info", 'version="2"') == 1
    assert value(after, "model_version_info", 'version="1"') == 0


def test_readyz_503_while_stopping_and_requests_still_served(api: ClientFactory) -> None:
    with api() as client:
        client.app.state.runtime.stopping.since = 0.0  # what SIGTERM sets with a delay
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["reason"] == "shutting down"
        answer = client.post("/predict", json={"text": "좋아요"})
        assert answer.status_code == 200
        assert answer.headers["connection"] == "close"
