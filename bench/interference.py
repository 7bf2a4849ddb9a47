"""Where the rest of the swap tail comes from: the loader child's kind of work, with no swap.

Section 3's swaps keep every piece of swap work off the event loop and out of the GIL's way
(`py-spy --gil` on a worker during the scenario shows the load, smoke and pair threads holding
it for a few hundred ms in all over 100 s, as much as the registry polls of steady state), yet the
app's own p99 still rises in the windows. This measures what is left without any bluegreen code
in the way: one worker serves the full-size model under a steady load of 10 clients at 10
requests/s each, and phases with nothing else running alternate with phases where a separate
process under SCHED_IDLE (the loader child's scheduling class) does, in a loop, what the child
does for a version of that size:

- `hash`: read a file of the version's size from the page cache and sha256 it (verification);
- `write`: write a file of that size and delete it (preparing the mapped arrays);
- `both`: the two in turn;
- `both@N`: the two in 1 MiB chunks, paced to N MiB/s by the child's own `Pace`: what
  `BLUEGREEN_LOADER_MAX_MIB_PER_S` buys;
- `spin`: a pure-Python loop over a few integers: CPU time alone, with no bytes moved.

SCHED_IDLE only keeps it from taking a CPU that a worker thread wants; it still shares the
caches, the memory bandwidth and the kernel's page-cache and writeback work with the worker. The
p99 of each phase kind against the quiet phases is that share.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from loadtests.swap_under_load import percentile
from tests.support.constant_load import ConstantLoad, Record
from tests.support.models import TestRegistry
from tests.support.servers import AppServer

KINDS = ("spin", "hash", "write", "both", "both@100", "both@25")
ROUNDS = 3
PHASE_S = 6.0
SETTLE_S = 0.5
"""Each phase's first half second is left out: the hog starting, or the last one's writeback."""
USERS = 10
RATE_PER_USER = 10.0

HOG = """
import hashlib, os, sys, time
from bluegreen.loading.fetch import Pace
kind, blob, scratch, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
end = time.monotonic() + seconds
kind, _, rate = kind.partition("@")
chunk = 1 << 20
while kind == "spin" and time.monotonic() < end:
    x = 0
    for i in range(100_000):
        x += i
while time.monotonic() < end:
    if rate:  # paced chunk by chunk, by the loader child's own Pace
        pace = Pace(float(rate) * 2**20)
        digest = hashlib.sha256()
        with open(blob, "rb") as f, open(scratch, "wb") as out:
            while time.monotonic() < end:
                data = f.read(chunk)
                if not data:
                    break
                digest.update(data)
                out.write(data)
                pace(len(data))
        os.unlink(scratch)
        continue
    with open(blob, "rb") as f:
        data = f.read()
    if kind in ("hash", "both"):
        hashlib.sha256(data).hexdigest()
    if kind in ("write", "both"):
        with open(scratch, "wb") as f:
            f.write(data)
        os.unlink(scratch)
"""


def _phase_stats(records: list[Record], phases: list[tuple[str, float, float]], kind: str) -> Any:
    picked = [
        r for r in records
        for k, start, end in phases
        if k == kind and start + SETTLE_S <= r.started <= end and r.ok
    ]  # fmt: skip
    client = [(r.ended - r.started) * 1000 for r in picked]
    app = [r.server_ms for r in picked if r.server_ms is not None]
    if not client or not app:
        return {"n": 0}
    return {
        "n": len(picked),
        "p50_ms": round(percentile(client, 50), 2),
        "p99_ms": round(percentile(client, 99), 2),
        "app_p50_ms": round(percentile(app, 50), 2),
        "app_p99_ms": round(percentile(app, 99), 2),
    }


def run(
    mlflow_url: str, source: tuple[str, str | None, str | None], size_bytes: int, out: Path
) -> dict[str, Any]:
    """`source`: the full-size stand-in's logged model; `size_bytes`: what one version's
    prepared files weigh (the hog's file size)."""
    out.mkdir(parents=True, exist_ok=True)
    name = f"interference-{int(time.time())}"
    registry = TestRegistry(mlflow_url, name)
    logged, run_id, model_id = source
    registry._create(logged, run_id, "production", model_id)
    blob = out / "version-sized.bin"
    blob.write_bytes(os.urandom(size_bytes))
    app = AppServer(out / "app", mlflow_url, workers=1, env={"BLUEGREEN_MODEL_NAME": name})
    load = ConstantLoad(app.url, users=USERS, rate_per_user=RATE_PER_USER, max_duration_s=300)
    phases: list[tuple[str, float, float]] = []
    try:
        app.start(timeout=180)
        load.start()
        time.sleep(3)  # warm: the LRU cache and the connections
        for _ in range(ROUNDS):
            for kind in KINDS:
                for phase in ("quiet", kind):
                    started = time.time()
                    if phase == "quiet":
                        time.sleep(PHASE_S)
                    else:
                        subprocess.run(
                            [sys.executable, "-c", HOG, kind, str(blob), str(out / "scratch.bin"),
                             str(PHASE_S)],
                            check=True,
                        )  # fmt: skip
                    phases.append((phase, started, time.time()))
    finally:
        records = load.stop()
        app.stop()
        blob.unlink(missing_ok=True)
    failed = len([r for r in records if not r.ok])
    result: dict[str, Any] = {
        "size_mb": round(size_bytes / 2**20, 1),
        "requests": len(records),
        "failed": failed,
        "load": f"{USERS} clients x {RATE_PER_USER:g} req/s",
        "phase_s": PHASE_S,
        "rounds": ROUNDS,
        "phases": {kind: _phase_stats(records, phases, kind) for kind in ("quiet", *KINDS)},
    }
    quiet = result["phases"]["quiet"]
    for kind in KINDS:
        stats = result["phases"][kind]
        if stats.get("n") and quiet.get("n"):
            stats["p99_ratio"] = round(stats["p99_ms"] / quiet["p99_ms"], 3)
            stats["app_p99_ratio"] = round(stats["app_p99_ms"] / quiet["app_p99_ms"], 3)
    return result


def prepared_size(state_dir: Path) -> int:
    """Bytes of the largest prepared version under an app's state directory."""
    sizes = [
        sum(f.stat().st_size for f in d.iterdir() if f.is_file())
        for d in state_dir.glob("**/models/v*")
        if d.is_dir()
    ]
    return max(sizes, default=0)
