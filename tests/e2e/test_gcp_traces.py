"""The Cloud Run pair as real servers with TELEMETRY=otel: the API (uvicorn) publishes to Pub/Sub
(a local fake), Eventarc's CloudEvent reaches the worker (functions-framework), and the spans both
processes print (OTEL_TRACES_EXPORTER=console, one JSON line each) form one trace; the worker's
Cloud Logging line for the job carries that trace and the job span's id."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.gcp_events import (
    binary_event,
    pubsub_message,
    running_pair,
)
from tests.support.otel import CALLER_SPAN, TRACE_ID, TRACEPARENT
from tests.support.pubsub import QUEUE_URL, running_fake_pubsub

PROJECT = "lambdarun-test"


def lines(log: str) -> list[dict[str, Any]]:
    found = []
    for line in log.splitlines():
        if line.startswith("{"):
            try:
                found.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return found


def spans(log: str) -> list[dict[str, Any]]:
    return [line for line in lines(log) if "context" in line and "kind" in line]


def span_id(span: dict[str, Any]) -> str:
    return str(span["context"]["span_id"]).removeprefix("0x")


def parent_id(span: dict[str, Any]) -> str | None:
    parent = span.get("parent_id")
    return str(parent).removeprefix("0x") if parent else None


def in_trace(span: dict[str, Any]) -> bool:
    return str(span["context"]["trace_id"]).removeprefix("0x") == TRACE_ID


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[Any, Any, Any]]:
    with running_fake_pubsub() as fake:
        settings = {
            "DATABASE_URL": f"sqlite:///{tmp_path}/shared.db",
            "QUEUE_URL": QUEUE_URL,
            "PUBSUB_EMULATOR_HOST": fake.host,
            "GOOGLE_CLOUD_PROJECT": PROJECT,
            "STAGE": "test",
            "TELEMETRY": "otel",
            "OTEL_TRACES_EXPORTER": "console",
            "OTEL_METRICS_EXPORTER": "none",
        }
        with running_pair(tmp_path, **settings) as (api, worker):
            yield api, worker, fake


def wait_for(predicate: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError("not found in time")


def test_one_trace_from_the_request_through_pubsub_to_the_worker(
    servers: tuple[Any, Any, Any],
) -> None:
    api, worker, fake = servers
    created = httpx.post(
        api.base_url + "/v1/users",
        json={"email": "ada@example.com", "name": "Ada"},
        headers={"traceparent": TRACEPARENT},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    [published] = fake.wait_for(1)
    headers, body = binary_event(pubsub_message(published.data, attributes=published.attributes))
    delivered = httpx.post(worker.base_url + "/", content=body, headers=headers, timeout=30)
    assert delivered.status_code == 200, delivered.text

    api_spans = wait_for(lambda: [s for s in spans(api.log()) if in_trace(s)])
    [request] = [s for s in api_spans if s["name"] == "POST /v1/users"]
    [send] = [s for s in api_spans if s["name"] == "send users.welcome"]
    assert parent_id(request) == CALLER_SPAN
    assert send["kind"] == "SpanKind.PRODUCER"

    [run] = wait_for(
        lambda: [s for s in spans(worker.log()) if s["name"] == "process users.welcome"]
    )
    assert in_trace(run)  # the worker's span is in the caller's trace, a child of the send
    assert parent_id(run) == span_id(send)
    assert run["attributes"]["job.outcome"] == "done"

    [done] = [
        line for line in lines(worker.log()) if "users.welcome): done" in str(line.get("message"))
    ]
    assert done["logging.googleapis.com/trace"] == f"projects/{PROJECT}/traces/{TRACE_ID}"
    assert done["logging.googleapis.com/spanId"] == span_id(run)
