"""TELEMETRY=otel: one trace from the request through the queue to the worker, and job metrics.

Imported only when the setting is `otel` (api/runtime.py), so the SDK costs nothing when off.

- Providers: a provider already installed is kept (a test's in-memory exporter, a team's own,
  the ADOT Lambda layer's). Otherwise one is built from the standard variables:
  `OTEL_TRACES_EXPORTER` / `OTEL_METRICS_EXPORTER` = `otlp` (the default: OTLP over HTTP to
  `OTEL_EXPORTER_OTLP_ENDPOINT`, the collector the platform runs), `console`, or `none`;
  `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` name the service. The SDK's own reader of
  these variables is private (`opentelemetry.sdk._configuration`) and also sets up log export,
  which would send every log line twice here: this maps the three exporter values itself.
- Jobs: the send is a PRODUCER span that writes W3C trace context into the message's
  attributes; every worker's run is a CONSUMER span whose parent is read back from them, with
  a link to whatever span was current when the message arrived (a Pub/Sub push request).
- Metrics: `job.duration` and `job.queue_lag` (seconds), named as the Lambda worker's EMF ones.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from opentelemetry import metrics, propagate, trace
from opentelemetry.trace import Link, SpanKind, StatusCode

from adapters.records import JobMessage
from api import cloud_logging
from api.jobs.observe import JobRun, Outcome

logger = logging.getLogger(__name__)

SCOPE = "lambdarun"
_installed: list[Any] = []  # the providers built here, flushed after each Lambda invocation
_lock = threading.Lock()


def _exporters(variable: str, environ: Mapping[str, str]) -> list[str]:
    names = [n.strip().lower() for n in environ.get(variable, "otlp").split(",") if n.strip()]
    unknown = sorted(set(names) - {"otlp", "console", "none"})
    if unknown:
        raise ValueError(f"{variable}: {', '.join(unknown)} is not one of otlp, console, none")
    return [n for n in names if n != "none"]


def _unset(provider: object) -> bool:
    # The API's placeholders until something installs a provider; no public query says so.
    return type(provider).__name__ in {"ProxyTracerProvider", "_ProxyMeterProvider"}


def install_providers(environ: Mapping[str, str] = os.environ) -> None:
    """Install SDK tracer and meter providers from the OTEL_* variables, unless some are
    installed already; and let log lines carry the current span's ids."""
    with _lock:
        cloud_logging.current_trace = current_trace
        tracing = _unset(trace.get_tracer_provider())
        metering = _unset(metrics.get_meter_provider())
        if not tracing and not metering:
            return
        try:
            from opentelemetry.sdk.resources import Resource
        except ImportError:
            # Telemetry must not take the service down: serve, say why nothing is exported.
            logger.error(
                "TELEMETRY=otel, but no OpenTelemetry SDK is installed and no provider was set "
                "(pip install 'lambdarun[otel]', or a layer that brings one): nothing is exported"
            )
            return

        try:
            span_exporters = _exporters("OTEL_TRACES_EXPORTER", environ)
            metric_exporters = _exporters("OTEL_METRICS_EXPORTER", environ)
        except ValueError as exc:
            logger.error("TELEMETRY=otel: %s; nothing is exported", exc)
            return
        resource = Resource.create()  # reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
        if tracing:
            _installed.append(_tracer_provider(resource, span_exporters))
        if metering:
            _installed.append(_meter_provider(resource, metric_exporters))


def _tracer_provider(resource: Any, exporters: list[str]) -> Any:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    provider = TracerProvider(resource=resource)
    if "otlp" in exporters:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    if "console" in exporters:  # one JSON object a line, like the app's own log lines
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        exporter = ConsoleSpanExporter(formatter=lambda span: span.to_json(indent=None) + "\n")
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return provider


def _meter_provider(resource: Any, exporters: list[str]) -> Any:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader

    readers: list[MetricReader] = []
    if "otlp" in exporters:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
    if "console" in exporters:
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

        readers.append(PeriodicExportingMetricReader(ConsoleMetricExporter()))
    provider = MeterProvider(metric_readers=readers, resource=resource)
    metrics.set_meter_provider(provider)
    return provider


def flush(timeout_millis: int = 2000) -> None:
    """Export what is buffered now: Lambda freezes the environment once the handler returns,
    and a batch waiting in memory would leave only with the next invocation, or never."""
    for provider in _installed:
        try:
            provider.force_flush(timeout_millis)
        except Exception:  # telemetry must never fail the invocation
            logger.warning("telemetry: flush failed", exc_info=True)


def current_trace() -> cloud_logging.TraceContext | None:
    """The current span's ids for log lines; None outside any span."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return cloud_logging.TraceContext(
        trace.format_trace_id(context.trace_id),
        trace.format_span_id(context.span_id),
        sampled=context.trace_flags.sampled,
    )


class TraceIds(logging.Filter):
    """Adds `trace_id` and `span_id` to every record logged inside a span (Powertools' JSON
    lines on Lambda print a record's extra attributes)."""

    def filter(self, record: logging.LogRecord) -> bool:
        ids = current_trace()
        if ids is not None:
            record.trace_id = ids.trace_id
            record.span_id = ids.span_id
        return True


class JobSpans:
    """The job path's spans (api/jobs/observe.py's JobTracing)."""

    def __init__(self) -> None:
        self.tracer = trace.get_tracer(SCOPE)

    @contextmanager
    def sending(self, message: JobMessage) -> Iterator[JobMessage]:
        with self.tracer.start_as_current_span(
            f"send {message.task}",
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.operation.type": "send",
                "job.id": message.job_id,
                "job.task": message.task,
            },
        ):
            carrier = dict(message.attributes)
            propagate.inject(carrier)  # traceparent (and tracestate), this span as the parent
            yield replace(message, attributes=carrier)

    @contextmanager
    def running(self, message: JobMessage) -> Iterator[Callable[[Outcome], None]]:
        parent = propagate.extract(message.attributes)
        arrived = trace.get_current_span().get_span_context()  # a push request, a batch
        links = [Link(arrived)] if arrived.is_valid else []
        with self.tracer.start_as_current_span(
            f"process {message.task}",
            context=parent,
            kind=SpanKind.CONSUMER,
            links=links,
            attributes={
                "messaging.operation.type": "process",
                "job.id": message.job_id,
                "job.task": message.task,
            },
        ) as span:

            def ended(outcome: Outcome) -> None:
                span.set_attribute("job.outcome", outcome.value)
                if outcome is Outcome.FAILED:
                    span.set_status(StatusCode.ERROR, "the task failed")

            yield ended

    @contextmanager
    def scheduled(self, name: str) -> Iterator[None]:
        # A trace of its own: the scheduler's tick carries no context. A failure raises
        # through here and is recorded on the span.
        with self.tracer.start_as_current_span(
            f"schedule {name}", kind=SpanKind.CONSUMER, attributes={"job.schedule": name}
        ):
            yield


class JobMeters:
    """`job.duration` and `job.queue_lag` as OTel histograms (Cloud Run, local)."""

    def __init__(self) -> None:
        meter = metrics.get_meter(SCOPE)
        self.duration = meter.create_histogram(
            "job.duration", unit="s", description="Time to run one delivery of a job."
        )
        self.lag = meter.create_histogram(
            "job.queue_lag", unit="s", description="Time from a job message's send to its run."
        )

    def record(self, run: JobRun) -> None:
        self.duration.record(run.seconds, {"job.task": run.task, "job.outcome": run.outcome})
        if run.lag is not None:
            self.lag.record(run.lag, {"job.task": run.task})
