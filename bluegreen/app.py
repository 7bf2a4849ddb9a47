"""The app factory: `uvicorn --factory bluegreen.app:create_app`."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.datastructures import State
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

from bluegreen import metrics, tracing
from bluegreen.api.admin import admin_router
from bluegreen.api.admin_auth import FailureThrottle
from bluegreen.api.errors import EXCEPTION_HANDLERS
from bluegreen.api.health import MetricsController, healthz, readyz
from bluegreen.api.limits import BodyTimeoutMiddleware
from bluegreen.api.predict import predict_router
from bluegreen.api.request_id import OPENAPI_HEADER as REQUEST_ID_HEADER
from bluegreen.api.request_id import TIMING_OPENAPI_HEADER, RequestIdMiddleware
from bluegreen.api.schemas import strict_struct_schema_plugin
from bluegreen.api.v2 import oip_on_v2_paths, v2_router
from bluegreen.api.webhooks import DeliveryLog, mlflow_webhook
from bluegreen.bootstrap import bootstrap_if_empty
from bluegreen.edge.shutdown import CloseWhileStopping, ShutdownDelay, Stopping
from bluegreen.logging import configure_logging, event
from bluegreen.registry import Registry, configure_mlflow_client_env
from bluegreen.settings import Settings
from bluegreen.wiring import LoaderFactory, Runtime, registry_loader

log = logging.getLogger("bluegreen.app")
PROCESS_SAMPLE_INTERVAL_S = 5.0


async def _bootstrap(runtime: Runtime) -> None:
    """Train a default model on an empty registry, then let the controller start."""
    runtime.status = "bootstrapping"
    runtime.status_detail = "training the default model on an empty registry"
    loop = asyncio.get_running_loop()
    try:
        await loop.run_in_executor(
            runtime.executors[1], bootstrap_if_empty, runtime.settings, runtime.registry
        )
    except Exception as exc:
        event(log, "bootstrap.failed", logging.ERROR, error=f"{type(exc).__name__}: {exc}")
        runtime.status = "bootstrap failed"
        runtime.status_detail = f"{type(exc).__name__}: {exc}"
    else:
        runtime.status, runtime.status_detail = "waiting for the registry", None
    finally:
        runtime.controller.ready_gate.set()


async def _sample_process(interval: float) -> None:
    while True:
        metrics.sample_process_metrics()
        await asyncio.sleep(interval)


def create_app(
    settings: Settings | None = None,
    *,
    registry: Registry | None = None,
    loader_factory: LoaderFactory = registry_loader,
) -> Litestar:
    settings = settings or Settings.from_env()
    configure_logging(settings.observability.log_level)
    configure_mlflow_client_env(settings.effective_tracking_uri, settings.registry.timeout_s)
    stopping = Stopping()
    shutdown_delay = ShutdownDelay(settings.edge.shutdown_delay_s, stopping)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        metrics.sweep_dead_processes()
        metrics.initialize(settings.registry.model_name)
        if settings.observability.tracing:
            tracing.enable()
        runtime = Runtime.build(settings, registry, loader_factory)
        runtime.stopping = stopping
        app.state.runtime = runtime
        runtime.status = "waiting for the registry"
        if settings.should_bootstrap:
            runtime.controller.ready_gate.clear()
            runtime.tasks.append(asyncio.create_task(_bootstrap(runtime)))
        # Move everything alive after start-up (MLflow, Litestar, numpy...) out of the
        # collector's view, so the gc.collect() that frees an old model scans only what was
        # created since and pauses the loop for milliseconds, not a third of a second.
        gc.collect()
        gc.freeze()
        await asyncio.get_running_loop().run_in_executor(
            runtime.executors[1], runtime.prepare_loading
        )
        runtime.tasks.append(asyncio.create_task(runtime.lag_probe.run()))
        runtime.tasks.append(asyncio.create_task(runtime.controller.run()))
        runtime.tasks.append(asyncio.create_task(_sample_process(PROCESS_SAMPLE_INTERVAL_S)))
        event(log, "app.started", model=settings.registry.model_name,
              alias=settings.registry.model_alias,
              registry=_redact(settings.effective_tracking_uri), admin=settings.admin.enabled,
              canary_percent=settings.canary.percent)  # fmt: skip
        shutdown_delay.install()  # here: uvicorn's own SIGTERM handler is in place by now
        try:
            yield
        finally:
            shutdown_delay.uninstall()
            event(log, "app.stopping")
            await runtime.close()
            metrics.mark_this_process_dead()
            if tracing.ENABLED:  # after close, so that the last drain and free are exported
                await asyncio.to_thread(tracing.shutdown)

    app = Litestar(
        route_handlers=[
            predict_router,
            v2_router,
            admin_router,
            healthz,
            readyz,
            MetricsController,
            mlflow_webhook,
        ],
        lifespan=[lifespan],
        state=State(
            {
                "admin_throttle": FailureThrottle(
                    settings.admin.auth_max_failures, settings.admin.auth_window_s
                ),
                "webhook_deliveries": DeliveryLog(settings.state_dir / "webhook-deliveries"),
            }
        ),
        plugins=[strict_struct_schema_plugin()],
        middleware=[
            metrics.http_metrics_config().middleware,
            DefineMiddleware(BodyTimeoutMiddleware, timeout_s=settings.limits.body_timeout_s),
        ],
        exception_handlers=oip_on_v2_paths(EXCEPTION_HANDLERS),
        response_headers=[REQUEST_ID_HEADER, TIMING_OPENAPI_HEADER],
        request_max_body_size=settings.limits.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="bluegreen",
            version="1.0.0",
            description="Korean sentiment analysis with zero-downtime model hot swaps",
            components=Components(
                security_schemes={"bearerAuth": SecurityScheme(type="http", scheme="bearer")}
            ),
        ),
        logging_config=None,
        debug=False,
    )
    # Outside the router, not in `middleware=`: Litestar runs that per matched route, and the
    # router's own 404 and 405 answers must carry the request's id, and a span, too.
    # only when on: off, requests pass through no tracing code at all
    if settings.observability.tracing:
        app.asgi_handler = tracing.TracingMiddleware(app.asgi_handler)
    app.asgi_handler = RequestIdMiddleware(app.asgi_handler)
    app.asgi_handler = CloseWhileStopping(app.asgi_handler, stopping)
    return app


def _redact(uri: str) -> str:
    """Hide credentials embedded in a tracking URI (`https://user:pass@host`)."""
    scheme, sep, rest = uri.partition("://")
    if sep and "@" in rest:
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return uri
