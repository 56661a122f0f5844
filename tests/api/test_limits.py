"""Abuse limits over HTTP: body (413, counted while it streams), URL (414), headers (431), job
payload (413, nothing enqueued); CORS from settings; security headers on every answer. The
streaming limit is also checked on a real uvicorn server in a subprocess (a chunked upload)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from adapters.memory_store import MemoryStore
from adapters.records import JobRecord
from api.app import create_app
from api.jobs.outbox import Outbox
from api.jobs.submit import PayloadTooLarge, submit_job
from api.settings import SettingsError, load_settings
from api.tasks.registry import TaskContext, TaskRegistry
from tests.api.conftest import drain, runtime_of
from tests.support.gcp_events import running, server_env, start_command
from tests.support.net import free_port
from tests.support.queues import RecordingQueue

PROBLEM = "application/problem+json"
LIMIT = 2048  # MAX_BODY_BYTES in these tests
USER = {"email": "ada@example.com", "name": "Ada"}


def padded(size: int, data: dict[str, str] = USER) -> bytes:
    """`data` as JSON, padded with whitespace (still valid JSON) to exactly `size` bytes."""
    body = json.dumps(data).encode()
    return body + b" " * (size - len(body))


def chunks(body: bytes, size: int = 256) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


class Counted:
    """A streamed request body (no Content-Length) that counts the chunks the app pulled."""

    def __init__(self, body: bytes, size: int = 256) -> None:
        self.parts = list(chunks(body, size))
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for part in self.parts:
            self.pulled += 1
            yield part


@asynccontextmanager
async def serving(
    tmp_path: Path, registry: TaskRegistry | None = None, **settings: Any
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    values = {"database_url": f"sqlite:///{tmp_path}/limits.db", **settings}
    app = create_app(load_settings(**values), registry=registry)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as client,
    ):
        yield app, client


@pytest.fixture
async def small(tmp_path: Path) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    async with serving(tmp_path, max_body_bytes=LIMIT) as served:
        yield served


async def user_count(app: FastAPI) -> int:
    return len((await runtime_of(app).adapters.store.list_users(limit=100)).items)


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


# ---- request body -------------------------------------------------------------------------


@pytest.mark.parametrize("streamed", [False, True], ids=["content-length", "chunked"])
async def test_a_body_of_exactly_the_limit_is_accepted(
    small: tuple[FastAPI, httpx.AsyncClient], streamed: bool
) -> None:
    _, client = small
    body = padded(LIMIT)
    content: Any = Counted(body) if streamed else body
    response = await client.post(
        "/v1/users", content=content, headers={"content-type": "application/json"}
    )
    assert response.status_code == 201, response.text


async def test_a_body_over_the_limit_with_content_length_is_413_before_it_is_read(
    small: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, client = small
    response = await client.post(
        "/v1/users", content=padded(LIMIT + 1), headers={"content-type": "application/json"}
    )
    problem = assert_problem(response, 413)
    assert str(LIMIT) in problem["detail"]
    assert await user_count(app) == 0


async def test_a_chunked_body_over_the_limit_is_cut_off_while_it_streams(
    small: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, client = small
    body = Counted(padded(LIMIT * 4), size=256)
    response = await client.post(
        "/v1/users", content=body, headers={"content-type": "application/json"}
    )
    assert_problem(response, 413)
    # Stopped at the first chunk past the limit, not at the end of the upload.
    assert body.pulled == LIMIT // 256 + 1 < len(body.parts)
    assert await user_count(app) == 0


async def test_a_lying_content_length_does_not_lift_the_limit(
    small: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    # Under Mangum the body comes from the event, whatever Content-Length claims.
    app = small[0]
    body = padded(LIMIT + 100)
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict[str, Any]] = []
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/users",
        "raw_path": b"/v1/users",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"content-type", b"application/json"),
                    (b"content-length", b"10")],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
        "state": {},
    }  # fmt: skip

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    assert sent[0]["status"] == 413
    assert dict(sent[0]["headers"])[b"content-type"] == PROBLEM.encode()


# ---- URL and headers ----------------------------------------------------------------------


async def test_an_over_long_path_is_414(small: tuple[FastAPI, httpx.AsyncClient]) -> None:
    _, client = small
    assert (await client.get("/v1/users/" + "x" * 8000)).status_code == 404  # within 8 KiB
    problem = assert_problem(await client.get("/v1/users/" + "x" * 8200), 414)
    assert "8192" in problem["detail"]


async def test_an_over_long_query_string_is_414(small: tuple[FastAPI, httpx.AsyncClient]) -> None:
    _, client = small
    assert_problem(await client.get("/v1/users", params={"cursor": "c" * 9000}), 414)


async def test_over_large_headers_are_431(small: tuple[FastAPI, httpx.AsyncClient]) -> None:
    _, client = small
    assert (await client.get("/healthz", headers={"x-filler": "f" * 15000})).status_code == 200
    problem = assert_problem(await client.get("/healthz", headers={"x-filler": "f" * 17000}), 431)
    assert "16384" in problem["detail"]
    many = {f"x-h{i}": "v" * 100 for i in range(200)}  # no single one is long
    assert_problem(await client.get("/healthz", headers=many), 431)


# ---- job payload --------------------------------------------------------------------------


class Blob(BaseModel):
    data: str


def blob_registry(ran: list[int]) -> TaskRegistry:
    registry = TaskRegistry()

    @registry.register("blob.store")
    async def store_blob(payload: Blob, ctx: TaskContext) -> None:
        ran.append(len(payload.data))

    @registry.register("users.welcome")
    async def welcome(payload: Blob, ctx: TaskContext) -> None:
        return None

    return registry


def blob_of_size(size: int) -> dict[str, str]:
    """A payload whose compact JSON is exactly `size` bytes."""
    overhead = len(json.dumps({"data": ""}, separators=(",", ":")))
    return {"data": "b" * (size - overhead)}


async def test_an_oversize_job_payload_is_413_and_nothing_is_enqueued(tmp_path: Path) -> None:
    ran: list[int] = []
    async with serving(tmp_path, registry=blob_registry(ran), max_job_payload_bytes=1000) as (
        app,
        client,
    ):
        within = await client.post(
            "/v1/jobs", json={"task": "blob.store", "payload": blob_of_size(1000)}
        )
        assert within.status_code == 202, within.text
        over = await client.post(
            "/v1/jobs", json={"task": "blob.store", "payload": blob_of_size(1001)}
        )
        problem = assert_problem(over, 413)
        assert problem["type"] == "urn:lambdarun:problem:payload-too-large"
        assert problem["limit"] == 1000
        await drain(app)
    assert ran == [1000 - len('{"data":""}')]  # only the job within the limit ever ran


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.created: list[str] = []

    async def create_job(self, job: JobRecord) -> JobRecord:
        self.created.append(job.id)
        return await super().create_job(job)


async def test_submit_job_refuses_an_oversize_payload_before_recording_or_sending() -> None:
    store, queue = CountingStore(), RecordingQueue()
    outbox = Outbox(store=store, queue=queue, grace=timedelta(0), resend_after=timedelta(0))
    with pytest.raises(PayloadTooLarge) as refused:
        await submit_job(
            store=store,
            outbox=outbox,
            registry=blob_registry([]),
            task="blob.store",
            payload=blob_of_size(501),
            now=datetime.now(UTC),
            max_payload_bytes=500,
        )
    assert (refused.value.size, refused.value.limit) == (501, 500)
    assert store.created == []
    assert queue.sent == []


# ---- CORS ---------------------------------------------------------------------------------

ORIGIN = "https://app.example.com"


def preflight(origin: str, headers: str = "content-type,idempotency-key") -> dict[str, str]:
    return {
        "origin": origin,
        "access-control-request-method": "POST",
        "access-control-request-headers": headers,
    }


async def test_cors_preflight_is_answered_for_a_configured_origin_only(tmp_path: Path) -> None:
    async with serving(tmp_path, cors_origins=f"{ORIGIN}, https://admin.example.com") as (_, c):
        allowed = await c.options("/v1/users", headers=preflight(ORIGIN))
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == ORIGIN
        assert "POST" in allowed.headers["access-control-allow-methods"]
        assert "idempotency-key" in allowed.headers["access-control-allow-headers"].lower()
        assert "access-control-allow-credentials" not in allowed.headers
        assert allowed.headers["x-content-type-options"] == "nosniff"

        denied = await c.options("/v1/users", headers=preflight("https://evil.example"))
        assert denied.status_code == 400
        assert "access-control-allow-origin" not in denied.headers

        simple = await c.get("/v1/users", headers={"origin": ORIGIN})
        assert simple.headers["access-control-allow-origin"] == ORIGIN
        assert "location" in simple.headers["access-control-expose-headers"].lower()
        other = await c.get("/v1/users", headers={"origin": "https://evil.example"})
        assert other.status_code == 200
        assert "access-control-allow-origin" not in other.headers


async def test_cors_with_credentials_names_the_origin(tmp_path: Path) -> None:
    async with serving(tmp_path, cors_origins=ORIGIN, cors_allow_credentials=True) as (_, c):
        allowed = await c.options("/v1/users", headers=preflight(ORIGIN))
        assert allowed.headers["access-control-allow-origin"] == ORIGIN
        assert allowed.headers["access-control-allow-credentials"] == "true"


async def test_without_cors_origins_there_is_no_cors_at_all(
    client: httpx.AsyncClient,
) -> None:
    response = await client.options("/v1/users", headers=preflight(ORIGIN))
    assert response.status_code == 405
    assert "access-control-allow-origin" not in response.headers
    simple = await client.get("/v1/users", headers={"origin": ORIGIN})
    assert "access-control-allow-origin" not in simple.headers


def test_any_origin_with_credentials_is_refused_at_start_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CORS_ORIGINS", "https://a.example, *")
    monkeypatch.setenv("CORS_ALLOW_CREDENTIALS", "true")
    with pytest.raises(SettingsError, match="CORS_ALLOW_CREDENTIALS") as refused:
        create_app()
    assert "CORS_ORIGINS" in str(refused.value)
    monkeypatch.setenv("CORS_ALLOW_CREDENTIALS", "false")
    assert load_settings().cors_origin_list == ("https://a.example", "*")


@pytest.mark.parametrize("origin", ["https://app.example.com/", "app.example.com", "https://a/b"])
def test_a_cors_origin_that_no_browser_sends_is_refused(origin: str) -> None:
    with pytest.raises(SettingsError, match="CORS_ORIGINS"):
        load_settings(cors_origins=origin)


# ---- security headers ---------------------------------------------------------------------

API_CSP = "default-src 'none'; frame-ancestors 'none'"


def assert_secured(response: httpx.Response, *, hsts: bool = False) -> None:
    headers = response.headers
    assert headers["x-content-type-options"] == "nosniff", response.status_code
    assert "referrer-policy" not in headers  # JSON has no links to leak a referrer through
    assert headers["content-security-policy"] == API_CSP
    assert ("strict-transport-security" in headers) is hsts
    problem = headers.get("content-type") == PROBLEM
    assert (headers.get("cache-control") == "no-store") is problem, response.status_code


async def test_every_kind_of_answer_carries_the_security_headers(tmp_path: Path) -> None:
    async with serving(tmp_path) as (app, client):

        async def boom() -> None:
            raise RuntimeError("unexpected")

        app.add_api_route("/boom", boom)
        assert_secured(await client.get("/healthz"))  # 200
        created = await client.post("/v1/users", json=USER)
        assert_secured(created)  # 201
        location = created.headers["location"]
        not_modified = await client.get(
            location, headers={"if-none-match": created.headers["etag"]}
        )
        assert not_modified.status_code == 304
        assert_secured(not_modified)
        assert_secured(await client.post("/v1/users", json={"email": "x"}))  # 422
        assert_secured(await client.get("/nowhere"))  # 404
        assert_secured(await client.post("/v1/users", content=padded(70000)))  # 413 (middleware)
        assert_secured(await client.get("/healthz", headers={"x-big": "b" * 20000}))  # 431
        unhandled = await client.get("/boom")
        assert unhandled.status_code == 500
        assert_secured(unhandled)
        deleted = await client.delete(location)
        assert deleted.status_code == 204
        assert_secured(deleted)
        await runtime_of(app).adapters.store.close()
        down = await client.get(location)
        assert down.status_code == 503
        assert_secured(down)


async def test_hsts_is_sent_outside_local_only(tmp_path: Path) -> None:
    async with serving(tmp_path, stage="test") as (_, client):
        ok = await client.get("/healthz")
        assert_secured(ok, hsts=True)
        assert ok.headers["strict-transport-security"] == "max-age=31536000"
        assert_secured(await client.get("/nowhere"), hsts=True)


async def test_the_docs_pages_get_a_policy_that_lets_swagger_ui_load(
    client: httpx.AsyncClient,
) -> None:
    for path in ("/docs", "/redoc"):
        page = await client.get(path)
        assert page.status_code == 200
        policy = page.headers["content-security-policy"]
        assert "script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net" in policy
        assert "frame-ancestors 'none'" in policy
        assert page.headers["referrer-policy"] == "no-referrer"  # an HTML page has links
    schema = await client.get("/openapi.json")
    assert schema.headers["content-security-policy"] == API_CSP


async def test_the_limits_are_documented_in_openapi(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    for path, method in (("/v1/users", "post"), ("/v1/jobs", "post"), ("/healthz", "get")):
        responses = paths[path][method]["responses"]
        assert {"413", "414", "431"} <= set(responses), (path, sorted(responses))


# ---- a real server ------------------------------------------------------------------------


def test_uvicorn_cuts_a_chunked_upload_off_at_the_limit(tmp_path: Path) -> None:
    port = free_port()
    env = server_env(
        port, DATABASE_URL=f"sqlite:///{tmp_path}/server.db", MAX_BODY_BYTES=str(LIMIT)
    )
    log = tmp_path / "server.log"
    with (
        running(start_command("api"), port=port, env=env, log_path=log) as server,
        httpx.Client(base_url=server.base_url, timeout=10) as http,
    ):
        json_type = {"content-type": "application/json"}
        # An iterator body goes out chunked: no Content-Length at all.
        within = http.post("/v1/users", content=chunks(padded(LIMIT)), headers=json_type)
        assert within.status_code == 201, within.text
        assert within.request.headers.get("transfer-encoding") == "chunked"
        over = http.post("/v1/users", content=chunks(padded(LIMIT + 1)), headers=json_type)
        assert_problem(over, 413)
        assert "content-length" not in over.request.headers
        declared = http.post("/v1/users", content=padded(LIMIT + 1), headers=json_type)
        assert_problem(declared, 413)
        # httptools itself has no header limit: this one is ours.
        assert_problem(http.get("/healthz", headers={"x-big": "b" * 20000}), 431)
        assert http.get("/v1/users").json()["items"][0]["email"] == USER["email"]
