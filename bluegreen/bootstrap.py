"""First start on an empty registry: train and register a small real model, once per machine.

Workers of one server share the embedded registry; a file lock makes exactly one of them train
while the others wait and then find the version it registered.
"""

from __future__ import annotations

import fcntl
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from bluegreen.logging import event
from bluegreen.registry import Registry
from bluegreen.settings import Settings

log = logging.getLogger("bluegreen.bootstrap")
EXPERIMENT = "bluegreen-bootstrap"


def ensure_experiment(settings: Settings, name: str = EXPERIMENT) -> None:
    """Keep embedded-registry artifacts under the project-local state dir, not ./mlruns
    (`bluegreen train` calls this too, with its own experiment `name`)."""
    import mlflow

    mlflow.set_tracking_uri(settings.effective_tracking_uri)
    if mlflow.get_experiment_by_name(name) is None:
        location = settings.artifact_root.as_uri() if settings.embedded else None
        mlflow.create_experiment(name, artifact_location=location)
    os.environ["MLFLOW_EXPERIMENT_NAME"] = name


def bootstrap_if_empty(settings: Settings, registry: Registry) -> int | None:
    """Blocking. Returns the version registered, or None when the registry already had one.

    Training runs in a child process: its peak memory goes back to the OS when it exits
    instead of inflating the server's RSS, and its console chatter stays out of our JSON log.
    """
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    lock_path = settings.state_dir / "bootstrap.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if registry.has_versions():
            return None
        started = time.monotonic()
        event(log, "bootstrap.train.start", model=settings.registry.model_name)
        # Here, not in the child: only this process knows the registry is the embedded one
        # whose artifacts belong under the state dir (the child sees an explicit URI).
        ensure_experiment(settings)
        env = {**os.environ, "MLFLOW_TRACKING_URI": settings.effective_tracking_uri}
        child = subprocess.run(
            [sys.executable, "-m", "bluegreen.bootstrap"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if child.returncode != 0:
            tail = (child.stderr or child.stdout)[-2000:]
            raise BootstrapFailed(f"training exited with {child.returncode}: {tail}")
        version = int(child.stdout.strip().splitlines()[-1])
        event(log, "bootstrap.train.end", model=settings.registry.model_name, version=version,
              duration_s=round(time.monotonic() - started, 1))  # fmt: skip
        return version


class BootstrapFailed(RuntimeError):
    pass


def main() -> int:
    """Child process entry: train and register the default model, print its version."""
    from bluegreen.model import bootstrap_default_model

    settings = Settings.from_env()  # MLFLOW_EXPERIMENT_NAME comes from the parent
    version = bootstrap_default_model(
        settings.effective_tracking_uri,
        settings.registry.model_name,
        settings.registry.model_alias,
        Path(settings.bootstrap.data_dir) if settings.bootstrap.data_dir else None,
    )
    print(version, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
