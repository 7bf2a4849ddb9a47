"""`python -m bluegreen serve | train`. Imports stay lazy: `serve` must set the Prometheus
multiprocess directory before prometheus_client is imported anywhere."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path


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


def _serve(args: argparse.Namespace) -> int:
    from bluegreen.settings import Settings, SettingsError

    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"bluegreen: invalid settings: {exc}", file=sys.stderr)
        return 2
    host = args.host or os.environ.get("BLUEGREEN_HOST") or settings.host
    port = args.port or settings.port
    workers = args.workers or settings.workers
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str((settings.state_dir / "prometheus").resolve())
    prepare_multiprocess_dir()
    import signal

    import uvicorn

    # uvicorn re-raises the signal that stopped it once graceful shutdown is over, so the
    # default handler would kill the process (exit -15) after a clean drain. A no-op handler
    # installed first is what uvicorn restores and re-raises into: SIGTERM then exits 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    uvicorn.run(
        "bluegreen.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=None,
        access_log=False,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=int(settings.drain_timeout_s),
        # A backstop well above the app's own admission limit: uvicorn's 503 has no
        # Retry-After, the app's `overloaded` 503 has one, so the app should shed first.
        limit_concurrency=settings.max_pending_requests * 2 + 256,
        backlog=2048,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "train":
        from bluegreen.model.cli import main as train_main

        return train_main(argv)
    parser = argparse.ArgumentParser(prog="bluegreen")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the API (uvicorn)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)
    sub.add_parser("train", help="train the ensemble (see `bluegreen train --help`)")
    args = parser.parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
