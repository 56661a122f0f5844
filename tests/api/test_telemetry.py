"""TELEMETRY: FastAPI's native OpenTelemetry records requests to the provider a team installs
when it is `otel` (one span per request; none for the health probes), and nothing when it is
`off` (the default). Each case runs in a fresh
process: OpenTelemetry's global provider can be set once per process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# An SDK tracer provider with an in-memory exporter, as a team installs one (an exporter to
# its backend in place of memory), then two requests through the app.
SCRIPT = """
import asyncio, json
import httpx
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)

from api.app import create_app

async def main():
    app = create_app(configure_logs=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            assert (await client.get("/healthz")).status_code == 200
            assert (await client.get("/readyz")).status_code == 200
            assert (await client.get("/v1/users")).status_code == 200

asyncio.run(main())
print(json.dumps(sorted({span.name for span in exporter.get_finished_spans()})))
"""


def spans_recorded(telemetry: str | None, tmp_path: Path) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"TELEMETRY", "K_SERVICE"}}
    env.update(STAGE="test", DATABASE_URL=f"sqlite:///{tmp_path}/t.db", PYTHONPATH=str(ROOT))
    if telemetry is not None:
        env["TELEMETRY"] = telemetry
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    names: list[str] = json.loads(result.stdout.splitlines()[-1])
    return names


def test_otel_records_each_request_to_the_installed_provider(tmp_path: Path) -> None:
    names = spans_recorded("otel", tmp_path)
    assert "GET /v1/users" in names
    # The platform's probes every few seconds are not traces anyone reads.
    assert "GET /healthz" not in names
    assert "GET /readyz" not in names
    # The request's span only: not FastAPI's dependencies/endpoint/serialization spans.
    assert not [name for name in names if name.startswith("fastapi.")], names


@pytest.mark.parametrize("telemetry", [None, "off"])
def test_off_by_default_records_nothing(telemetry: str | None, tmp_path: Path) -> None:
    assert spans_recorded(telemetry, tmp_path) == []
