"""OpenTelemetry SDK providers with in-memory exporters, installed once per test process (the
API lets a process set its global providers once), and the trace checks the tests share."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{CALLER_SPAN}-01"


@dataclass
class Telemetry:
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader

    def finished(self) -> tuple[ReadableSpan, ...]:
        return self.spans.get_finished_spans()


_installed: Telemetry | None = None


def in_memory() -> Telemetry:
    """The process's providers, in memory; api/telemetry.py keeps them (it installs its own only
    where none is set)."""
    global _installed  # noqa: PLW0603 - the providers are process-wide by OpenTelemetry's design
    if _installed is None:
        spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
        trace.set_tracer_provider(tracer_provider)
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        _installed = Telemetry(spans, reader)
    return _installed


def hex_span(span: ReadableSpan) -> str:
    return trace.format_span_id(span.context.span_id)


def hex_trace(span: ReadableSpan) -> str:
    return trace.format_trace_id(span.context.trace_id)


def parent_of(span: ReadableSpan) -> str | None:
    return trace.format_span_id(span.parent.span_id) if span.parent else None


def one(spans: Sequence[ReadableSpan], name: str, kind: SpanKind) -> ReadableSpan:
    found = [s for s in spans if s.name == name and s.kind == kind]
    assert len(found) == 1, f"{name} ({kind}): {[(s.name, s.kind) for s in spans]}"
    return found[0]


def descends_from(
    span: ReadableSpan, ancestor: ReadableSpan, spans: Sequence[ReadableSpan]
) -> bool:
    by_id = {s.context.span_id: s for s in spans}
    current: ReadableSpan | None = span
    while current is not None and current.parent is not None:
        if current.parent.span_id == ancestor.context.span_id:
            return True
        current = by_id.get(current.parent.span_id)
    return False


@dataclass(frozen=True)
class JobTrace:
    """The three spans of one request -> queue -> worker hop, checked to form one trace."""

    request: ReadableSpan
    send: ReadableSpan
    run: ReadableSpan


def job_trace(spans: Sequence[ReadableSpan], *, route: str, task: str) -> JobTrace:
    """Finds the request's server span, its send and the worker's run in the trace the caller
    started (TRACEPARENT), and asserts that they chain: caller -> request -> ... -> send -> run."""
    mine = [s for s in spans if hex_trace(s) == TRACE_ID]
    request = one(mine, route, SpanKind.SERVER)
    send = one(mine, f"send {task}", SpanKind.PRODUCER)
    run = one(mine, f"process {task}", SpanKind.CONSUMER)
    assert parent_of(request) == CALLER_SPAN
    assert descends_from(send, request, mine)
    assert parent_of(run) == hex_span(send)
    return JobTrace(request, send, run)
