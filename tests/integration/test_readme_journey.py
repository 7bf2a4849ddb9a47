"""The README's roll-out and roll-back journey, run literally.

The block after `<!-- journey` in README.md is run as one bash script, exactly as written, in
a fresh directory on the embedded default: a real `bluegreen serve` (which trains and
registers version 1 on its first start), real training of the small profile twice, reload,
two rollbacks, status and versions. Only the port is chosen here (`BLUEGREEN_PORT`, which
every command reads, as a reader's shell would set it), so the test never meets another
server. Each command's output is checked against what the README says it prints.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from tests.support.servers import REPO, VENV_BIN, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

README = REPO / "README.md"
MARKER = "<!-- journey"
STEP = "::journey-step::"
TEXT = "정말 재미있는 영화였어요!"


def journey_commands(readme: str) -> list[str]:
    """The command lines of the bash block that follows the journey marker."""
    assert MARKER in readme, "README.md lost its journey marker"
    block = re.search(r"```bash\n(.*?)```", readme.split(MARKER, 1)[1], re.S)
    assert block is not None, "no bash block after the journey marker"
    return [line for line in block.group(1).splitlines() if line.strip()]


def script(commands: list[str]) -> str:
    """The commands as one script, each preceded by a marker line splitting the output."""
    lines = ["set -euo pipefail"]
    for index, command in enumerate(commands):
        lines += [f"echo '{STEP}{index}'", command]
    return "\n".join(lines) + "\n"


def steps(commands: list[str], output: str) -> list[tuple[str, str]]:
    """(command, what it printed) for every command that ran."""
    parts = re.split(rf"^{re.escape(STEP)}(\d+)\n", output, flags=re.M)
    return [(commands[int(parts[i])], parts[i + 1]) for i in range(1, len(parts) - 1, 2)]


def printed(ran: list[tuple[str, str]], prefix: str) -> list[str]:
    return [out for command, out in ran if command.startswith(prefix)]


def clean_env(port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("BLUEGREEN_", "MLFLOW_", "PROMETHEUS_"))}  # fmt: skip
    env.update(PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}", BLUEGREEN_PORT=str(port),
               PYTHONUNBUFFERED="1")  # fmt: skip
    return env


def test_the_journey_parser_finds_the_documented_commands() -> None:
    commands = journey_commands(README.read_text(encoding="utf-8"))
    assert commands[0].startswith("export BLUEGREEN_ADMIN_TOKEN=")
    assert any(c.startswith("bluegreen serve") for c in commands)
    assert len(printed([(c, "") for c in commands], "bluegreen rollback")) == 2
    ran = steps(commands[:2], f"{STEP}0\nA\n{STEP}1\nB\nC\n")
    assert ran == [(commands[0], "A\n"), (commands[1], "B\nC\n")]


@pytest.mark.timeout(1800)
def test_the_readme_journey_run_literally(tmp_path: Path) -> None:
    commands = journey_commands(README.read_text(encoding="utf-8"))
    assert (VENV_BIN / "bluegreen").exists(), "the bluegreen command is not installed: just setup"
    proc = subprocess.Popen(
        ["bash", "-c", script(commands)],
        cwd=tmp_path,
        env=clean_env(free_port()),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # the backgrounded server shares the group: killed with it
    )
    try:
        output, _ = proc.communicate(timeout=1700)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    ran = steps(commands, output)
    log = tmp_path / "bluegreen.log"
    server_log = log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"
    assert proc.returncode == 0, (
        f"`{ran[-1][0] if ran else '?'}` failed ({proc.returncode}):\n{output[-4000:]}\n"
        f"--- server log ---\n{server_log}"
    )
    assert len(ran) == len(commands)

    assert printed(ran, "bluegreen ready")[0].startswith("ready: version 1 serves")

    served = []
    for out in printed(ran, "bluegreen predict"):
        match = re.search(r"\(version (\d+), slot (blue|green)\)", out)
        assert match, out
        served.append(int(match.group(1)))
    # served after bootstrap, after each train + reload, after each rollback
    assert served == [1, 2, 3, 2, 1]

    trained = printed(ran, "bluegreen train")
    for out, version in zip(trained, (2, 3), strict=True):
        assert f'"version": {version}' in out, out[-2000:]
        assert '"promoted": true' in out
    for out, version in zip(printed(ran, "bluegreen reload"), (2, 3), strict=True):
        assert out.startswith("reload: "), out
        assert f"version {version}" in out, out

    first, second = printed(ran, "bluegreen rollback")
    assert first.strip() == "rolled back: version 2 serves (was 3)"
    assert second.strip() == "rolled back: version 1 serves (was 2)"  # back, never forward

    (status,) = printed(ran, "bluegreen status")
    assert re.search(r"^live\s+version 1 \(slot (blue|green)\)$", status, re.M), status
    (versions,) = printed(ran, "bluegreen versions")
    assert re.search(r"^alias\s+production -> v1$", versions, re.M), versions
    assert re.search(r"rollback\s+v3 -> v2", versions), versions
    assert re.search(r"rollback\s+v2 -> v1", versions), versions

    # everything went into the registry the server follows, nothing into ./mlruns
    state = tmp_path / ".bluegreen"
    assert (state / "mlflow.db").exists()
    assert any((state / "artifacts").rglob("MLmodel"))
    assert not (tmp_path / "mlruns").exists()
    assert not (tmp_path / "mlflow.db").exists()
