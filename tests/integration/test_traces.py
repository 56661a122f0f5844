"""TELEMETRY=otel: a request that queues a job, the send and the worker's run form ONE trace on
every queue: in-process, SQS (the Lambda worker), Pub/Sub push and Eventarc's CloudEvent (the
functions-framework worker). The caller's trace context comes in as `traceparent`; the spans are
read back from an in-memory exporter. (tests/e2e/test_gcp_traces.py runs the Cloud Run pair as
real servers, with the console exporter.)"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from cloudevents.http import from_http
from fastapi import FastAPI
from opentelemetry.trace import SpanKind

from adapters.pubsub_push_verifier import PubSubPushVerifier
from api.app import create_app
from api.jobs.runner import utcnow
from api.pubsub_push import PUSH_PATH, build_router
from api.settings import load_settings
from tests.support.gcp_events import (
    PUSH_ACCOUNT,
    GoogleKeys,
    binary_event,
    certs_server,
    pubsub_message,
    push_envelope,
)
from tests.support.lambda_events import LambdaContext
from tests.support.lambda_module import lambda_module
from tests.support.moto_server import aws_env, create_queue, moto_server, sqs_client
from tests.support.otel import (
    TRACE_ID,
    TRACEPARENT,
    Telemetry,
    hex_span,
    in_memory,
    job_trace,
    one,
    parent_of,
)
from tests.support.pubsub import QUEUE_URL, FakePubSub, fake_pubsub
from tests.support.sqs_events import event, failures, record
from tests.support.stores import a_job

__all__ = ["aws_env", "fake_pubsub", "moto_server"]  # fixtures, used by name
XRAY_ROOT = "1-5759e988-bd862e3fe1be46a994272793"

AUDIENCE = "https://api.example.run.app/internal/pubsub/push"


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    installed = in_memory()
    installed.spans.clear()
    yield installed
    installed.spans.clear()


@pytest.fixture(autouse=True)
def _no_span_hook_left() -> Iterator[None]:
    """Log lines of later tests must not look for spans: undo the hook api/telemetry.py sets."""
    from api import cloud_logging

    yield
    cloud_logging.current_trace = None


async def serve(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


async def create_user(client: httpx.AsyncClient) -> dict[str, Any]:
    answer = await client.post(
        "/v1/users",
        json={"email": "ada@example.com", "name": "Ada"},
        headers={"traceparent": TRACEPARENT},
    )
    assert answer.status_code == 201, answer.text
    user: dict[str, Any] = answer.json()
    return user


def otel_settings(tmp_path: Path, **overrides: Any) -> Any:
    return load_settings(
        database_url=f"sqlite:///{tmp_path}/traces.db", telemetry="otel", **overrides
    )


async def test_in_process_queue(tmp_path: Path, telemetry: Telemetry) -> None:
    app = create_app(otel_settings(tmp_path, queue_url="inprocess://"), configure_logs=False)
    async for client in serve(app):
        await create_user(client)
        await app.state.runtime.adapters.queue.join()
    hop = job_trace(telemetry.finished(), route="POST /v1/users", task="users.welcome")
    assert hop.run.attributes is not None
    assert hop.run.attributes["job.outcome"] == "done"
    # The same run as a metric, under the contract's name and attributes.
    names = {
        metric.name: metric
        for resource in telemetry.metrics.get_metrics_data().resource_metrics  # type: ignore[union-attr]
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }
    points = names["job.duration"].data.data_points
    assert any(p.attributes == {"job.task": "users.welcome", "job.outcome": "done"} for p in points)
    assert "job.queue_lag" in names


def test_sqs_and_the_lambda_worker(
    tmp_path: Path,
    telemetry: Telemetry,
    aws_env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    queue_url = create_queue()
    db = f"sqlite:///{tmp_path}/traces.db"
    app = create_app(otel_settings(tmp_path, queue_url=queue_url), configure_logs=False)

    async def request() -> None:
        async for client in serve(app):
            await create_user(client)

    asyncio.run(request())
    with sqs_client() as sqs:
        [message] = sqs.receive_message(
            QueueUrl=queue_url, MessageAttributeNames=["All"], WaitTimeSeconds=1
        )["Messages"]
    attributes = {k: v["StringValue"] for k, v in message["MessageAttributes"].items()}
    with lambda_module(
        "handlers.aws_worker", DATABASE_URL=db, QUEUE_URL=queue_url, TELEMETRY="otel"
    ) as worker:
        capsys.readouterr()
        # What the Lambda runtime sets per invocation when X-Ray active tracing is on.
        aws_env.setenv("_X_AMZN_TRACE_ID", f"Root={XRAY_ROOT};Parent=53995c3f42cd8ad8;Sampled=1")
        answer = worker.handler(
            event(record(message["Body"], attributes=attributes)), LambdaContext()
        )
        assert failures(answer) == set()
    hop = job_trace(telemetry.finished(), route="POST /v1/users", task="users.welcome")
    # The worker's log line joins the job's span; its metrics are EMF under the contract's names.
    lines = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")
    ]
    [done] = [line for line in lines if "users.welcome): done" in str(line.get("message"))]
    assert done["trace_id"] == TRACE_ID
    assert done["span_id"] == hex_span(hop.run)
    assert done["xray_trace_id"] == XRAY_ROOT
    emf = {
        m["Name"]
        for line in lines
        if "_aws" in line
        for d in line["_aws"]["CloudWatchMetrics"]
        for m in d["Metrics"]
    }
    assert {"job.duration", "job.queue_lag"} <= emf


@pytest.fixture
def pubsub_app(tmp_path: Path, fake_pubsub: FakePubSub, monkeypatch: pytest.MonkeyPatch) -> FastAPI:
    """The API with TELEMETRY=otel, publishing its jobs to the fake Pub/Sub."""
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", fake_pubsub.host)
    return create_app(otel_settings(tmp_path, queue_url=QUEUE_URL), configure_logs=False)


async def test_pubsub_push(
    pubsub_app: FastAPI, telemetry: Telemetry, fake_pubsub: FakePubSub
) -> None:
    app = pubsub_app
    keys = GoogleKeys()
    with certs_server(keys) as (certs_url, _):
        verifier = PubSubPushVerifier(
            audience=AUDIENCE, service_account=PUSH_ACCOUNT, certs_url=certs_url
        )
        app.include_router(build_router(verifier))
        async for client in serve(app):
            await create_user(client)
            [published] = fake_pubsub.wait_for(1)
            envelope = push_envelope(
                pubsub_message(published.data, attributes=published.attributes)
            )
            pushed = await client.post(
                PUSH_PATH,
                content=json.dumps(envelope).encode(),
                headers={
                    "Authorization": f"Bearer {keys.token()}",
                    "Content-Type": "application/json",
                },
            )
            assert pushed.status_code == 204, pushed.text
        await verifier.close()
    spans = telemetry.finished()
    hop = job_trace(spans, route="POST /v1/users", task="users.welcome")
    # Pub/Sub's push request is a trace of its own; the run links to it.
    [push] = [s for s in spans if s.name == f"POST {PUSH_PATH}"]
    [link] = hop.run.links
    assert link.context.trace_id == push.context.trace_id != hop.run.context.trace_id


@contextmanager
def gcp_worker(monkeypatch: pytest.MonkeyPatch, **environment: str) -> Iterator[ModuleType]:
    """handlers/gcp_worker.py imported afresh, as functions-framework loads it in a new instance;
    its runtime stopped and the root logger's handlers restored afterwards."""
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    sys.modules.pop("handlers.gcp_worker", None)
    try:
        module = importlib.import_module("handlers.gcp_worker")
        try:
            yield module
        finally:
            module.process.stop()
    finally:
        sys.modules.pop("handlers.gcp_worker", None)
        root.handlers[:] = handlers
        root.setLevel(level)


