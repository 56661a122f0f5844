"""Powertools Logger and Metrics for the Lambda entry points, and the RED metrics in EMF.

`http.server.request.duration`, `job.duration` and `job.queue_lag` carry the names, units and
dimensions the OTel histograms carry on Cloud Run (docs/observability.md), so a dashboard query
reads alike on both clouds. Each is its own EMF line (`single_metric`): a batch's jobs differ
in task and outcome, and the invocation's own counters keep only the `service` dimension."""

from __future__ import annotations

import logging
import os
import sys

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from api.jobs.observe import JobRun


def make_logger() -> Logger:
    """A Powertools Logger whose JSON format and Lambda context the app's own loggers share."""
    logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "lambdarun"))
    for name in ("api", "adapters", "handlers"):
        logging.getLogger(name)  # register them, so the copy below finds them
    if os.environ.get("TELEMETRY", "").lower() == "otel":
        # Lines logged inside a span carry its trace_id/span_id (the X-Ray id, xray_trace_id,
        # Powertools adds itself when active tracing is on).
        from api.telemetry import TraceIds

        logger.registered_handler.addFilter(TraceIds())
    copy_config_to_registered_loggers(source_logger=logger, include={"api", "adapters", "handlers"})
    return logger


def make_metrics() -> Metrics:
    # Without a namespace Powertools refuses to flush; default to the project's name.
    return Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "lambdarun"))


class EmfMetrics:
    """RED metrics as EMF lines: the app's RequestRecorder and the runtime's JobMetrics."""

    def __init__(self, metrics: Metrics) -> None:
        self.namespace = metrics.namespace
        self.dimensions = {"service": metrics.service or "lambdarun"}

    def request(self, *, route: str, method: str, status: int, seconds: float) -> None:
        self._emit(
            "http.server.request.duration",
            seconds,
            {
                "http.route": route,
                "http.request.method": method,
                "http.response.status_code": str(status),
            },
        )

    def record(self, run: JobRun) -> None:
        self._emit("job.duration", run.seconds, {"job.task": run.task, "job.outcome": run.outcome})
        if run.lag is not None:
            self._emit("job.queue_lag", run.lag, {"job.task": run.task})

    def _emit(self, name: str, seconds: float, dimensions: dict[str, str]) -> None:
        with single_metric(
            name=name,
            unit=MetricUnit.Seconds,
            value=seconds,
            namespace=self.namespace,
            default_dimensions=self.dimensions,
        ) as metric:
            for key, value in dimensions.items():
                metric.add_dimension(name=key, value=value)


def flush_telemetry() -> None:
    """After each invocation when TELEMETRY=otel: the environment freezes once the handler
    returns, and spans still buffered would leave late or never."""
    telemetry = sys.modules.get("api.telemetry")  # imported only when TELEMETRY=otel
    if telemetry is not None:
        telemetry.flush()
