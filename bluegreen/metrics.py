"""Every Prometheus metric bluegreen exports, defined once.

The HTTP metrics (`http_requests_total`, `http_request_duration_seconds`) come from Litestar's
Prometheus middleware (see `http_metrics_config`); everything about models, slots and the
registry lives here. Gauges declare a `multiprocess_mode` so that they aggregate sensibly when
uvicorn runs several workers with `PROMETHEUS_MULTIPROC_DIR` set.
"""

from __future__ import annotations

import os
import time
from typing import Any, ClassVar

from litestar.enums import ScopeType
from litestar.plugins.prometheus import PrometheusConfig, PrometheusMiddleware
from litestar.types import Message, Receive, Scope, Send
from prometheus_client import Counter, Gauge, Histogram

# Sub-millisecond to seconds: a linear model answers in ~100 µs, a cold slow path in seconds.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075,
    0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
LOAD_BUCKETS: tuple[float, ...] = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)


class CachedLabelsPrometheusMiddleware(PrometheusMiddleware):
    """Litestar's Prometheus middleware with the same metrics and labels, minus its per-request
    overhead: it builds a Request object and calls `.labels()` four times per request (a lock
    and a dict lookup each); this one keeps the children per (method, path, status)."""

    _children: ClassVar[dict[tuple[str, str, int], tuple[Any, Any, Any]]] = {}
    _in_progress: ClassVar[dict[tuple[str, str], Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]
        path: str = scope.get("path_template", scope["path"])
        labels: dict[str, str | int | float] = {"method": method, "path": path, "status_code": 200,
                  "app_name": self._config.app_name}  # fmt: skip
        in_progress = self._in_progress.get((method, path))
        if in_progress is None:
            in_progress = self.requests_in_progress(labels).labels(*labels.values())
            self._in_progress[(method, path)] = in_progress
        started = time.perf_counter()
        span = {"status": 200, "duration": 0.0}

        async def wrapped_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                span["status"] = message["status"]
            elif message["type"] == "http.response.body":
                span["duration"] = time.perf_counter() - started
            await send(message)

        in_progress.inc()
        try:
            await self.app(scope, receive, wrapped_send)
        finally:
            in_progress.dec()
            status = int(span["status"])
            key = (method, path, status)
            children = self._children.get(key)
            if children is None:
                labels["status_code"] = status
                values = [*labels.values()]
                children = (
                    self.request_count(labels).labels(*values),
                    self.request_time(labels).labels(*values),
                    self.requests_error_count(labels).labels(*values) if status >= 500 else None,
                )
                self._children[key] = children
            count, duration, errors = children
            if errors is not None:
                errors.inc()
            count.inc()
            duration.observe(span["duration"])


def http_metrics_config() -> PrometheusConfig:
    """Litestar middleware config that yields the seed's two HTTP metric names.

    `group_path=True` labels route templates, never raw paths (bounded cardinality).
    """
    return PrometheusConfig(
        app_name="bluegreen",
        prefix="http",
        group_path=True,
        buckets=list(LATENCY_BUCKETS),
        exclude=[r"^/metrics$"],
        middleware_class=CachedLabelsPrometheusMiddleware,
    )


# --- the seed's model metrics (exact names) -------------------------------------------------
MODEL_VERSION_INFO = Gauge(
    "model_version_info",
    "1 for the model version the live slot serves, 0 for versions that no longer serve",
    ["model", "version", "slot"],
    multiprocess_mode="livemax",
)
MODEL_LOAD_TOTAL = Counter("model_load", "Model load attempts", ["model"])
MODEL_LOAD_SUCCESS_TOTAL = Counter(
    "model_load_success", "Model loads that passed smoke and became servable", ["model"]
)
MODEL_HOT_SWAP_TOTAL = Counter("model_hot_swap", "Successful promotions to live", ["model"])

# --- lifecycle ---------------------------------------------------------------------------------
MODEL_LOAD_FAILURES = Counter(
    "bluegreen_model_load_failures",
    "Versions that failed to become live, by reason (load_error, integrity, untrusted, "
    "smoke_failed, canary_rejected)",
    ["model", "reason"],
)
MODEL_LOAD_DURATION = Histogram(
    "bluegreen_model_load_duration_seconds",
    "Time to download and load a model version (smoke excluded)",
    ["model"],
    buckets=LOAD_BUCKETS,
)
MODEL_LAST_FAILURE_TIMESTAMP = Gauge(
    "bluegreen_model_last_failure_timestamp_seconds",
    "Unix time of the most recent load/smoke/canary failure (alerting)",
    ["model"],
    multiprocess_mode="livemax",
)
MODEL_LOAD_TRANSIENT = Counter(
    "bluegreen_model_load_transient_failures",
    "Loads that failed for a reason outside the version (loader killed, crashed or past its "
    "deadline, registry down); retried with backoff, never rejected",
    ["model"],
)
SWAP_LOOP_LAG_MAX = Gauge(
    "bluegreen_swap_loop_lag_max_seconds",
    "Longest event-loop stall during the most recent swap (load start to old version freed)",
    multiprocess_mode="livemax",
)
EVENT_LOOP_LAG = Histogram(
    "bluegreen_event_loop_lag_seconds",
    "How late the event loop woke for a timer: time it could not serve requests",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
MODELS_FREED = Counter("bluegreen_models_freed", "Old models released after draining", ["model"])
MODEL_FREE_LEAKS = Counter(
    "bluegreen_model_free_leaks",
    "Released models still reachable after gc (weakref alive): a memory leak",
    ["model"],
)
ROLLBACKS = Counter("bluegreen_rollbacks", "Rollbacks to a previous version", ["model"])
SLOT_STATE = Gauge(
    "bluegreen_slot_state",
    "1 for the state each slot is in (empty, loading, smoke, canary, live, draining, retained)",
    ["slot", "state"],
    multiprocess_mode="livemax",
)
SLOT_INFLIGHT = Gauge(
    "bluegreen_slot_inflight", "Requests currently leased to a slot", ["slot"],
    multiprocess_mode="livesum",
)  # fmt: skip
SLOT_DRAIN_DURATION = Histogram(
    "bluegreen_slot_drain_duration_seconds",
    "Time from promotion until the old slot had no request in flight",
    ["slot"],
    buckets=LATENCY_BUCKETS,
)

# --- predictions -------------------------------------------------------------------------------
PREDICTIONS = Counter(
    "bluegreen_predictions", "Texts classified, by slot, version and label",
    ["slot", "version", "label"],
)  # fmt: skip
PREDICTION_ERRORS = Counter(
    "bluegreen_prediction_errors", "Model calls that raised or returned garbage",
    ["slot", "version"],
)  # fmt: skip
PREDICTION_DURATION = Histogram(
    "bluegreen_prediction_duration_seconds",
    "Model call latency (one request, single or batch) by slot",
    ["slot", "version"],
    buckets=LATENCY_BUCKETS,
)
REQUESTS_SHED = Counter(
    "bluegreen_requests_shed", "Requests refused with 503 before reaching a model",
    ["reason"],
)  # fmt: skip

# --- canary ------------------------------------------------------------------------------------
CANARY_SHARE = Gauge(
    "bluegreen_canary_share", "Share of prediction traffic (0-1) sent to the candidate slot",
    multiprocess_mode="livemax",
)  # fmt: skip
CANARY_DECISIONS = Counter(
    "bluegreen_canary_decisions",
    "How canaries ended (promoted, rejected, aborted)",
    ["model", "decision"],
)
CANARY_COMPARED = Counter(
    "bluegreen_canary_compared", "Live requests also scored by the candidate (shadow)", ["model"]
)
CANARY_DISAGREEMENTS = Counter(
    "bluegreen_canary_disagreements",
    "Shadow comparisons where candidate and live chose different labels",
    ["model"],
)
CANARY_PAIRS = Counter(
    "bluegreen_canary_pairs",
    "Answered requests whose texts were also timed on both live and candidate (the canary's "
    "latency evidence): scored, skipped (scorer busy or over its CPU share) or failed",
    ["model", "result"],
)
CANARY_LAST_REJECTED_TIMESTAMP = Gauge(
    "bluegreen_canary_last_rejected_timestamp_seconds",
    "Unix time the last canary was rejected (alerting)",
    ["model"],
    multiprocess_mode="livemax",
)

# --- registry ----------------------------------------------------------------------------------
REGISTRY_POLLS = Counter(
    "bluegreen_registry_polls", "Registry reconciles, by result (ok, error)", ["result"]
)
REGISTRY_DEADLINES = Counter(
    "bluegreen_registry_deadline_exceeded",
    "Registry calls abandoned at BLUEGREEN_REGISTRY_TIMEOUT_S, by call",
    ["call"],
)
HISTORY_ENTRIES = Counter(
    "bluegreen_history_entries",
    "Promotion-history entries this process wrote to the registry, by action",
    ["action"],
)
REGISTRY_LAST_SUCCESS = Gauge(
    "bluegreen_registry_last_success_timestamp_seconds",
    "Unix time of the last successful registry poll",
    multiprocess_mode="livemax",
)

# --- control plane ---------------------------------------------------------------------------
ADMIN_AUTH_FAILURES = Counter(
    "bluegreen_admin_auth_failures",
    "Refused admin requests: missing or invalid token, or a peer throttled after failures",
    ["reason"],
)
WEBHOOK_REPLAYS = Counter(
    "bluegreen_webhook_replays", "Signed webhook deliveries seen before (not reconciled)"
)

# --- HTTP edge (bluegreen/edge/) -----------------------------------------------------------------
HTTP_CONNECTIONS_CLOSED = Counter(
    "bluegreen_http_connections_closed",
    "Connections the server closed itself: header_timeout, header_too_large, evicted (at the "
    "connection cap, the least recently active idle one), refused (at the cap, all busy)",
    ["reason"],
)

# --- process -----------------------------------------------------------------------------------
PROCESS_RSS = Gauge(
    "bluegreen_process_resident_memory_bytes",
    "Resident set size of this worker process",
    multiprocess_mode="liveall",
)
PROCESS_THREADS = Gauge(
    "bluegreen_process_threads", "Threads in this worker process", multiprocess_mode="liveall"
)
PROCESS_OPEN_FDS = Gauge(
    "bluegreen_process_open_fds", "Open file descriptors in this worker process",
    multiprocess_mode="liveall",
)  # fmt: skip


def sample_process_metrics() -> None:
    """Refresh per-process gauges from /proc (cheap; called on each scrape and after swaps)."""
    try:
        with open("/proc/self/statm") as f:
            resident_pages = int(f.read().split()[1])
        PROCESS_RSS.set(resident_pages * os.sysconf("SC_PAGE_SIZE"))
        PROCESS_OPEN_FDS.set(len(os.listdir("/proc/self/fd")))
        PROCESS_THREADS.set(len(os.listdir("/proc/self/task")))
    except (OSError, ValueError, IndexError):  # not Linux: leave the gauges unset
        return


def sweep_dead_processes() -> None:
    """Drop live-gauge files of workers that no longer exist (e.g. killed with -9), so a dead
    worker's in-flight count or RSS does not linger. Run by each worker at start and exit."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory or not os.path.isdir(directory):
        return
    from prometheus_client import multiprocess

    me = os.getpid()
    for name in os.listdir(directory):
        if not name.startswith("gauge_live") or not name.endswith(".db"):
            continue
        try:
            pid = int(name.rsplit("_", 1)[1][:-3])
        except ValueError:
            continue
        if pid != me and not os.path.exists(f"/proc/{pid}"):
            multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]


def mark_this_process_dead() -> None:
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory and os.path.isdir(directory):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid(), directory)  # type: ignore[no-untyped-call]


def initialize(model_name: str) -> None:
    """Create every labelled counter at 0, so `increase()` sees the first event (a series that
    appears at 1 has no earlier sample to increase from) and alerts need no `unless offset`."""
    for counter in (MODEL_LOAD_TOTAL, MODEL_LOAD_SUCCESS_TOTAL, MODEL_HOT_SWAP_TOTAL,
                    MODEL_LOAD_TRANSIENT, MODELS_FREED, MODEL_FREE_LEAKS, ROLLBACKS,
                    CANARY_COMPARED, CANARY_DISAGREEMENTS):  # fmt: skip
        counter.labels(model_name)
    for reason in ("load_error", "smoke_failed", "canary_rejected", "integrity", "untrusted"):
        MODEL_LOAD_FAILURES.labels(model_name, reason)
    for decision in ("promoted", "rejected", "aborted"):
        CANARY_DECISIONS.labels(model_name, decision)
    for result in ("scored", "skipped", "failed"):
        CANARY_PAIRS.labels(model_name, result)
    for result in ("ok", "error"):
        REGISTRY_POLLS.labels(result)
    for reason in ("overloaded", "no_model", "in_flight_cap"):
        REQUESTS_SHED.labels(reason)
    for reason in ("header_timeout", "header_too_large", "evicted", "refused"):
        HTTP_CONNECTIONS_CLOSED.labels(reason)
    for reason in ("missing", "invalid", "throttled"):
        ADMIN_AUTH_FAILURES.labels(reason)
