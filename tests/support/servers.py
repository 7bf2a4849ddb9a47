"""Real processes for integration tests: `mlflow server`, the bluegreen app under uvicorn,
Prometheus. Every starter returns an object whose `stop()` always cleans up; fixtures call it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(
    url: str, *, timeout: float = 60.0, expect: int | None = 200, proc: Any = None
) -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} while waiting for {url}")
        try:
            response = httpx.get(url, timeout=2.0)
            last = response.status_code
            if expect is None or response.status_code == expect:
                return
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.2)
    raise TimeoutError(f"{url} not answering {expect} after {timeout}s (last: {last})")


def json_events(text: str) -> list[dict[str, Any]]:
    """The JSON-line events of a log (uvicorn's own plain lines are skipped)."""
    events = []
    for line in text.splitlines():
        if line.startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):
                events.append(json.loads(line))
    return events


class Process:
    """A child process with its output captured to a log file."""

    def __init__(self, args: list[str], env: Mapping[str, str], log_path: Path, cwd: Path) -> None:
        self.args = args
        self.env = dict(env)
        self.log_path = log_path
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child for its lifetime
        self.proc = subprocess.Popen(
            self.args,
            env=self.env,
            cwd=self.cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        return self.proc.returncode

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_events(self) -> list[dict[str, Any]]:
        return json_events(self.log_text())


class MlflowServer(Process):
    def __init__(self, workdir: Path, port: int | None = None) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [
            str(VENV_BIN / "mlflow"), "server",
            "--host", "127.0.0.1", "--port", str(self.port),
            "--backend-store-uri", f"sqlite:///{workdir / 'mlflow.db'}",
            "--artifacts-destination", str(workdir / "artifacts"),
            "--serve-artifacts", "--workers", "1",
        ]  # fmt: skip
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        super().__init__(args, env, workdir / "mlflow-server.log", workdir)

    def start(self, timeout: float = 240.0) -> None:
        super().start()
        wait_http(f"{self.url}/health", timeout=timeout, proc=self.proc)

    def set_sched_idle(self, idle: bool) -> int:
        """Every thread of the server's processes to SCHED_IDLE (or back to normal): the
        benchmarks' stand-in for a registry on another host, which takes no CPU from the
        workers it serves. Threads created later inherit the policy. Returns threads set."""
        import psutil

        policy = os.SCHED_IDLE if idle else os.SCHED_OTHER
        root = psutil.Process(self.pid)
        count = 0
        for proc in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                for thread in proc.threads():
                    with contextlib.suppress(OSError):
                        os.sched_setscheduler(thread.id, policy, os.sched_param(0))
                        count += 1
        return count


class AppServer(Process):
    def __init__(
        self,
        workdir: Path,
        tracking_uri: str,
        *,
        workers: int = 1,
        env: Mapping[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        full_env = {
            k: v for k, v in os.environ.items() if not k.startswith(("BLUEGREEN_", "PROMETHEUS_"))
        }
        full_env.update(
            {
                "MLFLOW_TRACKING_URI": tracking_uri,
                "BLUEGREEN_STATE_DIR": str(workdir / "state"),
                "BLUEGREEN_PORT": str(self.port),
                "BLUEGREEN_WORKERS": str(workers),
                "BLUEGREEN_POLL_INTERVAL_S": "300",
                "BLUEGREEN_CONTROL_INTERVAL_S": "1",
                "BLUEGREEN_REGISTRY_BACKOFF_BASE_S": "0.5",
                "BLUEGREEN_REGISTRY_BACKOFF_MAX_S": "3",
                "BLUEGREEN_BOOTSTRAP": "false",
                # Most tests register the small third-party pyfunc models of
                # tests/support/pyfunc_models.py, which only the generic path loads.
                "BLUEGREEN_TRUST_MODEL_CODE": "true",
                "PYTHONUNBUFFERED": "1",
            }
        )
        if workers > 1:
            full_env["PROMETHEUS_MULTIPROC_DIR"] = str(workdir / "prom")
        full_env.update(env or {})
        args = [sys.executable, "-m", "bluegreen", "serve"]
        super().__init__(args, full_env, workdir / "app.log", REPO)

    def start(self, timeout: float = 180.0, *, ready: bool = True) -> None:
        super().start()
        wait_http(f"{self.url}/healthz", timeout=timeout, proc=self.proc)
        if ready:
            wait_http(f"{self.url}/readyz", timeout=timeout, proc=self.proc)
            if self.workers > 1:
                self._wait_all_workers_ready(timeout)

    @contextlib.contextmanager
    def running(self, timeout: float = 180.0) -> Iterator[AppServer]:
        """Started and ready for the `with` block, stopped after it whatever happens."""
        try:
            self.start(timeout=timeout)
            yield self
        finally:
            self.stop()

    def _wait_all_workers_ready(self, timeout: float) -> None:
        """Each worker loads on its own; one 200 from /readyz says nothing about the others.
        Fresh connections spread over the workers: require a run of consecutive 200s."""
        deadline = time.monotonic() + timeout
        streak = 0
        while streak < 10 * self.workers:
            if time.monotonic() > deadline:
                raise TimeoutError(f"not every worker of {self.url} became ready")
            ok = httpx.get(f"{self.url}/readyz", timeout=5).status_code == 200
            streak = streak + 1 if ok else 0
            if not ok:
                time.sleep(0.2)

    def worker_pids(self) -> list[int]:
        if self.workers <= 1:
            return [self.pid]
        # uvicorn with workers>1: the parent supervises the worker processes
        from tests.support.faults import live_worker_pids

        return live_worker_pids(self.pid)

    def rss_bytes(self) -> dict[int, int]:
        import psutil

        return {pid: psutil.Process(pid).memory_info().rss for pid in self.worker_pids()}


class PrometheusServer(Process):
    def __init__(self, workdir: Path, targets: list[str], scrape_interval: str = "1s") -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = workdir / "prometheus.yml"
        config.write_text(
            "global:\n"
            f"  scrape_interval: {scrape_interval}\n"
            f"  evaluation_interval: {scrape_interval}\n"
            "scrape_configs:\n"
            "  - job_name: bluegreen\n"
            "    static_configs:\n"
            f"      - targets: {json.dumps(targets)}\n"
        )
        binary = os.environ.get("PROMETHEUS_BIN", "prometheus")
        args = [
            binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]  # fmt: skip
        super().__init__(args, os.environ, workdir / "prometheus.log", workdir)

    def start(self, timeout: float = 60.0) -> None:
        super().start()
        wait_http(f"{self.url}/-/ready", timeout=timeout, proc=self.proc)

    def query(self, expr: str) -> dict[str, Any]:
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        body: dict[str, Any] = response.json()
        return body


@contextlib.contextmanager
def running(process: Process) -> Iterator[Process]:
    try:
        process.start()
        yield process
    finally:
        process.stop()
