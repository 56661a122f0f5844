"""Cloud Logging on Cloud Run: one JSON object per line with the fields Cloud Logging reads
(`severity`, `logging.googleapis.com/trace`, `.../spanId`, `.../trace_sampled`,
`.../sourceLocation`), so a request's lines group under its trace in the console; plus a pure
ASGI middleware that reads the trace from the request (`traceparent`, else
`X-Cloud-Trace-Context`, both set by Cloud Run's front end).
https://cloud.google.com/logging/docs/structured-logging"""

from __future__ import annotations

import json
import logging
import os
import re
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from api.middleware import request_id_var

if TYPE_CHECKING:
    from starlette.types import Scope

_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
# TRACE_ID/SPAN_ID;o=OPTIONS, the span id in decimal.
_CLOUD_TRACE = re.compile(r"^([0-9a-fA-F]{32})(?:/(\d{1,20}))?(?:;o=([01]))?$")
_PROJECT_VARIABLES = ("GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT", "GCP_PROJECT")
_ZERO_TRACE = "0" * 32


@dataclass(frozen=True, slots=True)
class TraceContext:
    trace_id: str  # 32 hex digits
    span_id: str | None  # 16 hex digits
    sampled: bool


trace_var: ContextVar[TraceContext | None] = ContextVar("trace", default=None)
# The current OpenTelemetry span's ids, set by api/telemetry.py when TELEMETRY=otel: a line
# logged inside a span (the request's, a job's) then joins that span, not only its trace.
current_trace: Callable[[], TraceContext | None] | None = None


def trace_of_line() -> TraceContext | None:
    """The trace a log line belongs to: the current span's, else the one the request or the
    job message carried."""
    return (current_trace and current_trace()) or trace_var.get()


def on_cloud_run(environ: Mapping[str, str] = os.environ) -> bool:
    """Cloud Run sets K_SERVICE in every service container (and functions-framework's too)."""
    return bool(environ.get("K_SERVICE"))


def parse_traceparent(value: str | None) -> TraceContext | None:
    """W3C trace context: `00-<trace id>-<parent span id>-<flags>`; None if malformed."""
    match = _TRACEPARENT.match(value.strip()) if value else None
    if match is None or match[1] == _ZERO_TRACE or match[2] == "0" * 16:
        return None
    return TraceContext(match[1], match[2], sampled=bool(int(match[3], 16) & 1))


def parse_cloud_trace_context(value: str | None) -> TraceContext | None:
    """`X-Cloud-Trace-Context: TRACE_ID/SPAN_ID;o=1`; the span id is decimal there."""
    match = _CLOUD_TRACE.match(value.strip()) if value else None
    if match is None or match[1] == _ZERO_TRACE:
        return None
    span = int(match[2]) if match[2] else 0
    span_id = f"{span:016x}" if 0 < span < 2**64 else None
    return TraceContext(match[1].lower(), span_id, sampled=match[3] == "1")


@contextmanager
def trace_scope(traceparent: str | None) -> Iterator[TraceContext | None]:
    """Log inside the block under this trace (a worker running a job sent with one)."""
    token = trace_var.set(parse_traceparent(traceparent))
    try:
        yield trace_var.get()
    finally:
        trace_var.reset(token)


def enter_request_trace(scope: Scope) -> Token[TraceContext | None]:
    """Put the request's trace context in `trace_var` (the request-id middleware calls this on
    Cloud Run, and `trace_var.reset` with the token when the request ends). Not a context
    manager: one costs ~1.5 us a request, a tenth of the whole edge layer."""
    traceparent = cloud = None
    for name, value in scope["headers"]:
        if name == b"traceparent":
            traceparent = value.decode("latin-1")
        elif name == b"x-cloud-trace-context":
            cloud = value.decode("latin-1")
    if traceparent is None and cloud is None:
        return trace_var.set(None)
    return trace_var.set(parse_traceparent(traceparent) or parse_cloud_trace_context(cloud))


def project_id(environ: Mapping[str, str] = os.environ, *, timeout: float = 0.5) -> str | None:
    """The project the trace ids belong to: from the environment, else (on Cloud Run only)
    the metadata server, asked once at start-up; None when neither answers."""
    for name in _PROJECT_VARIABLES:
        if environ.get(name):
            return environ[name]
    if not on_cloud_run(environ):
        return None
    host = environ.get("GCE_METADATA_HOST", "metadata.google.internal")
    request = urllib.request.Request(
        f"http://{host}/computeMetadata/v1/project/project-id",
        headers={"Metadata-Flavor": "Google"},
    )
    try:
        # Plain http is the metadata server's own scheme.
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310
            return answer.read().decode().strip() or None
    except (OSError, ValueError):
        return None


class CloudLoggingFormatter(logging.Formatter):
    """One JSON object per record, with Cloud Logging's special fields."""

    def __init__(self, project: str | None = None) -> None:
        super().__init__()
        self.project = project

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            # In the message, so Error Reporting finds the stack trace.
            message = f"{message}\n{self.formatException(record.exc_info)}"
        entry: dict[str, object] = {
            "severity": record.levelname,
            "message": message,
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "logger": record.name,
            "logging.googleapis.com/sourceLocation": {
                "file": record.pathname,
                "line": record.lineno,
                "function": record.funcName,
            },
        }
        request_id = request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        trace = trace_of_line()
        if trace is not None:
            if self.project:
                entry["logging.googleapis.com/trace"] = (
                    f"projects/{self.project}/traces/{trace.trace_id}"
                )
            else:
                entry["trace_id"] = trace.trace_id
            if trace.span_id:
                entry["logging.googleapis.com/spanId"] = trace.span_id
            entry["logging.googleapis.com/trace_sampled"] = trace.sampled
        return json.dumps(entry, default=str, ensure_ascii=False)


def install(handler: logging.Handler, environ: Mapping[str, str] = os.environ) -> None:
    """Make `handler` write Cloud Logging JSON lines (`api.logs` calls this on Cloud Run)."""
    handler.setFormatter(CloudLoggingFormatter(project_id(environ)))
