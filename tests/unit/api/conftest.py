"""The real app (create_app) over FakeRegistry and FakeLoader, driven by Litestar's TestClient."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from bluegreen.app import create_app
from bluegreen.settings import Settings
from tests.fakes import FakeLoader, FakeRegistry

TOKEN = "unit-admin-token-7f3a"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}

ClientFactory = Callable[..., Any]


def wait_ready(client: TestClient[Any], within_s: float = 10.0) -> None:
    deadline = time.monotonic() + within_s
    while True:
        response = client.get("/readyz")
        if response.status_code == 200:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"/readyz never became 200: {response.text}")
        time.sleep(0.01)


def start_app(
    state_dir: Path, registry: FakeRegistry, loader: FakeLoader, *, ready: bool, **overrides: Any
) -> Iterator[TestClient[Any]]:
    settings = Settings.of(
        **{"state_dir": state_dir, "bootstrap": False, "admin_token": TOKEN, **overrides}
    )
    app = create_app(settings, registry=registry, loader_factory=loader.factory)  # type: ignore[arg-type]
    with TestClient(app) as client:
        if ready:
            wait_ready(client)
        yield client


@pytest.fixture
def registry() -> FakeRegistry:
    registry = FakeRegistry()
    registry.add(1)
    return registry


@pytest.fixture
def api(tmp_path: Path, registry: FakeRegistry, loader: FakeLoader) -> ClientFactory:
    """`with api(**settings) as client:` starts a fresh app and waits for a live model."""

    @contextmanager
    def start(*, ready: bool = True, **overrides: Any) -> Iterator[TestClient[Any]]:
        yield from start_app(tmp_path, registry, loader, ready=ready, **overrides)

    return start


SHARED_LIMITS = {"max_text_chars": 50, "max_batch": 4, "max_body_bytes": 4096,
                 # its tests refuse many bad tokens on purpose; the throttle has tests of its own
                 "admin_auth_max_failures": 10_000}  # fmt: skip


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient[Any]]:
    """One app per module for tests that only read (version 1 live, small limits)."""
    registry = FakeRegistry()
    registry.add(1)
    state_dir = tmp_path_factory.mktemp("shared-app")
    yield from start_app(state_dir, registry, FakeLoader(), ready=True, **SHARED_LIMITS)
