"""What every response shares: problem+json errors, request ids, health, and a store or queue
that is down."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI

from adapters.errors import Unavailable
from adapters.records import JobMessage
from api.app import create_app
from api.settings import load_settings
from tests.api.conftest import drain, runtime_of, use_queue
from tests.support.net import refused_port

PROBLEM = "application/problem+json"


async def test_healthz_answers_without_io(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


async def test_readyz_is_ok_when_every_adapter_answers(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {
        "store": "ok",
        "queue": "ok",
        "cache": "ok",
        "rate_limiter": "ok",
    }


async def test_readyz_names_what_is_down_and_nothing_of_where_it_is() -> None:
    """A driver's error names hosts, ports, users and paths: /readyz says which dependency is
    down, and the log (not the answer) says why."""
    with refused_port() as port:
        url = f"postgresql://appuser:hunter2@127.0.0.1:{port}/appdb"
        app = create_app(load_settings(database_url=url, io_timeout=0.5))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                ready = await client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["store"] == "unavailable"
    for secret in ("127.0.0.1", str(port), "appuser", "appdb", "hunter2", "Connect"):
        assert secret not in ready.text


async def test_readyz_is_503_naming_a_store_that_is_down(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    await runtime_of(app).adapters.store.close()
    response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert "store" in problem["detail"]
    assert problem["checks"]["store"] != "ok"
    assert problem["checks"]["queue"] == "ok"
    # And requests that need the store answer 503 with Retry-After, not 500.
    users = await client.get("/v1/users")
    assert users.status_code == 503
    assert users.headers["retry-after"] == "1"
    assert users.json()["component"] == "store"


async def test_openapi_and_docs_are_served(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert {"/v1/users", "/v1/users/{user_id}", "/v1/jobs", "/v1/jobs/{job_id}"} <= set(
        spec["paths"]
    )
    assert (await client.get("/docs")).status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/nowhere", 404),
        ("DELETE", "/v1/users", 405),
        ("PUT", "/v1/jobs", 405),
        ("POST", "/healthz", 405),
    ],
)
async def test_framework_errors_are_problem_json(
    client: httpx.AsyncClient, method: str, path: str, status: int
) -> None:
    response = await client.request(method, path)
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert (problem["status"], problem["instance"]) == (status, path)
    assert problem["request_id"] == response.headers["x-request-id"]
    if status == 405:
        assert response.headers["allow"]


async def test_a_well_formed_request_id_is_echoed(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz", headers={"X-Request-ID": "abc-123.XYZ:7"})
    assert response.headers["x-request-id"] == "abc-123.XYZ:7"


@pytest.mark.parametrize("given", ["has space", "x" * 129, "<script>", "é"])
async def test_a_malformed_request_id_is_replaced(client: httpx.AsyncClient, given: str) -> None:
    response = await client.get("/healthz", headers={b"X-Request-ID": given.encode("utf-8")})
    assert response.headers["x-request-id"] != given
    assert len(response.headers["x-request-id"]) == 32


async def test_an_unexpected_error_is_a_500_problem_with_the_request_id(app: FastAPI) -> None:
    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/boom", headers={"X-Request-ID": "trace-me"})
    assert response.status_code == 500
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["x-request-id"] == "trace-me"
    assert response.json()["request_id"] == "trace-me"
    assert "secret internals" not in response.text


class UnreachableQueue:
    """A queue whose service refuses every message, as SQS does when it is unreachable."""

    async def open(self) -> None:
        return None

    async def ping(self) -> None:
        raise Unavailable("queue", "connection refused")

    async def close(self) -> None:
        return None

    async def send(self, message: JobMessage) -> None:
        raise Unavailable("queue", "connection refused")


async def test_when_the_queue_is_down_submissions_are_kept_and_sent_when_it_is_back(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    working = use_queue(app, UnreachableQueue())
    created = await client.post("/v1/users", json={"email": "ada@example.com", "name": "Ada"})
    # The user and its welcome job were written together: the request's answer stands.
    assert created.status_code == 201
    user_url = created.headers["location"]
    job = await client.post("/v1/jobs", json={"task": "users.welcome", "payload": {"user_id": "u"}})
    assert job.status_code == 202
    assert (await client.get(job.headers["location"])).json()["status"] == "queued"
    ready = await client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["queue"] == "unavailable"

    # The queue comes back; the sweeper sends what the requests could not.
    use_queue(app, working)
    later = datetime.now(UTC) + timedelta(minutes=1)  # past the outbox's grace
    report = await runtime_of(app).outbox.sweep(now=later)
    assert report.sent >= 2
    await drain(app)
    assert (await client.get(user_url)).json()["welcomed_at"] is not None
    assert (await client.get(job.headers["location"])).json()["status"] == "succeeded"


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/v1/users", "GET, HEAD, POST"),
        ("/v1/users/x", "DELETE, GET, HEAD, PATCH"),
        ("/v1/jobs", "POST"),
    ],
)
async def test_a_405_lists_every_method_the_path_serves(
    client: httpx.AsyncClient, path: str, allowed: str
) -> None:
    response = await client.request("PUT", path)
    assert response.status_code == 405
    assert response.headers["allow"] == allowed
