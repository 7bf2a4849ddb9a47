"""`just bench`: every benchmark in one run, ratios measured side by side, BENCHMARKS.md rewritten.

    python -m bench.run_all                 # full run (~15 min on 2 cores), rewrites BENCHMARKS.md
    python -m bench.run_all --quick         # short runs to debug the tooling (no BENCHMARKS.md)

1. /predict throughput, p50/p99, 1 worker: bluegreen vs `mlflow models serve --env-manager local`
   on the same registered version (wrk, POST JSON bodies from a Lua script).
2. bluegreen /predict vs GET /healthz of the same app (the no-op baseline).
3. Swap under load (loadtests/swap_under_load.py): p99 during swaps / steady p99, failures.
4. Memory: worker RSS after 1, 10, 50, 100 swaps, plotted.
5. Model: load time, artifact size, per-text latency single and batched.
6. Scaling: 1 vs 2 workers with server and client (wrk) CPU seconds, per-request CPU cost.
7. HTTP edge: /predict on the edge protocol vs uvicorn's stock httptools (bench/edge_protocol.py).
8. Tracing: /predict with OpenTelemetry tracing on vs off (bench/tracing_overhead.py).
9. Open Inference Protocol: V2 infer vs /predict and /predict/batch on one server, repeated and
   unseen texts (bench/v2_throughput.py).
10. Fleet: 3 replicas x 2 workers behind HAProxy under load; seconds from an alias move (and
   rollbacks, a canary, a restart) until each process serves the version (bench/fleet.py).

The model is the real ensemble when `bluegreen.model.bootstrap_default_model` exists (trained
once into a registry cached under results/bench-cache/), else the small keyword test model.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from bench.wrk import lua_script, run_wrk
from tests.support.models import TestRegistry
from tests.support.servers import (
    VENV_BIN,
    AppServer,
    MlflowServer,
    Process,
    free_port,
    wait_http,
)

REPO = Path(__file__).resolve().parents[1]

MODEL_NAME = "ensemble-sentiment-model"
TOKEN = "bench-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
TEXTS_FILE = REPO / "loadtests" / "texts_ko.txt"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def texts(n: int = 200) -> list[str]:
    lines = [ln for ln in TEXTS_FILE.read_text(encoding="utf-8").splitlines() if ln.strip()]
    return [ln for ln in lines if not ln.startswith("#")][:n]


# --- the model under test -------------------------------------------------------------------
class ModelUnderTest:
    """A registry (mlflow server) with one servable version of the model to benchmark."""

    def __init__(self, cache: Path, *, force_keyword: bool = False) -> None:
        self.cache = cache
        self.kind = "keyword"
        self.source: tuple[str, str | None, str | None] | None = None
        self.server: MlflowServer | None = None
        self.version = 0
        self.force_keyword = force_keyword
        self.fallback_reason: str | None = None

    def start(self) -> None:
        import bluegreen.model as model_pkg

        bootstrap = getattr(model_pkg, "bootstrap_default_model", None)
        if bootstrap is not None and not self.force_keyword:
            self.kind = "ensemble"
            try:
                self._start("ensemble", bootstrap)
                self._check_servable()
                return
            except Exception as exc:
                self.fallback_reason = f"{type(exc).__name__}: {exc}"[:300]
                log(
                    f"the ensemble is not servable ({self.fallback_reason}); "
                    "falling back to the keyword test model"
                )
                self.stop()
                self.kind = "keyword"
        self._start("keyword", None)

    def _start(self, kind: str, bootstrap: Any) -> None:
        # Keyed by the model code: a changed model package retrains instead of reusing a stale
        # (or broken) cached version.
        digest = hashlib.sha256()
        for path in sorted((REPO / "bluegreen" / "model").glob("*.py")):
            digest.update(path.read_bytes())
        key = digest.hexdigest()[:10] if kind == "ensemble" else "v1"
        workdir = self.cache / f"mlflow-{kind}-{key}"
        self.server = MlflowServer(workdir)
        self.server.start(timeout=180)
        registry = TestRegistry(self.server.url, MODEL_NAME)
        latest = self._latest(registry)
        if latest is None:
            started = time.monotonic()
            if self.kind == "ensemble":
                log("training the ensemble once into the cached registry (bootstrap)")
                import mlflow

                mlflow.set_tracking_uri(self.server.url)
                if mlflow.get_experiment_by_name("bench") is None:
                    mlflow.create_experiment("bench")
                os.environ["MLFLOW_EXPERIMENT_NAME"] = "bench"
                assert bootstrap is not None
                bootstrap(self.server.url, MODEL_NAME, "production", None)
            else:
                registry.register("good")
            latest = self._latest(registry)
            log(f"registered {self.kind} model in {time.monotonic() - started:.0f}s")
        assert latest is not None
        self.version = latest
        self.source = _source_of(registry, MODEL_NAME, latest)
        self.registry = registry
        self.full_source: tuple[str, str | None, str | None] | None = None

    def ensure_full_size(self) -> tuple[str, str | None, str | None]:
        """The full-size stand-in (`bench/full_size.py`), registered once into the cached
        registry under its own name; its source registers further versions cheaply."""
        if self.full_source is not None:
            return self.full_source
        assert self.source is not None
        assert self.kind == "ensemble"
        from bench.full_size import register_full_size

        name = f"{MODEL_NAME}-fullsize"
        registry = TestRegistry(self.url, name)
        latest = self._latest(registry, name)
        if latest is None:
            started = time.monotonic()
            register_full_size(self.url, name, self.source[0])
            latest = self._latest(registry, name)
            log(f"registered the full-size stand-in in {time.monotonic() - started:.0f}s")
        assert latest is not None
        self.full_source = _source_of(registry, name, latest)
        return self.full_source

    def _check_servable(self) -> None:
        """Load it the way the server does and score real texts (fast path included)."""
        import mlflow

        from bluegreen.serving.model_handle import ModelRef, load_from_registry

        mlflow.set_tracking_uri(self.url)
        uri = f"models:/{MODEL_NAME}/{self.version}"
        loaded = load_from_registry(ModelRef(MODEL_NAME, self.version, uri), self.cache / "check")
        loaded.predict(texts(64))
        loaded.predict(texts(1))

    @staticmethod
    def _latest(registry: TestRegistry, name: str = MODEL_NAME) -> int | None:
        try:
            versions = registry.client.search_model_versions(f"name='{name}'")
        except Exception:  # no such model yet
            return None
        good = [int(v.version) for v in versions if "bluegreen.rejected" not in (v.tags or {})]
        return max(good) if good else None

    def fresh_name(
        self, suffix: str, source: tuple[str, str | None, str | None] | None = None
    ) -> str:
        """A new registered model whose version 1 is the benchmarked model (cheap: no logging)."""
        source = source or self.source
        assert source is not None
        name = f"{MODEL_NAME}-{suffix}-{int(time.time())}"
        reg = TestRegistry(self.url, name)
        reg._create(source[0], source[1], "production", source[2])
        return name

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


def _source_of(
    registry: TestRegistry, name: str, version: int
) -> tuple[str, str | None, str | None]:
    """(source, run_id, model_id) to register further versions of the same artifacts."""
    mv = registry.client.get_model_version(name, str(version))
    model_id = getattr(mv, "model_id", None)
    if not model_id and str(mv.source).startswith("models:/m-"):
        model_id = str(mv.source).removeprefix("models:/")  # a logged model (MLflow 3)
    return (mv.source, mv.run_id, model_id)


@contextlib.contextmanager
def bluegreen_app(
    out: Path, model: ModelUnderTest, name: str, *, workers: int = 1
) -> Iterator[AppServer]:
    app = AppServer(
        out / f"app-{name}-w{workers}",
        model.url,
        workers=workers,
        env={
            "BLUEGREEN_MODEL_NAME": MODEL_NAME,
            "BLUEGREEN_ADMIN_TOKEN": TOKEN,
            "BLUEGREEN_LOG_LEVEL": "WARNING",
            "BLUEGREEN_TRUST_MODEL_CODE": trust_code(model),
        },
    )
    with app.running(timeout=180):
        yield app


@contextlib.contextmanager
def mlflow_serve(out: Path, model: ModelUnderTest) -> Iterator[tuple[str, int]]:
    port = free_port()
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "MLFLOW_TRACKING_URI": model.url,
    }
    args = [
        str(VENV_BIN / "mlflow"),
        "models",
        "serve",
        "-m",
        f"models:/{MODEL_NAME}/{model.version}",
        "--env-manager",
        "local",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
        "-w",
        "1",
    ]
    (out / "mlflow-serve").mkdir(parents=True, exist_ok=True)
    proc = Process(args, env, out / "mlflow-serve" / "serve.log", out / "mlflow-serve")
    try:
        proc.start()
        wait_http(f"http://127.0.0.1:{port}/ping", timeout=180, proc=proc.proc)
        yield f"http://127.0.0.1:{port}", proc.pid
    finally:
        proc.stop()


def _pids(root: int) -> list[int]:
    import psutil

    parent = psutil.Process(root)
    return [root] + [c.pid for c in parent.children(recursive=True)]


# --- 1, 2, 6: throughput --------------------------------------------------------------------
def throughput(out: Path, model: ModelUnderTest, duration: float, rounds: int) -> dict[str, Any]:
    sample = texts()
    scripts = out / "wrk"
    scripts.mkdir(parents=True, exist_ok=True)
    bg_lua = scripts / "predict.lua"
    bg_lua.write_text(lua_script([json.dumps({"text": t}, ensure_ascii=False) for t in sample]))
    ml_lua = scripts / "invocations.lua"
    ml_lua.write_text(
        lua_script(
            [json.dumps({"dataframe_records": [{"text": t}]}, ensure_ascii=False) for t in sample]
        )
    )
    get_lua = scripts / "get.lua"
    get_lua.write_text(lua_script([], method="GET"))
    runs: dict[str, list[dict[str, Any]]] = {}

    def record(name: str, result: dict[str, Any]) -> None:
        runs.setdefault(name, []).append(result)
        log(
            f"  {name:24s} {result['rps']:8.1f} req/s  p50 {result['p50_ms']:.2f} ms  "
            f"p99 {result['p99_ms']:.2f} ms  errors {result['errors']}  "
            f"client CPU {result['client_cpu_share']:.2f}"
        )

    # Sanity: both servers answer the same body shape before we time them.
    with (
        bluegreen_app(out, model, "tput") as app1,
        mlflow_serve(out, model) as (ml_url, ml_pid),
    ):
        check = httpx.post(f"{ml_url}/invocations", json={"dataframe_records": [{"text": "최고"}]})
        check.raise_for_status()
        bg_pids = _pids(app1.pid)
        ml_pids = _pids(ml_pid)
        warm = max(2.0, duration / 4)
        run_wrk(f"{app1.url}/predict", bg_lua, duration_s=warm)
        run_wrk(f"{ml_url}/invocations", ml_lua, duration_s=warm)
        for r in range(rounds):
            log(f"round {r + 1}/{rounds}: 1 worker")
            record(
                "bluegreen_predict_w1",
                run_wrk(f"{app1.url}/predict", bg_lua, duration_s=duration, server_pids=bg_pids),
            )
            record(
                "mlflow_serve_w1",
                run_wrk(f"{ml_url}/invocations", ml_lua, duration_s=duration, server_pids=ml_pids),
            )
            record(
                "bluegreen_healthz_w1",
                run_wrk(f"{app1.url}/healthz", get_lua, duration_s=duration, server_pids=bg_pids),
            )
        profile = profile_server(out, app1, bg_lua, min(10.0, duration))
    with bluegreen_app(out, model, "tput", workers=2) as app2:
        pids = _pids(app2.pid)
        run_wrk(f"{app2.url}/predict", bg_lua, duration_s=max(2.0, duration / 4))
        for r in range(rounds):
            log(f"round {r + 1}/{rounds}: 2 workers")
            record(
                "bluegreen_predict_w2",
                run_wrk(f"{app2.url}/predict", bg_lua, duration_s=duration, server_pids=pids),
            )
            record(
                "bluegreen_healthz_w2",
                run_wrk(f"{app2.url}/healthz", get_lua, duration_s=duration, server_pids=pids),
            )

    def med(name: str, key: str) -> float:
        return float(statistics.median(r[key] for r in runs[name]))

    summary = {
        name: {
            key: med(name, key)
            for key in (
                "rps",
                "p50_ms",
                "p99_ms",
                "errors",
                "client_cpu_s",
                "client_cpu_share",
                "server_cpu_s",
                "server_cpu_ms_per_request",
            )
        }
        for name in runs
    }
    ratios = {
        "bluegreen_vs_mlflow_rps": round(
            summary["bluegreen_predict_w1"]["rps"] / summary["mlflow_serve_w1"]["rps"], 2
        ),
        "bluegreen_vs_mlflow_p99": round(
            summary["bluegreen_predict_w1"]["p99_ms"] / summary["mlflow_serve_w1"]["p99_ms"], 3
        ),
        "predict_vs_healthz_rps_w1": round(
            summary["bluegreen_predict_w1"]["rps"] / summary["bluegreen_healthz_w1"]["rps"], 3
        ),
        "predict_w2_vs_w1_rps": round(
            summary["bluegreen_predict_w2"]["rps"] / summary["bluegreen_predict_w1"]["rps"], 3
        ),
    }
    return {
        "runs": runs,
        "median": summary,
        "ratios": ratios,
        "profile": profile,
        "duration_s": duration,
        "rounds": rounds,
        "connections": 16,
    }


def profile_server(out: Path, app: AppServer, lua: Path, seconds: float) -> dict[str, Any]:
    """py-spy samples the 1-worker server while wrk drives /predict: where does a request go?"""
    py_spy = VENV_BIN / "py-spy"
    if not py_spy.exists():
        return {"error": "py-spy not installed"}
    raw = out / "pyspy-predict-w1.txt"
    spy = subprocess.Popen(
        [
            str(py_spy),
            "record",
            "--pid",
            str(app.pid),
            "--duration",
            str(int(seconds)),
            "--rate",
            "250",
            "--format",
            "raw",
            "--output",
            str(raw),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    time.sleep(0.5)
    run_wrk(f"{app.url}/predict", lua, duration_s=seconds)
    try:
        _, err = spy.communicate(timeout=seconds + 30)
    except subprocess.TimeoutExpired:
        spy.kill()
        return {"error": "py-spy timed out"}
    if not raw.exists():
        return {"error": err.decode(errors="replace")[-500:]}
    return summarize_stacks(raw)


# Buckets for the profile: first matching marker in a stack (innermost first) wins.
PROFILE_BUCKETS = (
    (
        "model (predict_texts / compiled ensemble)",
        ("bluegreen/model/", "pyfunc_models.py", "bluegreen_sentiment_rt"),
    ),
    ("output contract check", ("serving/contract.py",)),
    (
        "prediction path (predictor/router/slot)",
        ("serving/predictor.py", "serving/router.py", "serving/slot.py"),
    ),
    ("prometheus metrics", ("prometheus_client", "plugins/prometheus")),
    (
        "request/response (de)serialisation",
        ("msgspec", "serialization", "_signature", "kwargs", "datastructures"),
    ),
    ("litestar routing / middleware", ("litestar/",)),
    ("uvicorn + httptools protocol", ("uvicorn/", "httptools")),
    ("asyncio event loop / uvloop", ("asyncio/", "uvloop")),
)


def summarize_stacks(raw: Path) -> dict[str, Any]:
    """Collapse py-spy raw stacks (`a;b;c count`) into self time per bucket and top leaves."""
    buckets: dict[str, int] = {}
    leaves: dict[str, int] = {}
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        leaf = frames[-1]
        if "idle" in leaf.lower() or "(idle)" in stack:
            bucket = "idle"
        else:
            bucket = "other"
            for frame in reversed(frames):
                match = next(
                    (b for b, marks in PROFILE_BUCKETS if any(m in frame for m in marks)), None
                )
                if match:
                    bucket = match
                    break
        buckets[bucket] = buckets.get(bucket, 0) + count
        leaves[leaf] = leaves.get(leaf, 0) + count
    share = {b: round(c / total, 3) for b, c in sorted(buckets.items(), key=lambda kv: -kv[1])}
    top = [
        (leaf, round(c / total, 3))
        for leaf, c in sorted(leaves.items(), key=lambda kv: -kv[1])[:12]
    ]
    return {"samples": total, "share_by_bucket": share, "top_leaves": top, "raw": str(raw)}


# --- 4: memory over swaps -----------------------------------------------------------------------
def memory(
    out: Path, model: ModelUnderTest, swaps: int, *,
    source: tuple[str, str | None, str | None] | None = None, label: str = "",
) -> dict[str, Any]:  # fmt: skip
    source = source or model.source
    assert source is not None
    name = model.fresh_name("mem" + label, source)
    checkpoints = sorted({c for c in (1, 10, 20, 50, 100, swaps) if c <= swaps})
    app = AppServer(
        out / f"app-memory{label}",
        model.url,
        workers=1,
        env={
            "BLUEGREEN_MODEL_NAME": name,
            "BLUEGREEN_ADMIN_TOKEN": TOKEN,
            "BLUEGREEN_CONTROL_INTERVAL_S": "0",
            "BLUEGREEN_LOG_LEVEL": "INFO",
            "BLUEGREEN_TRUST_MODEL_CODE": trust_code(model),
        },
    )
    registry = TestRegistry(model.url, name)
    sample = texts(50)
    series: list[tuple[int, float]] = []
    at: dict[int, float] = {}
    alias_to_first_response: list[float] = []
    started = time.monotonic()
    try:
        app.start(timeout=180)
        import psutil

        proc = psutil.Process(app.pid)
        with httpx.Client(base_url=app.url, timeout=60) as client:
            for text in sample:
                client.post("/predict", json={"text": text}).raise_for_status()
            series.append((0, proc.memory_info().rss / 2**20))
            for n in range(1, swaps + 1):
                version = registry._create(source[0], source[1], "production", source[2])
                moved = time.perf_counter()  # _create moved the alias as its last call
                result = client.post("/admin/reload", headers=ADMIN).json()
                if result.get("version") != version:
                    raise RuntimeError(f"swap {n}: reload answered {result}")
                for i, text in enumerate(sample[:20]):
                    response = client.post("/predict", json={"text": text})
                    response.raise_for_status()
                    if i == 0:
                        if response.headers["x-model-version"] != str(version):
                            raise RuntimeError(f"swap {n}: first answer not from {version}")
                        alias_to_first_response.append(time.perf_counter() - moved)
                _wait_freed(app, n)
                rss = proc.memory_info().rss / 2**20
                series.append((n, rss))
                if n in checkpoints:
                    at[n] = round(rss, 1)
                    log(f"  memory: after {n:3d} swaps RSS {rss:.1f} MiB")
    finally:
        app.stop()
    leaks = sum(1 for e in app.log_events() if e.get("event") == "model.free.leak")
    lags = [e for e in app.log_events() if e.get("event") == "swap.loop_lag"]
    png = out / f"memory_over_swaps{label}.png"
    _plot_memory(series, png, model.kind)
    first = at.get(1) or series[1][1]
    last = at[max(at)]
    return {
        "swaps": swaps,
        "rss_mib_at": {str(k): v for k, v in at.items()},
        "rss_mib_before_first_swap": round(series[0][1], 1),
        "growth_last_vs_first_pct": round(100 * (last - first) / first, 2),
        "free_leak_events": leaks,
        "alias_to_first_response_ms": {
            "median": round(1000 * statistics.median(alias_to_first_response), 1),
            "max": round(1000 * max(alias_to_first_response), 1),
        },
        "seconds": round(time.monotonic() - started, 1),
        "png": str(png),
        # the first load (before any traffic) is not a swap beside live requests
        "swap_loop_lag_ms": loop_lag_stats(lags[1:]),
    }


def loop_lag_stats(events: list[dict[str, Any]]) -> dict[str, Any]:
    from loadtests.swap_under_load import loop_lag_stats as stats

    return stats(events)


def trust_code(model: ModelUnderTest) -> str:
    """The ensemble is served as a default server does (data only, no code trusted); only the
    keyword fallback, a generic pyfunc, needs the generic path."""
    return "false" if model.kind == "ensemble" else "true"


def _pss(pid: int) -> int:
    """Proportional set size in bytes: shared pages count 1/N in each of their N mappers."""
    with open(f"/proc/{pid}/smaps_rollup", encoding="utf-8") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no Pss in /proc/{pid}/smaps_rollup")


def _worker_pids(app: AppServer) -> list[int]:
    return [p for p in app.worker_pids() if p != app.pid] if app.workers > 1 else [app.pid]


def shared_memory(out: Path, model: ModelUnderTest) -> dict[str, Any]:
    """What the full-size model costs 1 worker and 2 workers: the sum of the workers' PSS
    with it loaded (and 2000 unseen reviews scored, so its pages are touched) minus the sum
    for the same workers before any version existed. The loader child is not a worker and is
    reported on its own."""
    import psutil

    from bluegreen.model import data

    source = model.ensure_full_size()
    reviews = data.read_dataset(data.default_data_dir() / data.SAMPLE_TEST_FILE).texts[:2000]
    result: dict[str, Any] = {"reviews_scored": len(reviews)}
    for workers in (1, 2):
        name = f"{MODEL_NAME}-pss-w{workers}-{int(time.time())}"
        registry = TestRegistry(model.url, name)
        app = AppServer(
            out / f"app-pss-w{workers}", model.url, workers=workers,
            env={"BLUEGREEN_MODEL_NAME": name, "BLUEGREEN_TRUST_MODEL_CODE": "false",
                 "BLUEGREEN_LOG_LEVEL": "INFO"},
        )  # fmt: skip
        try:
            app.start(timeout=180, ready=False)
            deadline = time.monotonic() + 60
            while len(_worker_pids(app)) < workers and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(8)  # imports and the loader child's start settle
            pids = _worker_pids(app)
            before = sum(_pss(p) for p in pids)
            version = registry._create(source[0], source[1], "production", source[2])
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                promoted = {
                    e["pid"] for e in app.log_events()
                    if e.get("event") == "model.promoted" and e.get("version") == version
                }  # fmt: skip
                if set(pids) <= promoted:
                    break
                time.sleep(0.2)
            else:
                raise RuntimeError(f"{workers} worker(s) did not all promote v{version}")
            for _ in range(2 * workers):  # a fresh connection per pass reaches each worker
                with httpx.Client(base_url=app.url, timeout=60) as client:
                    for start in range(0, len(reviews), 64):
                        batch = reviews[start : start + 64]
                        client.post("/predict/batch", json={"texts": batch}).raise_for_status()
            time.sleep(1)
            after = sum(_pss(p) for p in pids)
            children = [
                c.pid for p in pids for c in psutil.Process(p).children()
                if "bluegreen.loading.child" in " ".join(c.cmdline())
            ]  # fmt: skip
            result[f"w{workers}"] = {
                "pss_mib_before": round(before / 2**20, 1),
                "pss_mib_after": round(after / 2**20, 1),
                "model_mib": round((after - before) / 2**20, 1),
                "loader_children_pss_mib": round(sum(_pss(c) for c in children) / 2**20, 1),
            }
            log(f"  pss: {workers} worker(s) {result[f'w{workers}']}")
        finally:
            app.stop()
    result["ratio_w2_vs_w1"] = round(result["w2"]["model_mib"] / result["w1"]["model_mib"], 3)
    return result


def _wait_freed(app: AppServer, swaps: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        freed = sum(
            1 for e in app.log_events() if e.get("event") in ("model.freed", "model.free.leak")
        )
        if freed >= swaps:
            return
        time.sleep(0.05)
    raise RuntimeError(f"old model not freed after swap {swaps}")


def _plot_memory(series: list[tuple[int, float]], path: Path, kind: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot([n for n, _ in series], [v for _, v in series], marker=".", markersize=3)
    ax.set_xlabel("completed swaps (load → smoke → promote → drain → free)")
    ax.set_ylabel("worker RSS (MiB)")
    ax.set_title(f"RSS over repeated hot swaps, 1 worker ({kind} model)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- 5: the model itself ------------------------------------------------------------------------
def model_costs(out: Path, model: ModelUnderTest) -> dict[str, Any]:
    """Model engineer's bench/model_bench.py when it exists, plus our own fast-path numbers."""
    result: dict[str, Any] = {"kind": model.kind}
    own = REPO / "bench" / "model_bench.py"
    if own.exists() and model.kind == "ensemble":
        try:
            done = subprocess.run(
                [
                    sys.executable,
                    str(own),
                    "--tracking-uri",
                    model.url,
                    "--model-uri",
                    f"models:/{MODEL_NAME}/{model.version}",
                ],
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=900,
                env={**os.environ, "MLFLOW_TRACKING_URI": model.url},
                check=False,
            )
            result["model_bench_py"] = {"rc": done.returncode, "stdout": done.stdout[-4000:]}
        except subprocess.TimeoutExpired:
            result["model_bench_py"] = {"rc": None, "stdout": "timed out after 900 s"}
    result.update(_fast_path_costs(out, model))
    return result


