"""/v1/jobs over HTTP, and the in-process worker behind them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from adapters.inprocess_queue import InProcessQueue
from adapters.sqlite_store import SqliteStore
from api.app import create_app
from api.ids import new_id
from api.settings import load_settings
from api.tasks.registry import TaskContext, TaskRegistry
from tests.api.conftest import drain, new_user, runtime_of

PROBLEM = "application/problem+json"


async def test_a_job_is_accepted_and_runs_to_success(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    user = await new_user(client)
    await drain(app)  # the welcome its creation enqueued has run
    response = await client.post(
        "/v1/jobs", json={"task": "users.welcome", "payload": {"user_id": user["id"]}}
    )
    assert response.status_code == 202
    job = response.json()
    assert job["status"] == "queued"
    assert response.headers["location"] == f"/v1/jobs/{job['id']}"
    await drain(app)
    done = (await client.get(response.headers["location"])).json()
    assert done["status"] == "succeeded"
    assert done["attempts"] == 1
    assert done["started_at"] is not None
    assert done["finished_at"] is not None
    # The user had been welcomed already: this second welcome changed nothing.
    assert done["result"]["already"] is True


async def test_an_unknown_task_is_422_naming_the_known_ones(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/jobs", json={"task": "nope", "payload": {}})
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    error = response.json()["errors"][0]
    assert error["loc"] == ["body", "task"]
    assert "users.welcome" in error["msg"]


@pytest.mark.parametrize(
    ("payload", "loc"),
    [
        ({}, ["body", "payload", "user_id"]),
        ({"user_id": 5}, ["body", "payload", "user_id"]),
        ({"user_id": ["x"]}, ["body", "payload", "user_id"]),
    ],
)
async def test_a_payload_that_does_not_fit_the_task_is_422(
    client: httpx.AsyncClient, payload: dict[str, object], loc: list[str]
) -> None:
    response = await client.post("/v1/jobs", json={"task": "users.welcome", "payload": payload})
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == loc


@pytest.mark.parametrize(
    "body",
    [
        {"task": 5, "payload": {}},
        {"task": "users.welcome", "payload": "not an object"},
        {"task": "users.welcome", "payload": {}, "extra": 1},
        {"payload": {}},
        {"task": "x" * 101},
    ],
)
async def test_malformed_job_requests_are_422(client: httpx.AsyncClient, body: object) -> None:
    response = await client.post("/v1/jobs", json=body)
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM


@pytest.mark.parametrize("job_id", ["nope", "x" * 3000, new_id()])
async def test_an_unknown_job_is_404(client: httpx.AsyncClient, job_id: str) -> None:
    response = await client.get(f"/v1/jobs/{job_id}")
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM


class Flaky(BaseModel):
    fail_times: int


@pytest.fixture
async def flaky_app(tmp_path: Path) -> AsyncIterator[FastAPI]:
    """An app with extra tasks: one failing a given number of times, one always failing."""
    registry = TaskRegistry()
    calls: dict[str, int] = {}

    @registry.register("test.flaky")
    async def flaky(payload: Flaky, ctx: TaskContext) -> dict[str, object]:
        calls[ctx.job_id] = calls.get(ctx.job_id, 0) + 1
        if calls[ctx.job_id] <= payload.fail_times:
            raise RuntimeError(f"failure {calls[ctx.job_id]}")
        return {"calls": calls[ctx.job_id]}

    settings = load_settings(database_url=f"sqlite:///{tmp_path}/flaky.db", job_max_attempts=3)
    application = create_app(settings, registry=registry)
    queue = runtime_of(application).adapters.queue
    assert isinstance(queue, InProcessQueue)
    queue.retry_delay = 0.01
    async with application.router.lifespan_context(application):
        yield application


async def test_a_failing_job_is_retried_until_it_succeeds(flaky_app: FastAPI) -> None:
    transport = httpx.ASGITransport(app=flaky_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.post(
            "/v1/jobs", json={"task": "test.flaky", "payload": {"fail_times": 2}}
        )
        await drain(flaky_app)
        job = (await client.get(response.headers["location"])).json()
    assert (job["status"], job["attempts"], job["result"]) == ("succeeded", 3, {"calls": 3})


async def test_a_job_that_keeps_failing_ends_failed_and_dead_lettered(flaky_app: FastAPI) -> None:
    transport = httpx.ASGITransport(app=flaky_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.post(
            "/v1/jobs", json={"task": "test.flaky", "payload": {"fail_times": 99}}
        )
        await drain(flaky_app)
        job = (await client.get(response.headers["location"])).json()
    assert (job["status"], job["attempts"]) == ("failed", 3)
    assert job["error"] == "RuntimeError: failure 3"
    queue = runtime_of(flaky_app).adapters.queue
    assert isinstance(queue, InProcessQueue)
    assert [m.job_id for m in queue.dead_letters] == [job["id"]]


@pytest.mark.parametrize(
    "body",
    [
        r'{"task": "users.welcome", "payload": {"user_id": "a\u0000b"}}',
        r'{"task": "users.welcome", "payload": {"user_id": "\ud800"}}',
        r'{"task": "users.welcome", "payload": {"user_id": "u", "note": ["ok", "\udfff"]}}',
        r'{"task": "users.welcome", "payload": {"user_id": "u", "\u0000": "x"}}',
    ],
    ids=["nul", "lone-surrogate", "nested-surrogate", "nul-in-a-key"],
)
async def test_text_no_store_can_keep_is_422_and_nothing_is_recorded(
    app: FastAPI, client: httpx.AsyncClient, body: str
) -> None:
    """Valid JSON, but PostgreSQL refuses a NUL and no UTF-8 encodes a lone surrogate: refused
    before anything is recorded or sent, on every store alike (it never reaches one)."""
    response = await client.post(
        "/v1/jobs", content=body.encode(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    [error] = response.json()["errors"]
    assert error["loc"] == ["body", "payload"]
    assert "cannot be stored" in error["msg"]
    store = runtime_of(app).adapters.store
    assert isinstance(store, SqliteStore)
    assert await store._fetchall("SELECT id FROM jobs") == []
