"""Loads in the supervised loader child, against a real `mlflow server` and real uvicorn
workers: a load that never returns, altered artifacts, a loader killed mid-load, and two
workers sharing one mapped copy of a version. Constant client load runs where a swap happens,
and every failed request is counted."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil
import pytest

from tests.integration.conftest import AppFactory
from tests.support.faults import Load, metric, wait_until
from tests.support.models import EnsembleVersions, TestRegistry
from tests.support.servers import AppServer, MlflowServer

pytestmark = pytest.mark.integration

REJECTED_TAG = "bluegreen.rejected"


def _serves(app: AppServer, version: int) -> bool:
    from tests.support.faults import served_version

    return served_version(app.url) == version


def _events(app: AppServer, name: str, **fields: object) -> list[dict[str, object]]:
    return [
        e for e in app.log_events()
        if e.get("event") == name and all(e.get(k) == v for k, v in fields.items())
    ]  # fmt: skip


def _loader_children(worker_pid: int) -> list[psutil.Process]:
    return [
        child for child in psutil.Process(worker_pid).children()
        if "bluegreen.loading.child" in " ".join(child.cmdline())
    ]  # fmt: skip


def test_a_stuck_load_never_holds_the_next_version_back(
    start_app: AppFactory, registry: TestRegistry
) -> None:
    """A version whose `load_context` never returns, then a good one, under constant load:
    the good one serves within its load time plus one control interval, neither is tagged
    rejected, and no request fails."""
    registry.register("good")
    app = start_app(env={"BLUEGREEN_LOAD_TIMEOUT_S": "600"})
    with Load(app.url, clients=3, pause_s=0.005) as load:
        stuck = registry.register("good", load_hang_s=3600)
        wait_until(lambda: _events(app, "model.load.start", version=stuck), timeout=30,
                   what="the stuck version's load started")  # fmt: skip
        time.sleep(1.5)  # well into the hang
        moved = time.monotonic()
        good = registry.register("good")
        wait_until(lambda: _serves(app, good), timeout=30, what="the good version serves")
        took = time.monotonic() - moved
        report = load.stop()
    assert not report.failures, report.summary()
    assert report.total > 50
    # control interval 1 s (AppServer); a keyword model loads in well under a second
    assert took < 10, f"the good version took {took:.1f}s to serve behind a stuck load"
    assert _events(app, "model.load.superseded", version=stuck)
    assert REJECTED_TAG not in registry.tags(stuck)
    assert REJECTED_TAG not in registry.tags(good)


def test_a_bundle_serves_without_trusting_code_and_an_altered_one_is_refused(
    start_app: AppFactory, registry: TestRegistry, ensembles: EnsembleVersions,
    mlflow_server: MlflowServer,
) -> None:  # fmt: skip
    first = ensembles.register()
    app = start_app(env={"BLUEGREEN_TRUST_MODEL_CODE": "false"})
    assert _serves(app, first)
    assert _events(app, "loader.mapped", version=first)  # the data path, not pyfunc

    altered = ensembles.register(alias=None)
    files = ensembles.bundle_files(altered, mlflow_server.cwd / "artifacts")
    packed = next(p for p in files if p.name == "packed.npy")
    data = bytearray(packed.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped bit pattern, same size
    packed.write_bytes(bytes(data))
    with Load(app.url, clients=2, pause_s=0.01) as load:
        registry.set_alias(altered)
        wait_until(lambda: REJECTED_TAG in registry.tags(altered), timeout=60,
                   what="the altered version is tagged rejected")  # fmt: skip
        report = load.stop()
    assert not report.failures, report.summary()
    assert registry.tags(altered)[REJECTED_TAG].startswith("integrity:")
    assert "sha256" in registry.tags(altered)[REJECTED_TAG]
    assert _serves(app, first)
    # the alias points back at what serves (moved right after the tag is written)
    wait_until(lambda: registry.alias_version() == first, timeout=30, what="alias restored")
    assert metric(app.url, "bluegreen_model_load_failures_total", reason="integrity") == 1

    untrusted = registry.register("good")  # a third-party pyfunc: runs code from the store
    wait_until(lambda: REJECTED_TAG in registry.tags(untrusted), timeout=60,
               what="the pyfunc version is refused")  # fmt: skip
    assert registry.tags(untrusted)[REJECTED_TAG].startswith("untrusted:")
    assert _serves(app, first)


def test_a_loader_killed_mid_load_is_transient_and_the_version_loads_on_retry(
    start_app: AppFactory, registry: TestRegistry, ensembles: EnsembleVersions
) -> None:
    first = ensembles.register()
    app = start_app()
    assert _serves(app, first)
    (child,) = _loader_children(app.pid)
    # Stopped, the child holds the next request unanswered: the load is in progress for as
    # long as we like, and the kill lands in the middle of it, not before or after.
    child.send_signal(signal.SIGSTOP)
    with Load(app.url, clients=2, pause_s=0.01) as load:
        second = ensembles.register()
        wait_until(lambda: _events(app, "model.load.start", version=second), timeout=30,
                   what="the load started")  # fmt: skip
        time.sleep(0.5)
        os.kill(child.pid, signal.SIGKILL)
        wait_until(lambda: _events(app, "model.load.transient", version=second), timeout=30,
                   what="the kill counted as transient")  # fmt: skip
        wait_until(lambda: _serves(app, second), timeout=60, what="the retry serves it")
        report = load.stop()
    assert not report.failures, report.summary()
    assert REJECTED_TAG not in registry.tags(second)
    assert metric(app.url, "bluegreen_model_load_transient_failures_total") >= 1
    (respawned,) = _loader_children(app.pid)
    assert respawned.pid != child.pid


def _mapped_bytes(pid: int, under: Path) -> tuple[int, int, set[str]]:
    """(Rss, Pss, files) of the mappings of files below `under` in one process, in bytes."""
    rss = pss = 0
    files: set[str] = set()
    current: str | None = None
    with open(f"/proc/{pid}/smaps", encoding="utf-8") as smaps:
        for line in smaps:
            parts = line.split()
            if "-" in parts[0] and len(parts) >= 5 and ":" in parts[3]:  # a mapping's header
                path = parts[5] if len(parts) > 5 else ""
                current = path if path.startswith(str(under)) else None
                if current:
                    files.add(current)
            elif current and parts[0] == "Rss:":
                rss += int(parts[1]) * 1024
            elif current and parts[0] == "Pss:":
                pss += int(parts[1]) * 1024
    return rss, pss, files


def test_two_workers_share_one_mapped_copy_of_a_version(
    start_app: AppFactory, ensembles: EnsembleVersions
) -> None:
    version = ensembles.register()
    app = start_app(workers=2)
    with Load(app.url, clients=4) as load:  # touch the model's pages in both workers
        time.sleep(3)
        report = load.stop()
    assert not report.failures, report.summary()
    cache = Path(app.env["BLUEGREEN_STATE_DIR"]).resolve() / "models"
    pids = app.worker_pids()
    assert len(pids) == 2
    seen = [_mapped_bytes(pid, cache) for pid in pids]
    (rss_a, pss_a, files_a), (rss_b, pss_b, files_b) = seen
    assert files_a, "the workers map the prepared files"
    assert files_a == files_b, "both workers map the same prepared files"
    assert all(f"/v{version}-" in f for f in files_a)
    assert min(rss_a, rss_b) > 1_000_000
    # Shared pages are split between the processes that map them: two private copies
    # would give Pss == Rss in each.
    assert pss_a + pss_b <= 1.2 * max(rss_a, rss_b), seen
