"""docker-compose.yml: valid for Compose, wired as documented, secrets only from .env."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bluegreen.settings import Settings
from tests.ops.conftest import REPO

ENV_EXAMPLE = REPO / ".env.example"


def compose(docker_compose: str, *args: str) -> subprocess.CompletedProcess[str]:
    # --env-file: the checked-in example, never a developer's own .env.
    return subprocess.run(
        [docker_compose, "--project-directory", str(REPO), "-f", str(REPO / "docker-compose.yml"),
         "--env-file", str(ENV_EXAMPLE), *args],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip


@pytest.fixture(scope="module")
def config(docker_compose: str) -> dict[str, Any]:
    result = compose(docker_compose, "--profile", "loadtest", "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def test_config_quiet_passes(docker_compose: str) -> None:
    result = compose(docker_compose, "config", "--quiet")
    assert result.returncode == 0, result.stderr
    result = compose(docker_compose, "--profile", "loadtest", "config", "--quiet")
    assert result.returncode == 0, result.stderr


def test_missing_secrets_fail_fast(docker_compose: str, tmp_path: Path) -> None:
    empty = tmp_path / "empty.env"
    empty.write_text("")
    result = subprocess.run(
        [docker_compose, "--project-directory", str(REPO), "-f", str(REPO / "docker-compose.yml"),
         "--env-file", str(empty), "config", "--quiet"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    for secret in ("POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD", "BLUEGREEN_ADMIN_TOKEN"):
        assert secret in result.stderr


def test_env_example_has_placeholders_only() -> None:
    values = dict(
        line.split("=", 1)
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    for secret in ("POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD", "BLUEGREEN_ADMIN_TOKEN"):
        assert "change-me" in values[secret]
    used = set(re.findall(r"\$\{(\w+)", (REPO / "docker-compose.yml").read_text()))
    assert set(values) <= used, f"unused in compose: {set(values) - used}"
    gitignore = (REPO / ".gitignore").read_text().splitlines()
    assert ".env" in gitignore


def test_services_are_wired(config: dict[str, Any]) -> None:
    services = config["services"]
    assert set(services) >= {"postgres", "mlflow", "api", "prometheus", "grafana", "locust"}

    mlflow = services["mlflow"]
    command = " ".join(mlflow["command"])
    assert "--serve-artifacts" in command
    assert "--artifacts-destination=/mlartifacts" in command
    assert mlflow["environment"]["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql")
    assert any(v["target"] == "/mlartifacts" and v["type"] == "volume" for v in mlflow["volumes"])
    assert mlflow["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "healthcheck" in mlflow

    api = services["api"]
    assert api["restart"] == "unless-stopped"
    assert api["depends_on"]["mlflow"]["condition"] == "service_healthy"
    assert "healthcheck" in api
    assert api["build"]["target"] == "runtime"
    limits = api["deploy"]["resources"]["limits"]
    assert float(limits["cpus"]) > 0
    assert int(limits["memory"]) > 0
    assert api["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    Settings.from_env(api["environment"])  # every BLUEGREEN_* name and value is accepted

    locust = services["locust"]
    assert locust["profiles"] == ["loadtest"]
    assert "http://api:8000" in locust["command"]
    assert "/mnt/locust/locustfile.py" in locust["command"]


def test_prometheus_scrapes_the_api_and_loads_the_alerts(config: dict[str, Any]) -> None:
    prometheus_config = (REPO / "deploy/prometheus/prometheus.yml").read_text()
    assert "api:8000" in prometheus_config
    mounts = {v["target"]: v["source"] for v in config["services"]["prometheus"]["volumes"]
              if v["type"] == "bind"}  # fmt: skip
    assert (
        Path(mounts["/etc/prometheus/prometheus.yml"]) == REPO / "deploy/prometheus/prometheus.yml"
    )
    assert Path(mounts["/etc/prometheus/alerts.yml"]) == REPO / "deploy/prometheus/alerts.yml"


def test_grafana_is_provisioned_with_the_dashboard(config: dict[str, Any]) -> None:
    import yaml

    mounts = {v["target"]: Path(v["source"]) for v in config["services"]["grafana"]["volumes"]
              if v["type"] == "bind"}  # fmt: skip
    for source in mounts.values():
        assert source.exists(), source
    providers = yaml.safe_load(
        (REPO / "dashboards/provisioning/dashboards/bluegreen.yml").read_text()
    )
    path = providers["providers"][0]["options"]["path"]
    assert mounts[f"{path}/bluegreen.json"] == REPO / "dashboards/bluegreen.json"
    datasources = yaml.safe_load(
        (REPO / "dashboards/provisioning/datasources/prometheus.yml").read_text()
    )
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    assert (
        mounts["/etc/grafana/provisioning/dashboards"]
        == REPO / "dashboards/provisioning/dashboards"
    )
    assert (
        mounts["/etc/grafana/provisioning/datasources"]
        == REPO / "dashboards/provisioning/datasources"
    )
