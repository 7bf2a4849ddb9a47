"""A fleet of real bluegreen replicas behind a real HAProxy, and the scenario that proves it.

`Fleet`: N replicas (`python -m bluegreen serve` with `BLUEGREEN_WORKERS` workers each), each
on its own loopback port with its own state directory, all following one `mlflow server`
registry with one canary key, behind `tests.support.haproxy.HAProxy`. `stop()` always cleans
up, whatever failed.

`FleetScenario`: under constant load through the proxy, move the alias, run a canary, SIGTERM
one replica (no drain in the proxy first: it fails `/readyz` through its shutdown delay)
and roll back while it is down, restart it, and roll back again through it. Each
step measures, per worker process, how long the fleet took to follow (see `Convergence`). The
integration test asserts on the result; `bench/fleet.py` reports it.

Per-process observation: every log line of a worker carries its pid and the time it was
written, so `model.promoted` (and `canary.started`) say when that process began to answer with
a version, and `model.load.start` when it began to load it. The load's responses (with the
proxy's `X-Served-By`) cross-check the logs from the outside: once every worker of a replica
logged the promotion, no request sent later may come back from the old version.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import signal
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.constant_load import ConstantLoad, Record
from tests.support.faults import live_worker_pids
from tests.support.haproxy import SERVED_BY, HAProxy
from tests.support.models import TestRegistry
from tests.support.servers import AppServer, free_port

TOKEN = "fleet-admin-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}", "X-Admin-Actor": "fleet-test"}
CANARY_KEY = "fleet-canary-key-shared-by-every-replica"
"""One key fleet-wide: a client key lands in the canary on every replica or on none."""
SHUTDOWN_DELAY_S = 3.0
REGISTRY_CALLS_TO_NOTICE = 4
"""Registry round trips between an alias move and the start of a process's load, besides the
wait for its next control tick: the control check that ends one interval (the next tick is
an interval after it returns), the check that sees the move, and the two reads of the
reconcile it escalates to (`resolve`, `control_view`)."""
SCHEDULING_SLACK_S = 0.25
"""Event-loop and thread hand-offs on cores shared by six workers, the load and the registry."""


def fleet_env(model_name: str, control_interval_s: float) -> dict[str, str]:
    return {
        "BLUEGREEN_MODEL_NAME": model_name,
        "BLUEGREEN_ADMIN_TOKEN": TOKEN,
        "BLUEGREEN_CANARY_KEY": CANARY_KEY,
        "BLUEGREEN_CONTROL_INTERVAL_S": f"{control_interval_s:g}",
        "BLUEGREEN_TRUSTED_PROXIES": "127.0.0.1",
        # A canary each worker can decide on its share of the load (a sixth of it). Latency
        # is not judged: both sides are the same model here, and the paired-latency verdict
        # has its own tests; this scenario is about the fleet following it.
        "BLUEGREEN_CANARY_MIN_REQUESTS": "20",
        "BLUEGREEN_CANARY_MIN_SECONDS": "2",
        "BLUEGREEN_CANARY_MAX_SECONDS": "30",
        "BLUEGREEN_CANARY_MIN_PAIRS": "0",
        # A SIGTERMed replica fails /readyz and keeps serving this long: more than the proxy's
        # checks take to mark it down (`fall 2`: the next check, then one `fastinter` later).
        "BLUEGREEN_SHUTDOWN_DELAY_S": f"{SHUTDOWN_DELAY_S:g}",
    }


class Replica:
    """One `bluegreen serve` process tree on a port of its own, restartable on that port."""

    def __init__(
        self, name: str, workdir: Path, tracking_uri: str, env: dict[str, str], workers: int
    ) -> None:
        self.name = name
        self.workdir = workdir
        self.tracking_uri = tracking_uri
        self.env = env
        self.workers = workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = self._new_app()
        self.generations: list[AppServer] = [self.app]

    def _new_app(self) -> AppServer:
        # The same workdir each time: a restarted replica keeps its state directory (and its
        # log, appended to), as a restarted container keeps its volume.
        return AppServer(
            self.workdir, self.tracking_uri, workers=self.workers, env=self.env, port=self.port
        )

    def start(self, timeout: float = 180.0) -> None:
        self.app.start(timeout=timeout)

    def worker_pids(self) -> list[int]:
        return live_worker_pids(self.app.pid)

    def events(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.app.log_events() if e.get("event") == name]

    def terminate(self, timeout: float = 60.0) -> tuple[int | None, float]:
        """SIGTERM to the supervisor (what `kill`, `docker stop` or a rolling restart sends);
        returns its exit status and how long it took to exit."""
        proc = self.app.proc
        assert proc is not None
        started = time.monotonic()
        os.kill(proc.pid, signal.SIGTERM)
        code = proc.wait(timeout)
        return code, time.monotonic() - started

    def restart(self, timeout: float = 180.0) -> None:
        """Start a new generation on the same port; returns once it answers `/healthz`, before
        its workers have a model (the proxy's `/readyz` checks decide when it gets traffic)."""
        self.app.stop()
        self.app = self._new_app()
        self.generations.append(self.app)
        self.app.start(timeout=timeout, ready=False)

    def wait_serving(self, timeout: float = 180.0) -> dict[int, float]:
        """Wait until every worker of this generation serves a version; when each began."""
        deadline = time.monotonic() + timeout
        while True:
            pids = self.worker_pids()
            promoted: dict[int, float] = {}
            for e in self.events("model.promoted"):
                if e.get("pid") in pids:
                    promoted.setdefault(int(e["pid"]), float(e["ts"]))
            if len(pids) == self.workers and set(promoted) == set(pids):
                return promoted
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: workers {pids}, serving {sorted(promoted)}")
            time.sleep(0.2)

    def stop(self) -> None:
        for app in self.generations:
            app.stop()


class Fleet:
    def __init__(
        self,
        workdir: Path,
        tracking_uri: str,
        model_name: str,
        *,
        replicas: int = 3,
        workers: int = 2,
        control_interval_s: float = 1.0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.model_name = model_name
        self.control_interval_s = control_interval_s
        full_env = {**fleet_env(model_name, control_interval_s), **(env or {})}
        self.replicas = [
            Replica(f"r{i}", workdir / f"r{i}", tracking_uri, full_env, workers)
            for i in range(replicas)
        ]
        self.haproxy = HAProxy(workdir / "haproxy", [(r.name, r.port) for r in self.replicas])
        self.url = self.haproxy.url

    def start(self, timeout: float = 240.0) -> None:
        # In parallel: each replica spends most of its start importing and loading.
        with concurrent.futures.ThreadPoolExecutor(len(self.replicas)) as pool:
            for future in [pool.submit(r.start, timeout) for r in self.replicas]:
                future.result()
        self.haproxy.start()
        for replica in self.replicas:
            self.haproxy.wait_status(replica.name, "UP", timeout=30)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.haproxy.stop()
        for replica in self.replicas:
            with contextlib.suppress(Exception):
                replica.stop()

    def replica(self, name: str) -> Replica:
        return next(r for r in self.replicas if r.name == name)

    def admin(
        self, method: str, path: str, *, json: Any = None, via: str | None = None
    ) -> httpx.Response:
        """An admin call through the proxy (or straight to replica `via`), on a connection of
        its own."""
        base = self.replica(via).url if via else self.url
        return httpx.request(method, f"{base}{path}", json=json, headers=ADMIN, timeout=120)


@contextlib.contextmanager
def running_fleet(*args: Any, **kwargs: Any) -> Iterator[Fleet]:
    fleet = Fleet(*args, **kwargs)
    try:
        fleet.start()
        yield fleet
    finally:
        fleet.stop()


# --- observing the registry alias ---------------------------------------------------------------
class AliasWatcher(threading.Thread):
    """Reads the alias every `period` seconds; for each move, the start of the last read that
    still saw the old version: the move happened after it, so times measured from it are never
    shorter than the truth (at most one period plus one registry call longer)."""

    def __init__(self, registry: TestRegistry, period: float = 0.1) -> None:
        super().__init__(name="alias-watcher", daemon=True)
        from mlflow import MlflowClient

        self._client = MlflowClient(registry.tracking_uri, registry_uri=registry.tracking_uri)
        self._name = registry.model_name
        self._period = period
        self._halt = threading.Event()
        self.moves: list[tuple[float, int]] = []
        """(not before, version) for each version the alias moved to."""
        self.reads: list[tuple[float, float]] = []
        """(start, seconds) of every read: how long a registry round trip takes right now."""

    def run(self) -> None:
        current: int | None = None
        previous_read = time.time()
        while not self._halt.is_set():
            read_at = time.time()
            try:
                version = int(
                    self._client.get_model_version_by_alias(self._name, "production").version
                )
                self.reads.append((read_at, time.time() - read_at))
            except Exception:
                version = None
            if version is not None and version != current:
                if current is not None:
                    self.moves.append((previous_read, version))
                current = version
            if version is not None:
                previous_read = read_at
            self._halt.wait(self._period)

    def mark(self) -> int:
        """Call before an action: `moved_to` then looks only at moves seen after it."""
        return len(self.moves)

    def moved_to(self, version: int, mark: int, started: float, timeout: float = 60.0) -> float:
        """When the alias moved to `version` (not before `started`, the action's start)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for not_before, moved in self.moves[mark:]:
                if moved == version:
                    return max(not_before, started)
            time.sleep(0.05)
        raise TimeoutError(f"the alias never moved to v{version}")

    def round_trip_s(self, start: float, end: float) -> float:
        """The slowest of this watcher's reads in [start, end]: what one registry call of a
        worker may cost in the same seconds (the same kind of call, to the same server, from
        a process on the same cores). The slowest, not a typical one: right after a move every
        process asks the one registry at once, and waits behind the others."""
        return max((d for t, d in list(self.reads) if start <= t <= end), default=0.0)

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


# --- convergence --------------------------------------------------------------------------------
@dataclass
class ProcessConvergence:
    replica: str
    pid: int
    from_alias_s: float
    """From the alias move (`AliasWatcher`: never earlier than the move) until this process
    answered with the version. Negative for the process that acted on the admin call itself,
    which switched before it moved the alias."""
    from_action_s: float
    """From the moment the test started the action (the operator's view)."""
    load_s: float
    """This process's own load of the version: `model.load.start` until it answered with it
    (download, verification, loading, smoke). 0 when it needed no load."""
    notice_s: float | None
    """From the alias move until this process started loading (None without a load): the
    wait for its control tick plus the registry reads that see the move."""
    bound_s: float
    """The control interval, plus this load, plus `REGISTRY_CALLS_TO_NOTICE` registry round
    trips (as measured in the same seconds) and `SCHEDULING_SLACK_S`."""

    @property
    def within_bound(self) -> bool:
        return self.from_alias_s <= self.bound_s


@dataclass
class Action:
    name: str
    version: int | None
    started: float
    alias_moved: float | None = None
    processes: list[ProcessConvergence] = field(default_factory=list)
    converged_at: float = 0.0
    """When the last process switched (wall clock)."""
    response: dict[str, Any] | None = None
    registry_round_trip_s: float = 0.0
    """`AliasWatcher.round_trip_s` over the action's seconds."""
    bounded: bool = True
    """Whether "control interval plus one load" applies (not to a canary's promotion, which
    waits for the canary's verdict)."""

    def summary(self) -> dict[str, Any]:
        values = [p.from_alias_s for p in self.processes]
        return {
            "action": self.name,
            "version": self.version,
            "bounded": self.bounded,
            "processes": len(self.processes),
            "median_s": round(statistics.median(values), 3) if values else None,
            "max_s": round(max(values), 3) if values else None,
            "max_from_action_s": round(max(p.from_action_s for p in self.processes), 3)
            if self.processes
            else None,
            "registry_round_trip_s": round(self.registry_round_trip_s, 3),
            "violations": [
                asdict(p) for p in self.processes if self.bounded and not p.within_bound
            ],
            "per_process": [asdict(p) for p in self.processes],
            "response": self.response,
        }


def _first(events: list[dict[str, Any]], pid: int, since: float, **match: Any) -> float | None:
    times = [
        float(e["ts"]) for e in events
        if e.get("pid") == pid and float(e["ts"]) >= since
        and all(e.get(k) == v for k, v in match.items())
    ]  # fmt: skip
    return min(times) if times else None


def wait_converged(
    fleet: Fleet,
    action: Action,
    pids: dict[str, list[int]],
    watcher: AliasWatcher,
    *,
    reached: tuple[str, ...] = ("model.promoted",),
    match: dict[str, Any] | None = None,
    needs_load: bool = True,
    timeout: float = 90.0,
) -> Action:
    """Wait until every pid logged one of the `reached` events (for `action.version`, or
    with `match`), then record each one's convergence into `action`."""
    match = match if match is not None else {"version": action.version}
    deadline = time.monotonic() + timeout
    t0 = action.alias_moved if action.alias_moved is not None else action.started
    since = action.started - 0.5
    interval = fleet.control_interval_s
    while True:
        rtt = watcher.round_trip_s(action.started, time.time())
        allowance = REGISTRY_CALLS_TO_NOTICE * rtt + SCHEDULING_SLACK_S
        results: list[ProcessConvergence] = []
        reached_at: list[float] = []
        missing = []
        for replica in fleet.replicas:
            if replica.name not in pids:
                continue
            log = replica.app.log_events()
            for pid in pids[replica.name]:
                hits = [
                    t for name in reached
                    if (t := _first([e for e in log if e.get("event") == name], pid, since,
                                    **match)) is not None
                ]  # fmt: skip
                if not hits:
                    missing.append(f"{replica.name}/{pid}")
                    continue
                at = min(hits)
                reached_at.append(at)
                load_s, notice_s = 0.0, None
                if needs_load:
                    starts = [
                        float(e["ts"]) for e in log
                        if e.get("event") == "model.load.start" and e.get("pid") == pid
                        and e.get("version") == action.version and since <= float(e["ts"]) <= at
                    ]  # fmt: skip
                    if starts:
                        load_s = at - max(starts)
                        notice_s = round(max(starts) - t0, 3)
                results.append(
                    ProcessConvergence(
                        replica=replica.name,
                        pid=pid,
                        from_alias_s=round(at - t0, 3),
                        from_action_s=round(at - action.started, 3),
                        load_s=round(load_s, 3),
                        notice_s=notice_s,
                        bound_s=round(interval + load_s + allowance, 3),
                    )
                )
        if not missing:
            action.processes = results
            action.converged_at = max(reached_at)
            action.registry_round_trip_s = rtt
            return action
        if time.monotonic() > deadline:
            raise TimeoutError(f"{action.name}: {missing} never reached {reached} {match}")
        time.sleep(0.2)


# --- the scenario -------------------------------------------------------------------------------
@dataclass
class FleetResult:
    versions: dict[str, int]
    actions: list[Action]
    records: list[Record]
    restart: dict[str, Any]
    terminated: dict[str, Any]
    haproxy: dict[str, Any]
    load_seconds: float
    checks: dict[str, Any] = field(default_factory=dict)

    @property
    def failures(self) -> list[Record]:
        return [r for r in self.records if not r.ok]

    def bounded_processes(self) -> list[ProcessConvergence]:
        """Processes of the version moves the bound applies to (not the canary share, which
        moves no version, nor the canary's promotion, which waits for its verdict)."""
        return [p for a in self.actions if a.bounded and a.version is not None for p in a.processes]

    def summary(self) -> dict[str, Any]:
        bounded = self.bounded_processes()
        followers = [p.from_alias_s for p in bounded if p.from_alias_s >= 0]
        served: dict[str, int] = {}
        for r in self.records:
            served[r.served_by] = served.get(r.served_by, 0) + 1
        versions_seen: dict[str, int] = {}
        for r in self.records:
            if r.version is not None:
                versions_seen[str(r.version)] = versions_seen.get(str(r.version), 0) + 1
        return {
            "bound": f"control interval + the process's own load + {REGISTRY_CALLS_TO_NOTICE} "
            "registry round trips (the slowest of the scenario's own registry reads in the same "
            "seconds) "
            f"+ {SCHEDULING_SLACK_S} s",
            "requests": len(self.records),
            "failed": len(self.failures),
            "failures_sample": [asdict(r) for r in self.failures[:5]],
            "rps": round(len(self.records) / self.load_seconds, 1) if self.load_seconds else 0,
            "served_by": dict(sorted(served.items())),
            "versions_seen": versions_seen,
            "versions": self.versions,
            "convergence": {
                "what": "alias move -> each worker process answers with the version "
                "(bounded actions; processes that acted on the admin call themselves excluded)",
                "processes_measured": len(followers),
                "median_s": round(statistics.median(followers), 3) if followers else None,
                "max_s": round(max(followers), 3) if followers else None,
                "max_load_s": round(max(p.load_s for p in bounded), 3) if bounded else None,
                "median_notice_s": _median([p.notice_s for p in bounded if p.from_alias_s >= 0]),
                "max_notice_s": _max([p.notice_s for p in bounded if p.from_alias_s >= 0]),
                "max_over_bound_s": round(max(p.from_alias_s - p.bound_s for p in bounded), 3)
                if bounded
                else None,
                "violations": sum(not p.within_bound for p in bounded),
            },
            "actions": [a.summary() for a in self.actions],
            "restart": self.restart,
            "terminated": self.terminated,
            "haproxy": self.haproxy,
            "checks": self.checks,
        }


class FleetScenario:
    """Runs on a started fleet whose alias names `v1`; `new_version()` registers a servable
    version without moving the alias."""

    def __init__(
        self,
        fleet: Fleet,
        registry: TestRegistry,
        new_version: Callable[[], int],
        *,
        users: int = 8,
        rate_per_user: float = 8.0,
        canary_percent: float = 50.0,
        settle_s: float = 2.0,
        log: Callable[[str], None] = print,
    ) -> None:
        self.fleet = fleet
        self.registry = registry
        self.new_version = new_version
        self.users = users
        self.rate_per_user = rate_per_user
        self.canary_percent = canary_percent
        self.settle_s = settle_s
        self.log = log

    def _pids(self, skip: str | None = None) -> dict[str, list[int]]:
        pids = {r.name: r.worker_pids() for r in self.fleet.replicas if r.name != skip}
        for name, found in pids.items():
            if len(found) != self.fleet.replica(name).workers:
                raise AssertionError(f"{name} has worker pids {found}")
        return pids

    def _report(self, action: Action) -> None:
        s = action.summary()
        self.log(f"  {action.name} -> v{action.version}: {s['processes']} processes, "
                 f"median {s['median_s']} s, max {s['max_s']} s from the alias move "
                 f"(max {s['max_from_action_s']} s from the action)")  # fmt: skip

    def _move_alias(self, name: str, version: int, pids: dict[str, list[int]],
                    watcher: AliasWatcher, **wait: Any) -> Action:  # fmt: skip
        mark = watcher.mark()
        action = Action(name, version, time.time())
        self.registry.set_alias(version)
        action.alias_moved = watcher.moved_to(version, mark, action.started)
        return wait_converged(self.fleet, action, pids, watcher, **wait)

    def _canary_share(
        self, percent: float, pids: dict[str, list[int]], watcher: AliasWatcher
    ) -> Action:
        action = Action(f"canary share {percent:g}%", None, time.time())
        response = self.fleet.admin("PUT", "/admin/canary", json={"percent": percent})
        if response.status_code != 200:
            raise AssertionError(f"PUT /admin/canary -> {response.status_code} {response.text}")
        action.response = response.json()
        # A registry tag, no load: every process applies it on its next control check.
        return wait_converged(self.fleet, action, pids, watcher, reached=("canary.share.set",),
                              match={"percent": percent}, needs_load=False)  # fmt: skip

    def _rollback(self, name: str, expect: int, pids: dict[str, list[int]],
                  watcher: AliasWatcher, via: str | None = None) -> Action:  # fmt: skip
        mark = watcher.mark()
        action = Action(name, expect, time.time())
        response = self.fleet.admin("POST", "/admin/rollback", via=via)
        action.response = {"status": response.status_code, **_json(response)}
        if response.status_code != 200 or action.response.get("version") != expect:
            raise AssertionError(f"{name}: expected v{expect}, got {response.status_code} "
                                 f"{response.text}")  # fmt: skip
        action.alias_moved = watcher.moved_to(expect, mark, action.started)
        return wait_converged(self.fleet, action, pids, watcher)

    def run(self) -> FleetResult:
        fleet, registry = self.fleet, self.registry
        v1 = registry.alias_version()
        v2, v3 = self.new_version(), self.new_version()
        victim = fleet.replicas[len(fleet.replicas) // 2]
        actions: list[Action] = []
        watcher = AliasWatcher(registry)
        load = ConstantLoad(fleet.url, users=self.users, rate_per_user=self.rate_per_user,
                            max_duration_s=600, served_by_header=SERVED_BY)  # fmt: skip
        watcher.start()
        try:
            load.start()
            time.sleep(self.settle_s)
            pids = self._pids()

            self.log(f"alias v{v1} -> v{v2} (a registry move, as `bluegreen train` makes)")
            actions.append(self._move_alias("alias move", v2, pids, watcher))
            self._report(actions[-1])
            time.sleep(self.settle_s)

            self.log(f"canary: share {self.canary_percent:g}% through the proxy, alias -> v{v3}")
            actions.append(self._canary_share(self.canary_percent, pids, watcher))
            canary = self._move_alias(
                "canary start", v3, pids, watcher, reached=("canary.started", "model.promoted")
            )
            actions.append(canary)
            self._report(canary)
            promoted = Action("canary promotion", v3, canary.started, canary.alias_moved,
                              bounded=False)  # fmt: skip
            actions.append(wait_converged(fleet, promoted, pids, watcher, needs_load=False))
            self._report(promoted)
            actions.append(self._canary_share(0, pids, watcher))
            time.sleep(self.settle_s)

            # No drain in the proxy first: the replica takes itself out of rotation (its
            # /readyz fails for BLUEGREEN_SHUTDOWN_DELAY_S before its listener closes), so an
            # unplanned SIGTERM (a rolling update, `docker stop`) loses nothing either.
            self.log(f"SIGTERM {victim.name}, roll back while it is down")
            code, exit_s = victim.terminate()
            down_s = fleet.haproxy.wait_status(victim.name, "DOWN", timeout=30)
            terminated = {
                "replica": victim.name,
                "shutdown_delay_s": SHUTDOWN_DELAY_S,
                "exit_code": code,
                "exit_s": round(exit_s, 3),
                "marked_down_s": round(down_s, 3),
            }
            survivors = self._pids(skip=victim.name)
            actions.append(self._rollback("rollback 1 (one replica down)", v2, survivors, watcher))
            self._report(actions[-1])

            self.log(f"restart {victim.name}")
            restart_started = time.time()
            victim.restart()
            # Its /readyz checks keep traffic away until a worker serves, and a request that
            # reaches a sibling still loading (503) is replayed on another replica.
            up_s = fleet.haproxy.wait_status(victim.name, "UP", timeout=180)
            up_at = time.time()
            serving = victim.wait_serving()
            ready_s = max(serving.values()) - restart_started
            new_pids = victim.worker_pids()
            started_with = {
                pid: sorted({e["version"] for e in victim.events("model.promoted")
                             if e.get("pid") == pid})
                for pid in new_pids
            }  # fmt: skip
            restart = {"replica": victim.name, "ready_s": round(ready_s, 3),
                       "marked_up_s": round(up_at - restart_started, 3),
                       "checks_until_up_s": round(up_s, 3), "pids": new_pids,
                       "promoted_versions_by_pid": {str(k): v for k, v in started_with.items()},
                       "fleet_version": registry.alias_version()}  # fmt: skip
            time.sleep(self.settle_s)

            self.log(f"rollback through the restarted {victim.name}")
            actions.append(
                self._rollback("rollback 2 (through the restarted replica)", v1, self._pids(),
                               watcher, via=victim.name)
            )  # fmt: skip
            self._report(actions[-1])
            time.sleep(self.settle_s)
        finally:
            records = load.stop()
            watcher.stop()
        result = FleetResult(
            versions={"v1": v1, "v2": v2, "v3": v3},
            actions=actions,
            records=records,
            restart=restart,
            terminated=terminated,
            haproxy=fleet.haproxy.retry_counts(),
            load_seconds=load.stopped_at - load.started_at,
        )
        result.checks = self._checks(result)
        return result

    def _checks(self, result: FleetResult) -> dict[str, Any]:
        """Cross-checks from the outside: after an action converged (by the logs), every
        request sent until the next action answers with its version, whichever replica
        served it."""
        stale: list[dict[str, Any]] = []
        switching = [a for a in result.actions if a.version is not None
                     and a.name != "canary start"]  # fmt: skip
        for action, following in zip(switching, [*switching[1:], None], strict=True):
            end = following.started if following is not None else float("inf")
            for r in self._sent_between(result.records, action.converged_at, end):
                if r.ok and r.version != action.version:
                    stale.append({"after": action.name, "expected": action.version,
                                  **asdict(r)})  # fmt: skip
        offered = set(result.versions.values())
        return {
            "stale_answers_after_convergence": stale[:10],
            "stale_count": len(stale),
            "unknown_versions": sorted(
                {r.version for r in result.records if r.version is not None} - offered
            ),
        }

    @staticmethod
    def _sent_between(records: list[Record], start: float, end: float) -> Iterator[Record]:
        return (r for r in records if start < r.started < end)


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 3) if present else None


def _max(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(max(present), 3) if present else None


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {"text": response.text[:300]}
    return body if isinstance(body, dict) else {"body": body}
