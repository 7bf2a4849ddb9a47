"""Dockerfile and .dockerignore: lint, structure, and the image's command run for real."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from bluegreen.settings import Settings
from tests.ops.conftest import REPO
from tests.support.servers import Process, free_port, wait_http

DOCKERFILE = REPO / "Dockerfile"


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def last(self, keyword: str) -> str | None:
        found = [arg for kw, arg in self.instructions if kw == keyword]
        return found[-1] if found else None

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for kw, arg in self.instructions:
            if kw == "ENV":
                for token in shlex.split(arg):
                    key, _, value = token.partition("=")
                    values[key] = value
        return values


def parse_dockerfile(path: Path = DOCKERFILE) -> list[Stage]:
    """Instructions per stage, continuation lines joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    stages: list[Stage] = []
    for line in logical:
        keyword, _, arg = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            parts = arg.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else ""
            stages.append(Stage(name=name, base=parts[0]))
        elif stages:
            stages[-1].instructions.append((keyword, arg.strip()))
    return stages


def runtime_stage() -> Stage:
    return parse_dockerfile()[-1]


def exec_form(arg: str | None) -> list[str]:
    assert arg is not None
    value = json.loads(arg)
    assert isinstance(value, list), f"use the exec (JSON) form: {arg}"
    return [str(v) for v in value]


def test_hadolint_passes(hadolint: str) -> None:
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_inference_is_the_default_target_and_runs_unprivileged() -> None:
    stages = parse_dockerfile()
    runtime = stages[-1]
    assert runtime.name == "runtime", "the last stage is what `docker build .` produces"
    assert len(stages) >= 3, "multi-stage: dependencies, build, runtime"
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim", DOCKERFILE.read_text(), re.MULTILINE)
    assert {stage.base for stage in stages if stage.name in {"deps", "runtime"}} == {
        "${PYTHON_IMAGE}"
    }
    user = runtime.last("USER")
    assert user is not None
    assert user.split(":")[0] not in {"root", "0"}
    # numeric uid so that Kubernetes runAsNonRoot can verify it
    uid = re.sub(r"\$\{?APP_UID\}?", "10001", user).split(":")[0]
    assert uid.isdigit()
    assert int(uid) > 0


def test_dependencies_are_cached_before_the_source_is_copied() -> None:
    deps = parse_dockerfile()[0]
    copies = [arg for kw, arg in deps.instructions if kw == "COPY"]
    assert copies == ["pyproject.toml ./"], "the dependency layer sees only pyproject.toml"
    assert any(kw == "RUN" and "pip install" in arg for kw, arg in deps.instructions)


def test_healthcheck_entrypoint_and_env() -> None:
    stage = runtime_stage()
    healthcheck = stage.last("HEALTHCHECK")
    assert healthcheck is not None
    assert "/healthz" in healthcheck
    assert "urllib" in healthcheck
    command = exec_form(stage.last("ENTRYPOINT")) + exec_form(stage.last("CMD"))
    assert command[:3] == ["python", "-m", "bluegreen"]
    assert command[3] == "serve"
    env = stage.env()
    assert env["BLUEGREEN_HOST"] == "0.0.0.0"
    assert env["PROMETHEUS_MULTIPROC_DIR"].startswith("/tmp/")
    assert "BLUEGREEN_ADMIN_TOKEN" not in env, "secrets never live in the image"


def test_env_names_are_settings_the_app_accepts() -> None:
    env = {k: v for k, v in runtime_stage().env().items() if k.startswith("BLUEGREEN_")}
    settings = Settings.from_env(env)  # raises on unknown BLUEGREEN_* names or bad values
    assert settings.server.port == int(env["BLUEGREEN_PORT"])


def _ignored(path: str, patterns: list[str]) -> bool:
    """.dockerignore semantics for our simple patterns: last match wins, `!` re-includes."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        body = body.rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(p, body) for p in prefixes):
            ignored = not negate
    return ignored


def test_dockerignore_keeps_the_build_inputs_and_drops_the_rest() -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = []
    for stage in parse_dockerfile():
        for kw, arg in stage.instructions:
            if kw == "COPY" and not arg.startswith("--from"):
                sources.extend(arg.split()[:-1])
    assert sources, "no COPY from the build context?"
    for source in sources:
        assert not _ignored(source.rstrip("/"), patterns), f"{source} is excluded"
        assert (REPO / source).exists(), f"COPY source {source} missing"
    for secret_or_bulk in (".env", ".venv", ".git", "mlruns", ".bluegreen", "tests"):
        assert _ignored(secret_or_bulk, patterns), f"{secret_or_bulk} must not be sent"


@pytest.mark.integration
def test_image_command_serves_healthz(tmp_path: Path) -> None:
    """Run the runtime stage's ENTRYPOINT + CMD with its ENV on this machine (host python
    instead of the image's, a temp state dir and a free port): /healthz must answer 200, and
    the HEALTHCHECK command must exit 0 against it."""
    stage = runtime_stage()
    command = exec_form(stage.last("ENTRYPOINT")) + exec_form(stage.last("CMD"))
    assert command[0] == "python"
    command[0] = sys.executable
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BLUEGREEN_", "PROMETHEUS_"))}
    env.pop("MLFLOW_TRACKING_URI", None)
    image_env = stage.env()
    for key in ("PATH", "HOME"):  # the image's paths do not exist here
        image_env.pop(key)
    env.update(image_env)
    env.update(
        {
            "BLUEGREEN_HOST": "127.0.0.1",
            "BLUEGREEN_PORT": str(port),
            "BLUEGREEN_STATE_DIR": str(tmp_path / "state"),
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "tmp" / "prometheus"),
            # No model is needed for liveness; do not train one here.
            "BLUEGREEN_BOOTSTRAP": "false",
        }
    )
    app = Process(command, env, tmp_path / "app.log", tmp_path)
    try:
        app.start()
        wait_http(f"http://127.0.0.1:{port}/healthz", timeout=90, proc=app.proc)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        probe = exec_form(stage.last("HEALTHCHECK").split("CMD", 1)[1].strip())
        probe[0] = sys.executable
        result = subprocess.run(
            probe, env=env, capture_output=True, text=True, timeout=30, check=False
        )
        assert result.returncode == 0, result.stderr
        # The multiprocess dir the image configures is created (wiped) at start.
        assert (tmp_path / "tmp" / "prometheus").is_dir()
    except Exception:
        print(app.log_text()[-5000:])
        raise
    finally:
        app.stop()
