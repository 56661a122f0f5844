"""TELEMETRY=otel must never take the service down: a missing SDK or an unknown exporter is one
error line and a service that serves; a message with a broken trace context still runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from opentelemetry import trace

from adapters.records import JobMessage
from api.jobs.observe import Outcome
from api.telemetry import JobSpans
from tests.support.otel import in_memory

ROOT = Path(__file__).resolve().parents[2]

# The app served once over ASGI; `HIDE_SDK` makes `import opentelemetry.sdk` fail, as on a
# machine without the `otel` extra.
SCRIPT = """
import asyncio, os, sys
if os.environ.get("HIDE_SDK"):
    sys.modules["opentelemetry.sdk"] = None
import httpx
from api.app import create_app

async def main():
    app = create_app(configure_logs=True)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            print("healthz", (await client.get("/healthz")).status_code)

asyncio.run(main())
"""


def serve_once(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    environ.update(
        STAGE="test",
        TELEMETRY="otel",
        DATABASE_URL=f"sqlite:///{tmp_path}/t.db",
        PYTHONPATH=str(ROOT),
        **env,
    )
    return subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_without_an_sdk_it_serves_and_says_so(tmp_path: Path) -> None:
    result = serve_once(tmp_path, HIDE_SDK="1")
    assert result.returncode == 0, result.stderr
    assert "healthz 200" in result.stdout
    [line] = [x for x in result.stderr.splitlines() if "no OpenTelemetry SDK" in x]
    assert "ERROR" in line
    assert "lambdarun[otel]" in line


def test_an_unknown_exporter_is_named_and_the_service_serves(tmp_path: Path) -> None:
    result = serve_once(tmp_path, OTEL_TRACES_EXPORTER="zipkin")
    assert result.returncode == 0, result.stderr
    assert "healthz 200" in result.stdout
    [line] = [x for x in result.stderr.splitlines() if "OTEL_TRACES_EXPORTER" in x]
    assert "zipkin" in line
    assert "otlp, console, none" in line


def test_a_message_with_a_broken_traceparent_still_runs() -> None:
    telemetry = in_memory()
    telemetry.spans.clear()
    outcomes = []
    for attributes in ({"traceparent": "00-zz-not-a-trace"}, {}):
        message = JobMessage(job_id="j1", task="t.note", payload={}, attributes=attributes)
        with JobSpans().running(message) as ended:
            ended(Outcome.DONE)
            outcomes.append(trace.get_current_span().get_span_context().is_valid)
    spans = telemetry.spans.get_finished_spans()
    assert outcomes == [True, True]  # each ran in a span of its own
    assert [s.parent for s in spans] == [None, None]  # a new trace each: nothing to join
    assert len({s.context.trace_id for s in spans}) == 2
    telemetry.spans.clear()
