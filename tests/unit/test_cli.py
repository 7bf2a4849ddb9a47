"""What `bluegreen serve` hands uvicorn: the edge protocol, and forwarded headers only from
configured proxies."""

from __future__ import annotations

from uvicorn.importer import import_from_string
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from bluegreen.cli import EDGE_PROTOCOL, uvicorn_options
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
    settings = Settings(max_pending_requests=100)
    assert uvicorn_options(settings)["limit_concurrency"] > settings.max_pending_requests
