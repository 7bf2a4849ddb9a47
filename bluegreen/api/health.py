"""Liveness, readiness and the Prometheus exposition."""

from __future__ import annotations

import os

from litestar import Controller, Response, get
from litestar.datastructures import State
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)

from bluegreen import metrics
from bluegreen.api.schemas import HealthBody
from bluegreen.wiring import Runtime


@get("/healthz", summary="Process is alive", tags=["health"])
async def healthz() -> HealthBody:
    return HealthBody(status="ok")


@get(
    "/readyz",
    summary="200 only while a live model serves; 503 with a generic reason otherwise "
    "(the details are in /admin/slots)",
    tags=["health"],
)
async def readyz(state: State) -> Response[HealthBody]:
    runtime: Runtime = state.runtime
    readiness = runtime.readiness()
    live = runtime.manager.live
    if readiness.ready and live is not None:
        return Response(HealthBody("ready", live.version, live.name), status_code=200)
    return Response(
        HealthBody("not_ready", reason=readiness.reason),
        status_code=503,
        headers={"Retry-After": "5"},
    )


class MetricsController(Controller):
    path = "/metrics"
    include_in_schema = False

    @get(media_type=CONTENT_TYPE_LATEST)
    async def metrics(self) -> Response[bytes]:
        metrics.sample_process_metrics()
        registry = REGISTRY
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
