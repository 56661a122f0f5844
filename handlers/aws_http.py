"""AWS Lambda HTTP entry point: API Gateway HTTP API (v2) and REST API (v1), ALB and Function
URL events, served by the FastAPI app through Mangum."""

from __future__ import annotations

import gc

# The collector running during imports costs ~33 ms of every cold start (docs/performance.md);
# it is frozen and re-enabled once init is done.
gc.disable()

from typing import Any  # noqa: E402

from aws_lambda_powertools import Logger, Metrics  # noqa: E402
from aws_lambda_powertools.logging import correlation_paths  # noqa: E402
from aws_lambda_powertools.metrics import MetricUnit  # noqa: E402
from mangum import Mangum  # noqa: E402
from mangum.adapter import DEFAULT_TEXT_MIME_TYPES  # noqa: E402
from mangum.types import LambdaContext  # noqa: E402

from api.app import create_app  # noqa: E402
from handlers.lambda_environment import ExecutionEnvironment  # noqa: E402
from handlers.lambda_observability import (  # noqa: E402
    EmfMetrics,
    flush_telemetry,
    make_logger,
    make_metrics,
)
from handlers.lambda_secrets import resolve_secrets  # noqa: E402


class UnsupportedEvent(TypeError):
    """The function was invoked with an event that is not an HTTP request it can serve."""


logger: Logger = make_logger()
metrics: Metrics = make_metrics()
resolve_secrets()  # X_SECRET_ID / X_PARAMETER -> X, before the settings are read
app = create_app(configure_logs=False, request_metrics=EmfMetrics(metrics))
environment = ExecutionEnvironment(lambda: app.router.lifespan_context(app))
environment.start()
environment.install_shutdown_hooks()
# Mangum matches text types by substring; "+json" keeps problem+json bodies readable text
# instead of base64.
adapter = Mangum(app, lifespan="off", text_mime_types=[*DEFAULT_TEXT_MIME_TYPES, "+json"])

gc.freeze()
gc.enable()


@metrics.log_metrics
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        adapter.infer(event, context)
    except RuntimeError as exc:
        metrics.add_metric(name="UnsupportedEvents", unit=MetricUnit.Count, value=1)
        keys = ", ".join(sorted(event)[:10]) if isinstance(event, dict) else type(event).__name__
        raise UnsupportedEvent(
            "expected an API Gateway (HTTP API or REST API), ALB or Function URL event; "
            f"got one with keys: {keys}"
        ) from exc
    try:
        response = adapter(event, context)
    finally:
        flush_telemetry()
    metrics.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
    if response["statusCode"] >= 500:
        metrics.add_metric(name="ServerErrors", unit=MetricUnit.Count, value=1)
    return response