def _fast_path_costs(out: Path, model: ModelUnderTest) -> dict[str, Any]:
    import mlflow
    import numpy as np

    from bluegreen.serving.model_handle import ModelRef, load_from_registry

    mlflow.set_tracking_uri(model.url)
    uri = f"models:/{MODEL_NAME}/{model.version}"
    scratch = out / "model-scratch"
    size_dir = scratch / "size"
    shutil.rmtree(size_dir, ignore_errors=True)
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(size_dir)))
    size = sum(f.stat().st_size for f in local.rglob("*") if f.is_file())
    loads = []
    loaded = None
    for _ in range(3):
        started = time.perf_counter()
        loaded = load_from_registry(ModelRef(MODEL_NAME, model.version, uri), scratch)
        loads.append(time.perf_counter() - started)
    assert loaded is not None
    sample = texts(500)
    for t in sample[:50]:
        loaded.predict([t])
    singles = []
    for t in sample:
        started = time.perf_counter()
        loaded.predict([t])
        singles.append(time.perf_counter() - started)
    batch_costs = {}
    for size_b in (8, 64):
        per_text = []
        for i in range(0, len(sample) - size_b + 1, size_b):
            chunk = sample[i : i + size_b]
            started = time.perf_counter()
            loaded.predict(chunk)
            per_text.append((time.perf_counter() - started) / size_b)
        batch_costs[str(size_b)] = round(float(np.median(per_text)) * 1e6, 1)
    long_text = " ".join(sample)[:2000]
    started = time.perf_counter()
    for _ in range(20):
        loaded.predict([long_text])
    long_us = (time.perf_counter() - started) / 20 * 1e6
    return {
        "fast_path": loaded.fast_path,
        "artifact_bytes": size,
        "load_s_median_of_3": round(statistics.median(loads), 3),
        "single_us_p50": round(float(np.percentile(singles, 50)) * 1e6, 1),
        "single_us_p99": round(float(np.percentile(singles, 99)) * 1e6, 1),
        "batched_us_per_text": batch_costs,
        "long_2000_chars_us": round(long_us, 1),
        "note": "includes bluegreen's output-contract check; texts from loadtests/texts_ko.txt "
        "(NSMC sample, mostly short)",
    }


