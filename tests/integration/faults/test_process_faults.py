"""Matrix rows 6-7: SIGTERM under load while a slow version loads; kill -9 of one worker; and
SIGTERM with a shutdown delay, which takes the process out of rotation before it stops."""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest

from tests.integration.conftest import AppFactory
from tests.support.faults import (
    LONG_TEXT,
    Load,
    live_worker_pids,
    served_version,
    tracebacks,
    wait_until,
)
from tests.support.models import TestRegistry

pytestmark = pytest.mark.integration
DRAIN_TIMEOUT_S = 5
SHUTDOWN_DELAY_S = 3.0


@pytest.mark.timeout(180)
def test_sigterm_under_load_drains_in_flight_and_exits_zero(
    registry: TestRegistry, start_app: AppFactory
) -> None:
    # Live: 0.2 s per long text on the prediction threads, so requests are in flight at SIGTERM.
    v1 = registry.register("traffic_slow", delay_s=0.2)
    app = start_app(env={"BLUEGREEN_DRAIN_TIMEOUT_S": str(DRAIN_TIMEOUT_S)})
    load = Load(app.url, clients=4, body=lambda i: {"text": f"{LONG_TEXT} {i}"}).start()
    try:
        # A version that takes ~10 s in smoke: the load thread is busy when SIGTERM arrives.
        registry.register("slow", delay_s=1.5, ballast_mb=20)
        wait_until(
            lambda: any(e["event"] == "model.load.end" for e in app.log_events()),
            timeout=30, what="slow version loading",
        )  # fmt: skip
        time.sleep(0.5)
        assert app.proc is not None
        sent = time.monotonic()
        os.kill(app.pid, signal.SIGTERM)  # the process only, as `docker stop` does
        code = app.proc.wait(DRAIN_TIMEOUT_S + 10)
        exited_s = time.monotonic() - sent
    finally:
        report = load.stop()
    assert code == 0, f"exit code {code}"
    assert exited_s < DRAIN_TIMEOUT_S + 5, exited_s
    before = [r for r in report.records if r.started < sent - 0.1]
    in_flight = [r for r in before if r.ended > sent]
    assert [r for r in before if not r.ok] == [], report.summary()
    assert in_flight, "no request was in flight at SIGTERM: the test proves nothing"
    assert {r.version for r in before} == {v1}
    log = app.log_text()
    assert not tracebacks(log), tracebacks(log)
    assert "runtime.closed" in log


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_kill_9_one_worker_the_rest_keep_serving(
    registry: TestRegistry, start_app: AppFactory
) -> None:
    v1 = registry.register()
    app = start_app(workers=2)
    wait_until(lambda: len(live_worker_pids(app.pid)) == 2, timeout=30, what="two workers")
    old = live_worker_pids(app.pid)
    with Load(app.url, clients=4) as load:
        time.sleep(2)
        killed_at = time.monotonic()
        os.kill(old[0], signal.SIGKILL)
        replacement = wait_until(
            lambda: set(live_worker_pids(app.pid)) - set(old), timeout=60, what="replacement worker"
        )
        # The replacement loads the registry's version before answering (it has its own slots).
        wait_until(
            lambda: any(e["event"] == "model.promoted" and e.get("pid") in replacement
                        for e in app.log_events()),
            timeout=90, what="replacement serves",
        )  # fmt: skip
        recovered_at = time.monotonic()
        time.sleep(3)
    report = load.stop()
    failed = report.failures
    after_window = [r for r in failed if r.started > killed_at + 1.0]
    print(f"kill -9: {report.summary()}; failures after 1 s window: {len(after_window)}")
    # Connections the dead worker held fail once (at most one per client); nothing after.
    assert len(failed) <= load.clients, report.summary()
    assert not after_window, report.summary()
    assert report.versions() == {v1}
    tail = [r for r in report.records if r.started > recovered_at]
    assert tail
    assert all(r.ok for r in tail)
    versions = {served_version(app.url) for _ in range(60)}
    assert versions == {v1}


@pytest.mark.timeout(180)
def test_sigterm_with_a_shutdown_delay_fails_readyz_and_serves_until_the_delay_ends(
    registry: TestRegistry, start_app: AppFactory
) -> None:
    v1 = registry.register()
    app = start_app(workers=2, env={"BLUEGREEN_SHUTDOWN_DELAY_S": str(SHUTDOWN_DELAY_S),
                                    "BLUEGREEN_DRAIN_TIMEOUT_S": str(DRAIN_TIMEOUT_S)})  # fmt: skip
    wait_until(lambda: len([e for e in app.log_events() if e["event"] == "model.promoted"]) == 2,
               timeout=60, what="both workers serving")  # fmt: skip
    assert app.proc is not None
    probes: list[tuple[float, int, str]] = []
    closing: list[str] = []
    with Load(app.url, clients=2, pause_s=0.01) as load:
        time.sleep(1)
        sent = time.monotonic()
        os.kill(app.pid, signal.SIGTERM)  # the supervisor, which passes it to both workers
        while app.proc.poll() is None:
            try:
                ready = httpx.get(f"{app.url}/readyz", timeout=2)
                probes.append((time.monotonic() - sent, ready.status_code,
                               ready.json().get("reason", "")))  # fmt: skip
                if time.monotonic() - sent > 0.5:
                    answer = httpx.post(f"{app.url}/predict", json={"text": "좋아요"}, timeout=2)
                    assert answer.status_code == 200
                    closing.append(answer.headers.get("connection", ""))
            except httpx.TransportError:
                break  # the listener closed: the delay is over
            time.sleep(0.1)
        code = app.proc.wait(DRAIN_TIMEOUT_S + 15)
        exited_s = time.monotonic() - sent
    report = load.stop()
    assert code == 0, f"exit code {code}"
    assert SHUTDOWN_DELAY_S <= exited_s < SHUTDOWN_DELAY_S + DRAIN_TIMEOUT_S + 5, exited_s
    # Out of rotation within a moment of the signal, and still answering until the delay ends.
    late = [p for p in probes if p[0] > 0.5]
    assert late, probes
    assert all(p[1:] == (503, "shutting down") for p in late), probes
    assert max(p[0] for p in probes) > SHUTDOWN_DELAY_S - 1.0, probes
    assert closing, "no request was answered during the delay"
    assert set(closing) == {"close"}, closing
    # Every request sent before the delay ran out was served, by the live version.
    served = [r for r in report.records if r.started < sent + SHUTDOWN_DELAY_S - 0.5]
    assert [r for r in served if not r.ok] == [], report.summary()
    assert [r for r in served if r.started > sent + 1.0], "no request was sent during the delay"
    assert {r.version for r in served} == {v1}
    events = [e["event"] for e in app.log_events()]
    assert events.count("shutdown.delayed") == 2, events
    assert events.count("shutdown.started") == 2, events
    assert not tracebacks(app.log_text())