async def test_cloudevent_worker(
    pubsub_app: FastAPI,
    tmp_path: Path,
    telemetry: Telemetry,
    fake_pubsub: FakePubSub,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async for client in serve(pubsub_app):
        await create_user(client)
    [published] = fake_pubsub.wait_for(1)
    # Eventarc's binary-mode delivery, parsed as functions-framework parses it.
    headers, body = binary_event(pubsub_message(published.data, attributes=published.attributes))
    cloud_event = from_http(headers, body)
    with gcp_worker(
        monkeypatch,
        DATABASE_URL=f"sqlite:///{tmp_path}/traces.db",
        QUEUE_URL=QUEUE_URL,
        TELEMETRY="otel",
        STAGE="test",
    ) as worker:
        await asyncio.to_thread(worker.on_job_message, cloud_event)  # it blocks, as in gunicorn
    hop = job_trace(telemetry.finished(), route="POST /v1/users", task="users.welcome")
    assert hop.run.attributes is not None
    assert hop.run.attributes["job.outcome"] == "done"


async def test_off_sends_no_trace_of_its_own(tmp_path: Path, telemetry: Telemetry) -> None:
    settings = load_settings(database_url=f"sqlite:///{tmp_path}/off.db", queue_url="inprocess://")
    app = create_app(settings, configure_logs=False)
    async for client in serve(app):
        await create_user(client)
        await app.state.runtime.adapters.queue.join()
    assert telemetry.finished() == ()


async def test_a_sweeper_resend_runs_in_the_sweeps_trace(
    tmp_path: Path, telemetry: Telemetry
) -> None:
    """The outbox row keeps no trace context, so a re-sent job joins the sweep that sent it."""
    # Only the start-up sweep and ours: no periodic one in between.
    settings = otel_settings(tmp_path, queue_url="inprocess://", local_sweep_seconds=3600)
    app = create_app(settings, configure_logs=False)
    async for client in serve(app):
        user = await create_user(client)
        runtime = app.state.runtime
        await runtime.adapters.queue.join()
        telemetry.spans.clear()
        past = utcnow() - timedelta(minutes=5)
        job = a_job(payload={"user_id": user["id"]}, created_at=past, updated_at=past, due_at=past)
        await runtime.adapters.store.create_job(job)
        await runtime.run_schedule("jobs.sweep")
        await runtime.adapters.queue.join()
    spans = telemetry.finished()
    sweep = one(spans, "schedule jobs.sweep", SpanKind.CONSUMER)
    send = one(spans, "send users.welcome", SpanKind.PRODUCER)
    run = one(spans, "process users.welcome", SpanKind.CONSUMER)
    assert sweep.parent is None
    assert parent_of(send) == hex_span(sweep)
    assert parent_of(run) == hex_span(send)
