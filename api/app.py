"""The application factory: `create_app()` for uvicorn (`--factory`), Mangum and tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.telemetry import TelemetryConfig

from api import idempotency
from api.auth import document_auth, install_bearer_auth
from api.cloud_logging import on_cloud_run
from api.errors import install_error_handlers
from api.limits import LimitsMiddleware
from api.logs import configure_logging
from api.middleware import RequestIdMiddleware
from api.rate_limit import RateLimitMiddleware
from api.request_metrics import RequestMetrics, RequestRecorder
from api.routes import health, v1
from api.routes.problems import problems
from api.runtime import Runtime
from api.security_headers import SecurityHeaders, add_cors, cover_unhandled_errors
from api.settings import Settings, check_startup, load_settings
from api.tasks.registry import TaskRegistry

TELEMETRY_OFF: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}
PROBES = frozenset({"/healthz", "/readyz"})


def is_probe(scope: MutableMapping[str, Any]) -> bool:
    return scope.get("path") in PROBES


# TELEMETRY=otel: one span per request, none for the platform's health probes. FastAPI's
# operation spans (dependencies, endpoint, serialization) would make it four spans a request,
# each paid for on the request's path, for detail a profiler gives better; the probes come
# every few seconds per instance and tell nothing a trace should hold (docs/observability.md).
TELEMETRY_ON: TelemetryConfig = {"operation_spans": False, "exclude": is_probe}


def create_app(
    settings: Settings | None = None,
    *,
    registry: TaskRegistry | None = None,
    configure_logs: bool = True,
    request_metrics: RequestRecorder | None = None,
) -> FastAPI:
    """Build the app. Adapters are made here (no I/O) and opened by the lifespan, which runs once
    per process or Lambda execution environment. `configure_logs=False` leaves logging to the
    caller (the Lambda handlers use Powertools); `request_metrics` records each request's
    route, status and duration (the Lambda handler's EMF)."""
    settings = settings or load_settings()
    check_startup(settings)
    if configure_logs:
        configure_logging(settings.log_level, json_lines=settings.stage != "local")
    runtime = Runtime.build(settings, registry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title="lambdarun",
        version="1.0.0",
        summary="One FastAPI app for a laptop, AWS Lambda and Google Cloud Run.",
        lifespan=lifespan,
        telemetry=TELEMETRY_ON if settings.telemetry == "otel" else TELEMETRY_OFF,
        # Any request may meet the size limits (api/limits.py).
        responses=problems(413, 414, 431),
    )
    app.state.runtime = runtime
    install_error_handlers(app)
    cover_unhandled_errors(app, settings)
    idempotency.install(app, runtime)  # innermost: it sees the subject authentication found
    # Added last runs first: the request id exists before a 429 is written. Each layer costs
    # on every request, so those with nothing to do in this configuration are left out.
    if settings.rate_limit:
        app.add_middleware(RateLimitMiddleware, runtime=runtime)
    if settings.auth == "jwt":  # before the limiter, which counts per subject it finds
        install_bearer_auth(app, settings)
    document_auth(app, enabled=settings.auth == "jwt")
    # Size limits before anything reads a token or a body; CORS outside them and outside
    # authentication (a preflight carries no token, and a 401 or 413 must be readable by the
    # page); security headers on everything these answer.
    app.add_middleware(
        LimitsMiddleware,
        max_body=settings.max_body_bytes,
        max_url=settings.max_url_bytes,
        max_headers=settings.max_header_bytes,
        body_timeout=settings.read_timeout_seconds,
    )
    add_cors(app, settings)
    docs = frozenset(
        p for p in (app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url) if p
    )
    app.add_middleware(
        RequestIdMiddleware,
        decorate=SecurityHeaders(settings=settings, docs_paths=docs),
        trace=on_cloud_run(),  # only Cloud Logging reads the trace context
        proxy_hops=settings.proxy_hops,
    )
    if request_metrics is not None:  # outermost: it times and counts what the client saw
        templates = {
            id(route): v1.PREFIX + route.path
            for router in v1.routers
            for route in router.routes
            if isinstance(route, APIRoute)
        }
        app.add_middleware(RequestMetrics, recorder=request_metrics, templates=templates)
    health.install(app)
    for router in v1.routers:
        app.include_router(router, prefix=v1.PREFIX)
    if settings.pubsub_push_audience:
        from adapters.bootstrap import build_push_verifier
        from api import pubsub_push

        verifier = build_push_verifier(
            audience=settings.pubsub_push_audience,
            service_account=settings.pubsub_push_service_account,
            timeout=settings.io_timeout,
        )
        app.include_router(pubsub_push.build_router(verifier))
    return app
