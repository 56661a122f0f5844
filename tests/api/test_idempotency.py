"""Idempotency-Key on POST /v1/users and POST /v1/jobs over HTTP, on SQLite and on PostgreSQL:
a repeat gets the first answer without a second effect, another body is 422, a repeat while
the first runs is 409, concurrent duplicates have one effect, keys expire and are per caller."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from adapters.errors import Unavailable
from adapters.ports import Queue
from adapters.records import JobMessage
from api.app import create_app
from api.deps import get_now
from api.settings import load_settings
from tests.api.conftest import drain, runtime_of, use_queue
from tests.support.postgres import fresh_database

PROBLEM = "application/problem+json"
KEY = "Idempotency-Key"
ADA = {"email": "ada@example.com", "name": "Ada"}
GRACE = {"email": "grace@example.com", "name": "Grace"}


class SubjectFromHeader:
    """Stands in for authentication: puts `X-Test-Subject` in scope state as the subject."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        for name, value in scope.get("headers", ()):
            if name == b"x-test-subject":
                scope.setdefault("state", {})["subject"] = value.decode()
        await self.app(scope, receive, send)


@asynccontextmanager
async def database(kind: str, tmp_path: Path) -> AsyncIterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path}/idempotency.db"
        return
    async with fresh_database() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.service("postgres"))])
