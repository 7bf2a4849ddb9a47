"""The `bluegreen` command (also `python -m bluegreen`).

    bluegreen serve                      run the API
    bluegreen train [--register ...]     train, log and register into the registry serve follows
    bluegreen status | versions | promote [V] | rollback | reload | canary PERCENT|abort
              | reject V --reason ... | unreject V | predict TEXT... | ready [--wait S]

Every command reads the same settings as `serve` (`bluegreen.settings.Settings.from_env`).
Exit codes (`bluegreen.cli.output`): 0 ok, 1 the server refused (4xx), 2 usage or settings
error, 3 unreachable, 5xx or not ready. Imports stay light: `serve` must set the Prometheus
multiprocess directory before anything imports prometheus_client.
"""

from __future__ import annotations

import click

from bluegreen.cli.admin import COMMANDS
from bluegreen.cli.server import (
    EDGE_PROTOCOL,
    prepare_multiprocess_dir,
    serve,
    serve_command,
    uvicorn_options,
)
from bluegreen.cli.train import train_command

__all__ = ["EDGE_PROTOCOL", "cli", "main", "prepare_multiprocess_dir", "serve", "uvicorn_options"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Serve, train and operate bluegreen: blue/green model swaps from the MLflow registry.

    Exit codes: 0 ok; 1 the server refused the request (4xx); 2 usage or settings error;
    3 server unreachable, failing (5xx) or not ready.
    """


cli.add_command(serve_command)
cli.add_command(train_command)
for _command in COMMANDS:
    cli.add_command(_command)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    try:
        cli.main(args=argv, prog_name="bluegreen")
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0
