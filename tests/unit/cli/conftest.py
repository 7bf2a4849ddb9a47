"""The `bluegreen` command against the real app in-process (create_app over FakeRegistry and
FakeLoader): the client commands find the app's test client in the click context object."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from litestar.testing import TestClient

from bluegreen.cli import cli
from bluegreen.cli.admin import Transport
from tests.fakes import FakeLoader, FakeRegistry
from tests.unit.api.conftest import TOKEN, start_app

Invoke = Callable[..., Result]


@pytest.fixture(autouse=True)
def settings_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The commands read Settings.from_env(): start each test from a clean environment."""
    import os

    for key in list(os.environ):
        if key.startswith("BLUEGREEN_") or key == "MLFLOW_TRACKING_URI":
            monkeypatch.delenv(key)
    monkeypatch.setenv("BLUEGREEN_ADMIN_TOKEN", TOKEN)


@pytest.fixture
def registry() -> FakeRegistry:
    registry = FakeRegistry()
    registry.add(1)
    return registry


@pytest.fixture
def app(tmp_path: Path, registry: FakeRegistry, loader: FakeLoader) -> Iterator[TestClient[Any]]:
    yield from start_app(tmp_path, registry, loader, ready=True)


def run(args: list[str], http: Any = None) -> Result:
    return CliRunner().invoke(cli, args, obj=Transport(http) if http is not None else None)


@pytest.fixture
def bg(app: TestClient[Any]) -> Invoke:
    """`bg("status", "--json")`: run a command against the app."""
    return lambda *args: run(list(args), app)
