"""A real HAProxy (the Debian package) in front of bluegreen replicas on loopback.

The configuration is what an operator would put in front of a bluegreen fleet, and each choice
has a reason:

* **Health checks on `/readyz`**, not `/healthz`: a replica that is alive but has no live
  model (starting, loading, registry unreachable at start) answers 503 there and gets no
  traffic. `inter 1s fall 2 rise 2`: a dead replica is out within about two seconds, and one
  good probe is not enough to come back (a replica's workers load on their own, and a probe
  reaches only one of them).
* **Retries that cannot replay an action.** `retries 3` with `option redispatch 1`: every
  retry goes to another replica, not to the one that just failed. What is retried:
  - `conn-failure` (HAProxy's default) for every request: the request never reached a
    server (a replica that was SIGTERMed has closed its listening socket), so replaying it
    cannot do anything twice.
  - `empty-response` and `503` only for the routes whose replay has no effect: `/predict`,
    `/predict/batch`, the Open Inference Protocol `infer` route (a prediction is a pure
    function of its input) and `GET`/`HEAD`. An empty response is a replica that closed the
    connection while stopping (a request that was in its accept queue, or an idle keep-alive
    connection closed under HAProxy); bluegreen's 503s mean the worker did not do the work
    (no live model yet in a worker that just started, or its admission limit), so another
    replica may. `http-request disable-l7-retry` turns these off for everything else:
    `POST /admin/rollback` replayed after an empty response would walk the history back
    two steps instead of one. Admin calls go on their own client connection, so HAProxy
    (`http-reuse safe`) sends them on a fresh server connection, never on an idle one that
    the replica may be closing.
  - `option http-buffer-request`: HAProxy holds the whole request before it picks a
    replica. Without it, it cannot replay a POST whose body was still arriving, and the
    503s of a restarted replica's still-loading worker reached clients. It also keeps
    slow-body clients off the replicas.
  - Not retried: `response-timeout` (a slow prediction replayed on every replica multiplies
    the load that made it slow) and 500/502/504 (the work was attempted; a replay would
    repeat a failure or double a timeout).
* **Timeouts**: `timeout server` above the app's own `BLUEGREEN_REQUEST_TIMEOUT_S` (10 s) so
  the app's own 504 with its JSON body answers first; `timeout connect 1s` on loopback.
* `option forwardfor`, with the replicas trusting the proxy (`BLUEGREEN_TRUSTED_PROXIES`), so
  the audit log names the client behind the proxy.
* `X-Served-By: <server name>` on every response, so a client (the tests' load generator)
  can tell which replica answered.
* **A stop needs no drain in the proxy.** The replicas run with `BLUEGREEN_SHUTDOWN_DELAY_S`
  longer than `fall 2` takes: a SIGTERMed replica fails `/readyz`, keeps serving, and says
  `Connection: close` on its responses, until the checks have marked it down; only then
  does it close its listener. Without that delay, a SIGTERM lost the requests HAProxy had
  already sent to a replica that stopped accepting at once: connections still queued there
  were reset, and HAProxy replays a request on a clean close (`empty-response`) but not on
  a reset (a read error), so the client got a 502.
* Logs go to stdout (`option httplog` with `dontlog-normal`: only requests that failed,
  retried or were redispatched), and a runtime API socket answers `show stat`, which the
  tests read for server states and retry counts.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.support.servers import Process, free_port

BACKEND = "replicas"
SERVED_BY = "X-Served-By"
APP_REQUEST_TIMEOUT_S = 10  # the app's default BLUEGREEN_REQUEST_TIMEOUT_S


def haproxy_binary() -> str | None:
    """The haproxy executable, or None. Debian installs it in /usr/sbin, which is not on a
    normal user's PATH."""
    chosen = os.environ.get("HAPROXY_BIN")
    if chosen:
        return chosen if os.access(chosen, os.X_OK) else None
    found = shutil.which("haproxy")
    if found:
        return found
    return "/usr/sbin/haproxy" if os.access("/usr/sbin/haproxy", os.X_OK) else None


