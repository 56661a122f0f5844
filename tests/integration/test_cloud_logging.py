"""Cloud Logging: on Cloud Run (K_SERVICE set) every log line is one JSON object with the fields
Cloud Logging reads, the request's trace and id included; locally the lines stay readable."""

from __future__ import annotations

import json
import logging
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.cloud_logging import (
    CloudLoggingFormatter,
    TraceContext,
    parse_cloud_trace_context,
    parse_traceparent,
    project_id,
    trace_scope,
    trace_var,
)
from api.middleware import RequestIdMiddleware, request_id_var
from tests.support.gcp_events import running, server_env, start_command
from tests.support.net import free_port
from tests.support.pubsub import PROJECT, FakePubSub, fake_pubsub

__all__ = ["fake_pubsub"]

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


def test_traceparent_is_parsed_and_malformed_ones_are_ignored() -> None:
    assert parse_traceparent(TRACEPARENT) == TraceContext(TRACE_ID, "00f067aa0ba902b7", True)
    assert parse_traceparent(f"00-{TRACE_ID}-00f067aa0ba902b7-00") == TraceContext(
        TRACE_ID, "00f067aa0ba902b7", False
    )
    for bad in (None, "", "garbage", f"00-{'0' * 32}-00f067aa0ba902b7-01", TRACEPARENT.upper()):
        assert parse_traceparent(bad) is None


def test_cloud_trace_context_span_ids_are_turned_from_decimal_to_hex() -> None:
    assert parse_cloud_trace_context(f"{TRACE_ID}/1;o=1") == TraceContext(
        TRACE_ID, "0000000000000001", True
    )
    assert parse_cloud_trace_context(f"{TRACE_ID}/18446744073709551615") == TraceContext(
        TRACE_ID, "ffffffffffffffff", False
    )
    assert parse_cloud_trace_context(TRACE_ID.upper()) == TraceContext(TRACE_ID, None, False)
    assert parse_cloud_trace_context("nope/1;o=1") is None


