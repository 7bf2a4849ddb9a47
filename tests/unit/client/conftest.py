"""The real app (create_app over FakeRegistry and FakeLoader) behind the client: Litestar's
test clients are httpx clients, so `Client(http=...)` drives the app in-process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from bluegreen.client import Client
from tests.fakes import FakeLoader, FakeRegistry
from tests.unit.api.conftest import TOKEN, start_app


@pytest.fixture
def registry() -> FakeRegistry:
    registry = FakeRegistry()
    registry.add(1)
    return registry


@pytest.fixture
def app(tmp_path: Path, registry: FakeRegistry, loader: FakeLoader) -> Iterator[TestClient[Any]]:
    yield from start_app(tmp_path, registry, loader, ready=True, max_batch=4)


@pytest.fixture
def client(app: TestClient[Any]) -> Client:
    return Client(token=TOKEN, actor="ci-bot", http=app)