def render_config(port: int, servers: Sequence[tuple[str, int]], stats_socket: Path) -> str:
    """The configuration described in this module's docstring."""
    lines = [
        "global",
        "    log stdout format raw local0 info",
        f"    stats socket {stats_socket} mode 600 level admin",
        "    maxconn 4096",
        "    nbthread 1",
        "",
        "defaults",
        "    mode http",
        "    log global",
        "    option httplog",
        "    option dontlog-normal",
        "    option forwardfor",
        "    option http-buffer-request",
        "    timeout connect 1s",
        "    timeout client 30s",
        f"    timeout server {APP_REQUEST_TIMEOUT_S + 5}s",
        "    timeout http-request 5s",
        "    timeout http-keep-alive 5s",
        "    timeout queue 5s",
        "    timeout check 2s",
        "    retries 3",
        "    option redispatch 1",
        "    retry-on conn-failure empty-response 503",
        "",
        "frontend api",
        f"    bind 127.0.0.1:{port}",
        f"    default_backend {BACKEND}",
        "",
        f"backend {BACKEND}",
        "    balance roundrobin",
        "    acl replayable method GET HEAD",
        "    acl replayable path /predict /predict/batch",
        "    acl replayable path_reg ^/v2/models/[^/]+(/versions/[^/]+)?/infer$",
        "    http-request disable-l7-retry unless replayable",
        "    option httpchk",
        "    http-check send meth GET uri /readyz",
        "    http-check expect status 200",
        f"    http-response set-header {SERVED_BY} %[srv_name]",
        "    default-server check inter 1s fastinter 250ms downinter 1s fall 2 rise 2",
    ]
    lines += [f"    server {name} 127.0.0.1:{server_port}" for name, server_port in servers]
    return "\n".join(lines) + "\n"


class HAProxy(Process):
    """`haproxy -db` (foreground) with the configuration above; `stop()` always cleans up."""

    def __init__(self, workdir: Path, servers: Sequence[tuple[str, int]]) -> None:
        binary = haproxy_binary()
        if binary is None:
            raise FileNotFoundError("haproxy is not installed (Debian package haproxy)")
        workdir.mkdir(parents=True, exist_ok=True)
        self.binary = binary
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.servers = list(servers)
        # unix socket paths are limited to ~107 bytes; pytest's tmp paths can be longer
        self._sock_dir = Path(tempfile.mkdtemp(prefix="bg-haproxy-", dir="/tmp"))
        self.stats_socket = self._sock_dir / "admin.sock"
        self.config_path = workdir / "haproxy.cfg"
        self.config_path.write_text(render_config(self.port, self.servers, self.stats_socket))
        args = [binary, "-db", "-f", str(self.config_path)]
        super().__init__(args, os.environ, workdir / "haproxy.log", workdir)

    def start(self, timeout: float = 20.0) -> None:
        check = subprocess.run(
            [self.binary, "-c", "-q", "-f", str(self.config_path)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if check.returncode != 0:
            raise RuntimeError(f"haproxy refused its configuration: {check.stderr.strip()}")
        super().start()
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"haproxy exited with {self.proc.returncode}: {self.log_text()}")
            # The runtime API answers once every listener is bound (a failed bind exits).
            with contextlib.suppress(OSError):
                self.command("show info")
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"haproxy not answering after {timeout}s")
            time.sleep(0.1)

    def stop(self, timeout: float = 10.0) -> int | None:
        try:
            return super().stop(timeout)
        finally:
            shutil.rmtree(self._sock_dir, ignore_errors=True)

    # --- the runtime API -----------------------------------------------------------------------
    def command(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(str(self.stats_socket))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")

    def stats(self) -> dict[str, dict[str, Any]]:
        """`show stat` of the backend: one row per server plus `BACKEND`, keyed by name."""
        text = self.command("show stat").lstrip("# ")
        rows = {}
        for row in csv.DictReader(io.StringIO(text)):
            if row.get("pxname") == BACKEND:
                rows[row["svname"]] = row
        return rows

    def server_status(self) -> dict[str, str]:
        """'UP', 'DOWN', 'UP 1/2' (going down), 'DOWN 1/2' (coming up), 'MAINT'... by server."""
        return {name: row["status"] for name, row in self.stats().items() if name != "BACKEND"}

    def wait_status(self, name: str, status: str, timeout: float = 30.0) -> float:
        """Seconds until `name` is exactly `status` (e.g. 'UP', 'DOWN')."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.server_status().get(name) == status:
                return time.monotonic() - started
            time.sleep(0.1)
        raise TimeoutError(f"haproxy server {name} not {status} after {timeout}s: "
                           f"{self.server_status()}")  # fmt: skip

    def set_state(self, name: str, state: str) -> None:
        """`ready`, `drain` or `maint` for server `name` (the runtime API's `set server`)."""
        answer = self.command(f"set server {BACKEND}/{name} state {state}").strip()
        if answer:
            raise RuntimeError(f"haproxy: set server {name} state {state}: {answer}")

    def retry_counts(self) -> dict[str, int]:
        """Retries and redispatches HAProxy made (connection or L7), over the whole run."""
        backend = self.stats()["BACKEND"]
        return {"retries": int(backend.get("wretr") or 0),
                "redispatches": int(backend.get("wredis") or 0),
                "connection_errors": int(backend.get("econ") or 0),
                "response_errors": int(backend.get("eresp") or 0)}  # fmt: skip
