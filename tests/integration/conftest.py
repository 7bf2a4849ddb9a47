"""Fixtures that start real servers. One `mlflow server` serves the whole session; each test
gets its own registered-model name, so tests never see each other's versions."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.models import EnsembleVersions, TestRegistry
from tests.support.servers import AppServer, MlflowServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    server = MlflowServer(tmp_path_factory.mktemp("mlflow"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def model_name() -> str:
    return f"sentiment-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def registry(mlflow_server: MlflowServer, model_name: str) -> TestRegistry:
    return TestRegistry(mlflow_server.url, model_name)


AppFactory = Callable[..., AppServer]


@pytest.fixture
def start_app(tmp_path: Path, mlflow_server: MlflowServer, model_name: str) -> Iterator[AppFactory]:
    started: list[AppServer] = []

    def start(
        *, workers: int = 1, env: dict[str, str] | None = None, ready: bool = True,
        tracking_uri: str | None = None, **kwargs: Any,
    ) -> AppServer:  # fmt: skip
        app = AppServer(
            tmp_path / f"app{len(started)}",
            tracking_uri or mlflow_server.url,
            workers=workers,
            env={"BLUEGREEN_MODEL_NAME": model_name, **(env or {})},
            **kwargs,
        )
        started.append(app)
        app.start(ready=ready)
        return app

    yield start
    for app in started:
        app.stop()


@pytest.fixture(scope="session")
def ensemble_fit(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The small real ensemble, fitted once per session on a slice of the shipped sample."""
    from bluegreen.model import data
    from bluegreen.model.training import fit_and_evaluate

    out = tmp_path_factory.mktemp("ensemble-fit")
    src = data.default_data_dir()
    return fit_and_evaluate(
        (src / data.SAMPLE_TRAIN_FILE, src / data.SAMPLE_TEST_FILE), out,
        sample=4000, test_sample=800, seed=1, profile="small",
    )  # fmt: skip


@pytest.fixture
def ensembles(ensemble_fit: Any, mlflow_server: MlflowServer, model_name: str) -> EnsembleVersions:
    return EnsembleVersions(ensemble_fit, mlflow_server.url, model_name)