def record(message: str = "hello %s", *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            exc_info = sys.exc_info()
    return logging.LogRecord(
        "lambdarun.test", logging.WARNING, __file__, 42, message, args, exc_info
    )


def test_a_line_carries_severity_trace_span_and_request_id() -> None:
    formatter = CloudLoggingFormatter(project="my-project")
    token = request_id_var.set("req-1")
    try:
        with trace_scope(TRACEPARENT):
            line = formatter.format(record("hello %s", "world"))
    finally:
        request_id_var.reset(token)
    entry = json.loads(line)
    assert entry["severity"] == "WARNING"
    assert entry["message"] == "hello world"
    assert entry["logging.googleapis.com/trace"] == f"projects/my-project/traces/{TRACE_ID}"
    assert entry["logging.googleapis.com/spanId"] == "00f067aa0ba902b7"
    assert entry["logging.googleapis.com/trace_sampled"] is True
    assert entry["request_id"] == "req-1"
    assert entry["logging.googleapis.com/sourceLocation"]["line"] == 42
    assert entry["time"].endswith("+00:00")


def test_outside_a_request_there_is_no_trace_and_exceptions_go_in_the_message() -> None:
    entry = json.loads(CloudLoggingFormatter(project="p").format(record("failed", exc=True)))
    assert "logging.googleapis.com/trace" not in entry
    assert "request_id" not in entry
    assert entry["message"].startswith("failed\nTraceback")
    assert "ValueError: boom" in entry["message"]


def test_without_a_project_the_trace_id_is_kept_plain() -> None:
    with trace_scope(TRACEPARENT):
        entry = json.loads(CloudLoggingFormatter(project=None).format(record()))
    assert entry["trace_id"] == TRACE_ID
    assert "logging.googleapis.com/trace" not in entry


def test_the_project_comes_from_the_environment_first(fake_pubsub: FakePubSub) -> None:
    environ = {"GOOGLE_CLOUD_PROJECT": "from-env", "K_SERVICE": "api"}
    assert project_id({**environ, "GCE_METADATA_HOST": fake_pubsub.host}) == "from-env"
    assert fake_pubsub.requests == []


def test_on_cloud_run_the_metadata_server_names_the_project(fake_pubsub: FakePubSub) -> None:
    assert project_id({"K_SERVICE": "api", "GCE_METADATA_HOST": fake_pubsub.host}) == PROJECT
    assert project_id({"GCE_METADATA_HOST": fake_pubsub.host}) is None  # not on Cloud Run
    assert len(fake_pubsub.requests) == 1


def test_an_unreachable_metadata_server_means_no_project() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        host = f"127.0.0.1:{sock.getsockname()[1]}"
        assert project_id({"K_SERVICE": "api", "GCE_METADATA_HOST": host}, timeout=0.5) is None


async def test_the_request_id_middleware_puts_the_requests_trace_in_context() -> None:
    seen: list[TraceContext | None] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(trace_var.get())
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    transport = httpx.ASGITransport(app=RequestIdMiddleware(app, trace=True))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        await client.get("/", headers={"traceparent": TRACEPARENT})
        await client.get("/", headers={"X-Cloud-Trace-Context": f"{TRACE_ID}/255;o=1"})
        await client.get(
            "/",
            headers={"traceparent": "bad", "X-Cloud-Trace-Context": f"{TRACE_ID}/1;o=0"},
        )
        await client.get("/")
    assert seen == [
        TraceContext(TRACE_ID, "00f067aa0ba902b7", True),
        TraceContext(TRACE_ID, "00000000000000ff", True),
        TraceContext(TRACE_ID, "0000000000000001", False),
        None,
    ]
    assert trace_var.get() is None


@pytest.fixture
def closed_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_on_cloud_run_the_servers_lines_are_cloud_logging_json(
    tmp_path: Path, closed_port: int
) -> None:
    """The real server with K_SERVICE set; a request whose job cannot be sent now (Pub/Sub
    unreachable: the user is created and the sweeper sends it later) logs a warning inside the
    request, under its trace and request id."""
    port = free_port()
    env = server_env(
        port,
        DATABASE_URL=f"sqlite:///{tmp_path}/api.db",
        QUEUE_URL="pubsub://projects/my-project/topics/jobs",
        PUBSUB_EMULATOR_HOST=f"127.0.0.1:{closed_port}",
        K_SERVICE="lambdarun-api",
        GOOGLE_CLOUD_PROJECT="my-project",
        STAGE="test",  # JSON lines as on any deployed stage; AUTH=off is refused on those
        IO_TIMEOUT="0.5",
    )
    with running(start_command(), port=port, env=env, log_path=tmp_path / "log") as server:
        answer = httpx.post(
            server.base_url + "/v1/users",
            json={"email": "t@example.com", "name": "T"},
            headers={"traceparent": TRACEPARENT, "X-Request-ID": "req-42"},
            timeout=10,
        )
        assert answer.status_code == 201, answer.text
    entries = [json.loads(line) for line in server.log().splitlines() if line.strip()]
    assert {"Application startup complete.", "Application shutdown complete."} <= {
        e["message"] for e in entries
    }
    assert all(e["severity"] in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"} for e in entries)
    [warning] = [e for e in entries if e.get("request_id") == "req-42"]
    assert warning["severity"] == "WARNING"
    assert "the sweeper will send it" in warning["message"]
    assert warning["logging.googleapis.com/trace"] == f"projects/my-project/traces/{TRACE_ID}"
    assert warning["logging.googleapis.com/spanId"] == "00f067aa0ba902b7"


def test_locally_the_lines_stay_readable(tmp_path: Path) -> None:
    port = free_port()
    env = server_env(port, DATABASE_URL=f"sqlite:///{tmp_path}/api.db")
    with running(start_command(), port=port, env=env, log_path=tmp_path / "log") as server:
        assert httpx.get(server.base_url + "/healthz", timeout=5).status_code == 200
    lines = [line for line in server.log().splitlines() if line.strip()]
    assert any("Application startup complete." in line for line in lines)
    assert not any(line.startswith("{") for line in lines)
