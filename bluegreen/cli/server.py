"""`bluegreen serve`: run the API under uvicorn. Imports stay lazy: `serve` must set the
Prometheus multiprocess directory before prometheus_client is imported anywhere."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import attrs
import click

if TYPE_CHECKING:
    from bluegreen.settings import Settings

# An import string, not the class: importing it here would import prometheus_client (through
# bluegreen.metrics) before the multiprocess directory is set, and workers import it anyway.
EDGE_PROTOCOL = "bluegreen.edge.protocol:EdgeProtocol"


def prepare_multiprocess_dir() -> None:
    """Wipe stale per-pid metric files left by a previous run (uvicorn has no dead-worker
    hook). Runs in the parent before workers start, and before anything imports
    `bluegreen.metrics`, whose metric objects would create files in the directory."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return
    path = Path(directory)
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)


def uvicorn_options(settings: Settings, *, http: str = EDGE_PROTOCOL) -> dict[str, Any]:
    """Everything `serve` passes to `uvicorn.run` but the app, host, port and workers."""
    return {
        "factory": True,
        "http": http,
        "ws": "none",  # no WebSocket routes: an upgrade request is an ordinary HTTP request
        "log_config": None,
        "access_log": False,
        "timeout_keep_alive": 5,
        "timeout_graceful_shutdown": int(settings.lifecycle.drain_timeout_s),
        # Requests in flight per worker (the edge protocol does not count idle connections;
        # probes are exempt). A backstop well above the app's own admission limit: the
        # app's `overloaded` 503 carries the app's context, so the app should shed first.
        "limit_concurrency": settings.limits.max_pending_requests * 2 + 256,
        "backlog": 2048,
        # uvicorn trusts X-Forwarded-For from loopback by default: any local client could
        # then write the peer address the app (and its audit log) sees.
        "proxy_headers": bool(settings.edge.trusted_proxies),
        "forwarded_allow_ips": list(settings.edge.trusted_proxies) or None,
    }


class ServeArgs(Protocol):
    """What `serve` reads from its command line (an `argparse.Namespace` will do)."""

    @property
    def host(self) -> str | None: ...
    @property
    def port(self) -> int | None: ...
    @property
    def workers(self) -> int | None: ...


def serve(args: ServeArgs, *, http: str = EDGE_PROTOCOL) -> int:
    """`bluegreen serve`; `http` names uvicorn's HTTP protocol (the benchmark's baseline
    passes uvicorn's stock "httptools")."""
    from bluegreen.edge.fd_limit import raise_open_files_limit
    from bluegreen.settings import Settings, SettingsError

    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"bluegreen: invalid settings: {exc}", file=sys.stderr)
        return 2
    host = args.host or os.environ.get("BLUEGREEN_HOST") or settings.server.host
    port = args.port or settings.server.port
    workers = args.workers or settings.server.workers
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str((settings.state_dir / "prometheus").resolve())
    prepare_multiprocess_dir()
    raise_open_files_limit()  # before uvicorn spawns workers: they inherit it
    import signal

    import uvicorn

    # uvicorn re-raises the signal that stopped it once graceful shutdown is over, so the
    # default handler would kill the process (exit -15) after a clean drain. A no-op handler
    # installed first is what uvicorn restores and re-raises into: SIGTERM then exits 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    uvicorn.run(
        "bluegreen.app:create_app",
        host=host,
        port=port,
        workers=workers,
        **uvicorn_options(settings, http=http),
    )
    return 0


@attrs.frozen
class _Args:
    host: str | None
    port: int | None
    workers: int | None


@click.command("serve")
@click.option("--host", help="Address to bind (default: BLUEGREEN_HOST, 127.0.0.1).")
@click.option("--port", type=int, help="Port (default: BLUEGREEN_PORT, 8000).")
@click.option("--workers", type=int, help="Worker processes (default: BLUEGREEN_WORKERS, 1).")
@click.pass_context
def serve_command(
    ctx: click.Context, host: str | None, port: int | None, workers: int | None
) -> None:
    """Run the API (uvicorn) on the registry the settings name."""
    ctx.exit(serve(_Args(host, port, workers)))
