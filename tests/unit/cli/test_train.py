"""`bluegreen train` with no flags trains into the registry `bluegreen serve` follows (the
embedded default: `<state dir>/mlflow.db`, artifacts under `<state dir>/artifacts`), under
BLUEGREEN_MODEL_NAME; flags override. Training itself is stubbed: only the wiring is tested
here (tests/integration/test_readme_journey.py trains for real)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bluegreen.cli import cli
from bluegreen.model import cli as model_cli


@pytest.fixture
def trained(monkeypatch: pytest.MonkeyPatch) -> list[argparse.Namespace]:
    runs: list[argparse.Namespace] = []

    def fake_run(args: argparse.Namespace) -> int:
        runs.append(args)
        return 0

    monkeypatch.setattr(model_cli, "run", fake_run)
    return runs


def test_no_flags_means_the_embedded_registry_of_serve(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trained: list[argparse.Namespace]
) -> None:
    import mlflow

    state = tmp_path / "state"
    monkeypatch.setenv("BLUEGREEN_STATE_DIR", str(state))
    monkeypatch.setenv("BLUEGREEN_MODEL_NAME", "reviews")
    monkeypatch.setenv("BLUEGREEN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    result = CliRunner().invoke(cli, ["train", "--register", "--alias", "production"])
    assert result.exit_code == 0, result.output
    args = trained[0]
    uri = f"sqlite:///{(state / 'mlflow.db').resolve()}"
    assert args.tracking_uri == uri
    assert args.model_name == "reviews"
    assert args.data == tmp_path / "data"
    assert args.register
    assert args.alias == "production"
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.get_experiment_by_name("bluegreen-sentiment")
    assert experiment is not None
    assert experiment.artifact_location == (state / "artifacts").resolve().as_uri()


def test_flags_override_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trained: list[argparse.Namespace]
) -> None:
    monkeypatch.setenv("BLUEGREEN_STATE_DIR", str(tmp_path / "state"))
    other = f"sqlite:///{tmp_path / 'other.db'}"
    result = CliRunner().invoke(cli, ["train", "--tracking-uri", other, "--model-name", "x",
                                      "--data", str(tmp_path)])  # fmt: skip
    assert result.exit_code == 0, result.output
    args = trained[0]
    assert (args.tracking_uri, args.model_name, args.data) == (other, "x", tmp_path)
    # someone else's registry: its artifact location is not ours to choose
    assert not (tmp_path / "state" / "mlflow.db").exists()


def test_a_remote_registry_is_used_as_it_is(
    monkeypatch: pytest.MonkeyPatch, trained: list[argparse.Namespace]
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    result = CliRunner().invoke(cli, ["train"])
    assert result.exit_code == 0, result.output
    assert trained[0].tracking_uri == "http://mlflow.internal:5000"


def test_train_help_and_bad_flags_come_from_the_trainer(trained: list[Any]) -> None:
    helped = CliRunner().invoke(cli, ["train", "--help"])
    assert helped.exit_code == 0
    assert "--register" in helped.output
    assert "--promote-if-better" in helped.output
    assert CliRunner().invoke(cli, ["train", "--alias"]).exit_code == 2
    assert not trained


def test_alias_without_register_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BLUEGREEN_STATE_DIR", str(tmp_path))
    assert model_cli.main(["train", "--alias", "production"]) == 2
