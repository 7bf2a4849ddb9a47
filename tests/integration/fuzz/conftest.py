"""One app for the whole fuzz module set: starting a server costs tens of seconds here."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.support.models import TestRegistry
from tests.support.servers import AppServer, MlflowServer

ADMIN_TOKEN = "fuzz-admin-token-7f3a9c"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(scope="package")
def fuzz_app(
    tmp_path_factory: pytest.TempPathFactory, mlflow_server: MlflowServer
) -> Iterator[AppServer]:
    name = f"fuzz-{uuid.uuid4().hex[:8]}"
    TestRegistry(mlflow_server.url, name).register()
    app = AppServer(
        tmp_path_factory.mktemp("fuzz-app"),
        mlflow_server.url,
        env={
            "BLUEGREEN_MODEL_NAME": name,
            "BLUEGREEN_ADMIN_TOKEN": ADMIN_TOKEN,
            "BLUEGREEN_BODY_TIMEOUT_S": "2",
            # The fuzzers send wrong tokens by the hundred from one peer on purpose; the
            # throttle has its own test (tests/integration/serving/test_control_plane_abuse.py).
            "BLUEGREEN_ADMIN_AUTH_MAX_FAILURES": "1000000",
        },
    )
    try:
        app.start()
        yield app
    finally:
        died = app.proc is not None and app.proc.poll() is not None
        code = app.stop()
        if died:  # surface a crash instead of a wall of "connection refused"
            pytest.fail(f"fuzz app died during the run (exit {code}):\n{app.log_text()[-3000:]}")
