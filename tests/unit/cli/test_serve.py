"""What `bluegreen serve` hands uvicorn: the edge protocol, and forwarded headers only from
configured proxies."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from click.testing import CliRunner
from uvicorn.importer import import_from_string
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from bluegreen.cli import EDGE_PROTOCOL, cli, uvicorn_options
from bluegreen.cli import server as server_module
from bluegreen.edge.protocol import EdgeProtocol
from bluegreen.settings import Settings


def test_serve_runs_the_edge_protocol() -> None:
    options = uvicorn_options(Settings())
    assert options["http"] == EDGE_PROTOCOL
    protocol = import_from_string(EDGE_PROTOCOL)
    assert protocol is EdgeProtocol
    assert issubclass(protocol, HttpToolsProtocol)


def test_forwarded_headers_are_ignored_without_trusted_proxies() -> None:
    # uvicorn's own default would trust 127.0.0.1: a local client could spoof its address.
    options = uvicorn_options(Settings())
    assert options["proxy_headers"] is False


def test_forwarded_headers_are_trusted_from_the_configured_proxies_only() -> None:
    settings = Settings.from_env({"BLUEGREEN_TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.7"})
    options = uvicorn_options(settings)
    assert options["proxy_headers"] is True
    assert options["forwarded_allow_ips"] == ["10.0.0.0/8", "192.0.2.7"]


def test_the_in_flight_cap_stays_above_the_apps_admission_limit() -> None:
    settings = Settings.of(max_pending_requests=100)
    assert uvicorn_options(settings)["limit_concurrency"] > settings.limits.max_pending_requests


def test_the_serve_command_hands_its_options_to_serve(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []

    def fake_serve(args: Any, **_: Any) -> int:
        seen.append(args)
        return 0

    monkeypatch.setattr(server_module, "serve", fake_serve)
    result = CliRunner().invoke(cli, ["serve", "--host", "0.0.0.0", "--port", "8123",
                                      "--workers", "2"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (seen[0].host, seen[0].port, seen[0].workers) == ("0.0.0.0", 8123, 2)


def test_invalid_settings_stop_serve_with_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BLUEGREEN_NO_SUCH_SETTING", "1")
    result = CliRunner().invoke(cli, ["serve"])
    assert result.exit_code == 2
    assert "unknown setting BLUEGREEN_NO_SUCH_SETTING" in result.output


def test_the_command_line_does_not_import_prometheus_client() -> None:
    """`serve` sets PROMETHEUS_MULTIPROC_DIR before anything imports prometheus_client; the
    command line itself must not import it first."""
    code = (
        "import sys, bluegreen.cli\n"
        "assert 'prometheus_client' not in sys.modules, 'imported too early'\n"
        "assert 'bluegreen.app' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_python_dash_m_bluegreen_runs_the_same_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bluegreen", "--help"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0
    for command in ("serve", "train", "status", "versions", "rollback", "canary", "unreject"):
        assert command in done.stdout