# --- report -----------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    dirty = bool(
        subprocess.run(
            ["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True, check=False
        ).stdout.strip()
    )
    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "loadavg_at_start": os.getloadavg(),
        "commit": commit + ("+dirty" if dirty else ""),
        "wrk": subprocess.run(
            ["wrk", "-v"], capture_output=True, text=True, check=False
        ).stdout.split("\n")[0],
    }


PARTS = ("throughput", "swap", "swap-headroom", "memory", "model", "edge", "tracing", "v2", "fleet")
"""The benchmark's parts, in the order `--only` lists them; all of them by default."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs; no BENCHMARKS.md")
    parser.add_argument("--keyword", action="store_true", help="use the keyword test model")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=PARTS,
    )
    parser.add_argument("--duration", type=float, help="seconds per wrk run")
    parser.add_argument("--swaps", type=int, help="swaps for the memory benchmark")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--write", type=Path, default=REPO / "BENCHMARKS.md")
    parser.add_argument(
        "--merge-into",
        type=Path,
        metavar="RESULTS_DIR",
        help="with --only: add the sections measured now to an earlier full run's results.json "
        "and render BENCHMARKS.md from both, each section naming the run that measured it",
    )
    parser.add_argument(
        "--report-only",
        type=Path,
        metavar="RESULTS_DIR",
        help="re-render BENCHMARKS.md from an earlier run's results.json (no measuring)",
    )
    args = parser.parse_args(argv)
    if args.report_only is not None:
        from bench.report import write_report

        saved = json.loads((args.report_only / "results.json").read_text())
        backfill_phases((saved.get("swap") or []) + (saved.get("swap_headroom") or []))
        prof = (saved.get("throughput") or {}).get("profile") or {}
        if prof.get("raw") and Path(prof["raw"]).exists():
            saved["throughput"]["profile"] = summarize_stacks(Path(prof["raw"]))
        write_report(saved, args.report_only, args.write)
        log(f"wrote {args.write}")
        return 0
    parts = set(args.only or PARTS)
    out = args.out or REPO / "results" / "bench" / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    duration = args.duration or (4.0 if args.quick else 15.0)
    rounds = 1 if args.quick else 2
    swaps = args.swaps or (12 if args.quick else 100)
    info = machine()
    command = "just bench" if not args.quick else "python -m bench.run_all --quick"
    if argv is None and len(sys.argv) > 1:
        command = "python -m bench.run_all " + " ".join(sys.argv[1:])
    log(f"results under {out}; machine {info}")
    results: dict[str, Any] = {"machine": info, "command": command}
    model = ModelUnderTest(REPO / "results" / "bench-cache", force_keyword=args.keyword)
    try:
        model.start()
        results["model"] = {
            "kind": model.kind,
            "version": model.version,
            "fallback_reason": model.fallback_reason,
        }
        log(f"model under test: {model.kind} v{model.version}")
        # what the one-server wrk sections (edge, tracing, V2) start their servers with
        wrk_env = {
            "BLUEGREEN_MODEL_NAME": MODEL_NAME,
            "BLUEGREEN_LOG_LEVEL": "WARNING",
            "BLUEGREEN_TRUST_MODEL_CODE": trust_code(model),
        }
        if "model" in parts:
            log("5. model costs")
            results["model_costs"] = model_costs(out, model)
        if "throughput" in parts:
            log("1, 2, 6. throughput (wrk)")
            results["throughput"] = throughput(out, model, duration, rounds)
        if "edge" in parts:
            log("7. HTTP edge: edge protocol vs stock uvicorn httptools (wrk)")
            from bench import edge_protocol

            results["edge_protocol"] = edge_protocol.run(
                out, model.url, wrk_env, texts(), duration=duration, rounds=2 * rounds, log=log
            )
        if "tracing" in parts:
            log("8. tracing on vs off (wrk)")
            from bench import tracing_overhead

            results["tracing"] = tracing_overhead.run(
                out, model.url, wrk_env, texts(), duration=duration, rounds=2 * rounds, log=log
            )
        if "v2" in parts:
            log("9. Open Inference Protocol V2 infer vs /predict (wrk)")
            from bench import v2_throughput

            results["v2_throughput"] = v2_throughput.run(
                out, model.url, wrk_env, texts(), duration=duration, rounds=2 * rounds, log=log
            )
        if "fleet" in parts:
            log("10. fleet convergence behind HAProxy")
            from bench import fleet

            assert model.source is not None
            results["fleet"] = fleet.run(
                out, model.url, model.source, trust_code=trust_code(model), model=model.kind,
                log=log,
            )  # fmt: skip
        full_size = model.kind == "ensemble"
        if "memory" in parts:
            log(f"4. memory over {swaps} swaps")
            results["memory"] = memory(out, model, swaps)
            if full_size:
                log("4. the full-size model: alias to first answer, and memory shared by workers")
                results["memory_full"] = memory(
                    out, model, max(3, swaps // 10), source=model.ensure_full_size(),
                    label="-full",
                )  # fmt: skip
                results["shared_memory"] = shared_memory(out, model)
        if "swap" in parts:
            log("3. swap under load")
            results["swap"] = swap_runs(model, out, "short" if args.quick else "full",
                                        full_size, attribution=True)  # fmt: skip
        if "swap-headroom" in parts and not args.quick:
            log("3. swap under half the load")
            results["swap_headroom"] = swap_runs(model, out, "headroom", full_size,
                                                 attribution=False)  # fmt: skip
            if full_size:
                log("3. the loader child's kind of work beside a serving worker, with no swap")
                from bench import interference

                size = interference.prepared_size(out / "swap-full-size-headroom")
                results["swap_interference"] = interference.run(
                    model.url, model.ensure_full_size(), size or 120 * 2**20,
                    out / "interference",
                )  # fmt: skip
    finally:
        model.stop()
    (out / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False))
    log(f"wrote {out / 'results.json'}")
    if not args.quick:
        from bench.report import write_report

        if args.merge_into is not None:
            results = merge_runs(args.merge_into, results, sorted(parts))
            (out / "results.merged.json").write_text(json.dumps(results, indent=2))
        write_report(results, out, args.write)
        log(f"wrote {args.write}")
    return 0


def backfill_phases(swaps: list[dict[str, Any]]) -> None:
    """`app_slow_by_phase` for swap runs recorded before the scenario computed it, from the
    files each run left (its requests, its steps and the app's log)."""
    from loadtests.swap_under_load import read_records, slow_by_phase
    from tests.support.servers import json_events

    for s in swaps:
        stats = s["stats"]
        work = Path(s["png"]).parent / f"w{s['workers']}"
        if "app_slow_by_phase" in stats or not (work / "requests.csv").is_file():
            continue
        rows = read_records(work / "requests.csv")
        events = json_events((work / "app" / "app.log").read_text(encoding="utf-8"))
        windows = [(st["started"], st["ended"] + 1.0) for st in s["steps"] if st["kind"] == "good"]
        steady = stats["app_steady"]["p99_ms"]
        stats["app_slow_by_phase"] = slow_by_phase(windows, events, rows, steady)


def swap_runs(
    model: ModelUnderTest, out: Path, profile: str, full_size: bool, *, attribution: bool
) -> list[dict[str, Any]]:
    """Section 3's scenarios under one load profile: each model with 1 and 2 workers, the
    registry under SCHED_IDLE (standing in for one on another host: no CPU the workers want).
    With `attribution`, the heaviest case once more with the registry competing for the two
    cores, so that its share of the swap tail is measured, not assumed."""
    from loadtests import swap_under_load

    sources = {"small": model.source if full_size else None}
    if full_size:
        sources["full-size"] = model.ensure_full_size()
    runs = [(label, source, [1, 2], True) for label, source in sources.items()]
    if full_size and attribution:
        runs.append(("full-size", sources["full-size"], [2], False))
    entries: list[dict[str, Any]] = []
    for label, source, workers, registry_idle in runs:
        name = f"swap-{label}{'' if registry_idle else '-registry-normal'}"
        if profile == "headroom":
            name += "-headroom"
        swap_results = swap_under_load.run(
            workers, profile, out / name,
            mlflow=model.server, good_source=source, registry_sched_idle=registry_idle,
        )  # fmt: skip
        entries += [
            {
                "model": label if full_size else "keyword",
                "workers": r.workers,
                "registry": "sched_idle" if registry_idle else "normal",
                "checks": r.checks,
                "stats": r.stats,
                "png": r.png,
                "steps": r.steps,
                "profile": profile,
            }
            for r in swap_results
        ]
    return entries


def merge_runs(earlier_dir: Path, later: dict[str, Any], parts: list[str]) -> dict[str, Any]:
    """The earlier run's results with the sections measured now replacing or joining its own;
    the later run is named in `later_runs`, so the report says which run measured what (a
    ratio is still always between numbers of one run)."""
    # An earlier merge is itself an earlier run: merging into it keeps what it merged
    source = earlier_dir / "results.merged.json"
    if not source.exists():
        source = earlier_dir / "results.json"
    merged: dict[str, Any] = json.loads(source.read_text())
    for key, value in later.items():
        if key not in {"machine", "command", "model"}:
            merged[key] = value
    merged.setdefault("later_runs", []).append(
        {"sections": parts, "command": later["command"], "machine": later["machine"],
         "model": later["model"]}
    )  # fmt: skip
    return merged


if __name__ == "__main__":
    raise SystemExit(main())
