"""`bluegreen train`: the model package's trainer, pointed at the registry `bluegreen serve`
follows. With no flags it logs and registers into the same registry (the embedded default
included: `.bluegreen/mlflow.db`, artifacts under `.bluegreen/artifacts`) under
`BLUEGREEN_MODEL_NAME`, with `BLUEGREEN_DATA_DIR` as its data; `--tracking-uri`,
`--model-name` and `--data` override them."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

import click

from bluegreen.cli.output import EXIT_USAGE

if TYPE_CHECKING:
    from bluegreen.settings import Settings


@click.command(
    "train",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def train_command(ctx: click.Context, args: tuple[str, ...]) -> None:
    """Train the ensemble, log it and (--register) register it; `bluegreen train --help`."""
    from bluegreen.model import cli as model_cli
    from bluegreen.settings import Settings, SettingsError

    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        click.echo(f"bluegreen: invalid settings: {exc}", err=True)
        ctx.exit(EXIT_USAGE)
    defaults = {
        "tracking_uri": settings.effective_tracking_uri,
        "model_name": settings.registry.model_name,
        "data": settings.bootstrap.data_dir,
    }
    parsed = model_cli.build_parser(defaults).parse_args(["train", *args])
    if settings.embedded and parsed.tracking_uri == settings.effective_tracking_uri:
        _keep_artifacts_under_state_dir(settings)
    ctx.exit(model_cli.run(parsed))


def _keep_artifacts_under_state_dir(settings: Settings) -> None:
    """The embedded registry's runs keep their artifacts where the server reads them, as
    bootstrap's do; MLflow's own default would be ./mlruns of the current directory."""
    import mlflow

    from bluegreen.bootstrap import ensure_experiment
    from bluegreen.model.training import EXPERIMENT

    settings.state_dir.mkdir(parents=True, exist_ok=True)
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT
    ensure_experiment(settings, name)
    experiment = mlflow.get_experiment_by_name(name)
    root = settings.artifact_root.as_uri()
    if experiment is not None and not str(experiment.artifact_location).startswith(root):
        print(
            f"bluegreen: warning: experiment {name!r} keeps its artifacts at "
            f"{experiment.artifact_location}, not under {root}; set MLFLOW_EXPERIMENT_NAME to "
            "a new experiment to keep them with the registry",
            file=sys.stderr,
        )