async def app(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[FastAPI]:
    async with database(request.param, tmp_path) as url:
        application = create_app(load_settings(database_url=url, io_timeout=5.0))
        application.add_middleware(SubjectFromHeader)
        async with application.router.lifespan_context(application):
            yield application


def client_for(app: FastAPI, address: str = "10.0.0.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(app) as http:
        yield http


async def user_count(app: FastAPI) -> int:
    return len((await runtime_of(app).adapters.store.list_users(limit=100)).items)


def key(value: str = "3f1c0c1e-7d8e-4f5a-9d0b-2a6c1e8f4b7d") -> dict[str, str]:
    return {KEY: value}


async def test_a_repeat_gets_the_first_answer_without_a_second_user(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    first = await client.post("/v1/users", json=ADA, headers=key())
    again = await client.post("/v1/users", json=ADA, headers=key())
    assert first.status_code == again.status_code == 201
    assert again.content == first.content
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["etag"] == first.headers["etag"]
    assert again.headers["content-type"] == "application/json"
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert again.headers["x-request-id"] != first.headers["x-request-id"]  # a request of its own
    assert await user_count(app) == 1


async def test_a_repeated_job_submission_enqueues_one_job(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    user = (await client.post("/v1/users", json=ADA)).json()
    await drain(app)
    body = {"task": "users.welcome", "payload": {"user_id": user["id"]}}
    first = await client.post("/v1/jobs", json=body, headers=key("job-1"))
    again = await client.post("/v1/jobs", json=body, headers=key("job-1"))
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["location"] == first.headers["location"]
    other = await client.post("/v1/jobs", json=body, headers=key("job-2"))
    assert other.json()["id"] != first.json()["id"]


async def test_the_same_key_with_another_body_is_422(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    assert (await client.post("/v1/users", json=ADA, headers=key())).status_code == 201
    reused = await client.post("/v1/users", json=GRACE, headers=key())
    assert reused.status_code == 422
    assert reused.headers["content-type"] == PROBLEM
    assert reused.json()["type"] == "urn:lambdarun:problem:idempotency-key-reused"
    # Another operation is another request too.
    on_jobs = await client.post("/v1/jobs", json={"task": "users.welcome"}, headers=key())
    assert on_jobs.status_code == 422
    assert on_jobs.json()["type"] == "urn:lambdarun:problem:idempotency-key-reused"
    assert await user_count(app) == 1


async def test_an_error_answer_is_kept_too(app: FastAPI, client: httpx.AsyncClient) -> None:
    assert (await client.post("/v1/users", json=ADA)).status_code == 201
    taken = await client.post("/v1/users", json=ADA, headers=key())
    assert taken.status_code == 409
    await runtime_of(app).adapters.store.delete_user(
        (await runtime_of(app).adapters.store.list_users(limit=1)).items[0].id
    )
    # The email is free now, but this key's answer was the conflict: it stays the answer.
    again = await client.post("/v1/users", json=ADA, headers=key())
    assert (again.status_code, again.content) == (409, taken.content)
    assert await user_count(app) == 0


class GatedQueue:
    """Holds every send until `gate` opens, so a request stays in progress."""

    def __init__(self, inner: Queue) -> None:
        self.inner = inner
        self.gate = asyncio.Event()
        self.waiting = asyncio.Event()

    async def open(self) -> None: ...
    async def ping(self) -> None: ...
    async def close(self) -> None: ...

    async def send(self, message: JobMessage) -> None:
        self.waiting.set()
        await self.gate.wait()
        await self.inner.send(message)


async def test_a_repeat_while_the_first_runs_is_409_with_retry_after(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    gated = GatedQueue(runtime_of(app).adapters.queue)
    use_queue(app, gated)
    try:
        first = asyncio.create_task(client.post("/v1/users", json=ADA, headers=key()))
        await asyncio.wait_for(gated.waiting.wait(), 5)
        busy = await client.post("/v1/users", json=ADA, headers=key())
        assert busy.status_code == 409
        assert busy.headers["retry-after"] == "1"
        assert busy.json()["type"] == "urn:lambdarun:problem:idempotency-in-progress"
        gated.gate.set()
        assert (await first).status_code == 201
    finally:
        use_queue(app, gated.inner)
    replay = await client.post("/v1/users", json=ADA, headers=key())
    assert (replay.status_code, replay.content) == (201, (await first).content)


async def test_concurrent_duplicates_have_exactly_one_effect(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    answers = await asyncio.gather(
        *(client.post("/v1/users", json=ADA, headers=key()) for _ in range(8))
    )
    created = [a for a in answers if a.status_code == 201]
    assert created, [a.status_code for a in answers]
    assert {a.content for a in created} == {created[0].content}
    assert all(a.status_code == 409 for a in answers if a.status_code != 201)
    assert await user_count(app) == 1


async def test_a_5xx_is_not_kept_so_the_retry_runs(app: FastAPI, client: httpx.AsyncClient) -> None:
    store = runtime_of(app).adapters.store
    real_create = store.create_user

    async def store_down(*args: object, **kwargs: object) -> Any:
        raise Unavailable("store", "store is down")

    store.create_user = store_down  # type: ignore[method-assign]
    try:
        failed = await client.post("/v1/users", json=ADA, headers=key())
    finally:
        store.create_user = real_create  # type: ignore[method-assign]
    assert failed.status_code == 503
    retried = await client.post("/v1/users", json=ADA, headers=key())
    assert retried.status_code == 201
    assert "idempotent-replayed" not in retried.headers
    assert await user_count(app) == 1


def at(moment: datetime) -> Callable[[], Any]:
    async def now() -> datetime:
        return moment

    return now


async def test_a_key_expires_after_its_time_to_live(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    start = datetime.now(UTC)
    app.dependency_overrides[get_now] = at(start)
    assert (await client.post("/v1/users", json=ADA, headers=key())).status_code == 201
    app.dependency_overrides[get_now] = at(start + timedelta(hours=23, minutes=59))
    assert (await client.post("/v1/users", json=GRACE, headers=key())).status_code == 422
    app.dependency_overrides[get_now] = at(start + timedelta(hours=24, seconds=1))
    later = await client.post("/v1/users", json=GRACE, headers=key())
    assert later.status_code == 201
    assert "idempotent-replayed" not in later.headers
    assert await user_count(app) == 2


async def test_keys_belong_to_one_caller(app: FastAPI, client: httpx.AsyncClient) -> None:
    assert (await client.post("/v1/users", json=ADA, headers=key())).status_code == 201
    async with client_for(app, "10.0.0.2") as elsewhere:
        # Another address, the same key: another key, so no 422 and no replay.
        theirs = await elsewhere.post("/v1/users", json=GRACE, headers=key())
        assert theirs.status_code == 201
    # With a subject, the subject decides, whatever the address.
    anne = {**key("shared"), "x-test-subject": "anne"}
    bob = {**key("shared"), "x-test-subject": "bob"}
    mine = await client.post("/v1/users", json={"email": "a@x.io", "name": "A"}, headers=anne)
    assert mine.status_code == 201
    his = await client.post("/v1/users", json={"email": "b@x.io", "name": "B"}, headers=bob)
    assert his.status_code == 201
    async with client_for(app, "10.0.0.3") as moved:
        replay = await moved.post("/v1/users", json={"email": "a@x.io", "name": "A"}, headers=anne)
        assert (replay.status_code, replay.content) == (201, mine.content)
    assert await user_count(app) == 4


async def test_without_a_key_nothing_changes(app: FastAPI, client: httpx.AsyncClient) -> None:
    assert (await client.post("/v1/users", json=ADA)).status_code == 201
    again = await client.post("/v1/users", json=ADA)
    assert again.status_code == 409  # the email is taken: the request really ran again
    assert again.json()["type"] == "urn:lambdarun:problem:conflict"


@pytest.mark.parametrize("value", ["", "x" * 256, "has space", "tab\there"])
async def test_a_malformed_key_is_refused(client: httpx.AsyncClient, value: str) -> None:
    response = await client.post("/v1/users", json=ADA, headers={KEY: value})
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["header", KEY]


async def test_the_header_is_documented_on_both_posts(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    for path in ("/v1/users", "/v1/jobs"):
        names = [p["name"] for p in paths[path]["post"].get("parameters", [])]
        assert KEY in names, path
        assert {"409", "422"} <= set(paths[path]["post"]["responses"])


async def test_a_replay_carries_the_repeat_s_own_cors_headers(tmp_path: Path) -> None:
    first, second = "https://a.example.com", "https://b.example.com"
    settings = load_settings(
        database_url=f"sqlite:///{tmp_path}/cors.db", cors_origins=f"{first},{second}"
    )
    application = create_app(settings)
    async with application.router.lifespan_context(application), client_for(application) as http:
        created = await http.post("/v1/users", json=ADA, headers={**key(), "origin": first})
        assert created.headers["access-control-allow-origin"] == first
        replay = await http.post("/v1/users", json=ADA, headers={**key(), "origin": second})
        assert replay.headers["idempotent-replayed"] == "true"
        assert replay.headers.get_list("access-control-allow-origin") == [second]
        assert replay.headers.get_list("x-content-type-options") == ["nosniff"]
        assert replay.headers.get("vary") == created.headers.get("vary")  # not Origin twice
