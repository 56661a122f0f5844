"""The whole app on PostgreSQL: concurrency enforced by the database, a pool of 5 under 200
concurrent requests, and a server that goes away and comes back."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg  # type: ignore[import-untyped, unused-ignore]
import httpx
import pytest
from fastapi import FastAPI

from api.app import create_app
from api.settings import load_settings
from tests.api.conftest import drain, new_user
from tests.support.postgres import ThrowawayServer, fresh_database, throwaway_server

pytestmark = pytest.mark.service("postgres")


async def app_on(url: str) -> FastAPI:
    return create_app(load_settings(database_url=url, db_pool_max=5, io_timeout=2.0))


@pytest.fixture
async def app() -> AsyncIterator[FastAPI]:
    async with fresh_database() as url:
        application = await app_on(url)
        async with application.router.lifespan_context(application):
            yield application


async def test_the_welcome_flow_runs_on_postgres(app: FastAPI, client: httpx.AsyncClient) -> None:
    user = await new_user(client)
    await drain(app)
    fetched = (await client.get(f"/v1/users/{user['id']}")).json()
    assert fetched["welcomed_at"] is not None


async def test_concurrent_patches_with_one_if_match_give_one_200_and_one_412(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    user = await new_user(client)
    await drain(app)
    url = f"/v1/users/{user['id']}"
    tag = (await client.get(url)).headers["etag"]
    responses = await asyncio.gather(
        *(client.patch(url, json={"name": f"n{i}"}, headers={"If-Match": tag}) for i in range(2))
    )
    assert sorted(r.status_code for r in responses) == [200, 412]


async def test_two_hundred_concurrent_requests_on_a_pool_of_five(
    client: httpx.AsyncClient,
) -> None:
    users = [await new_user(client, f"load{i}@example.com") for i in range(5)]
    requests = [
        client.get(f"/v1/users/{users[i % 5]['id']}")
        if i % 4
        else client.post("/v1/users", json={"email": f"c{i}@example.com", "name": "C"})
        for i in range(200)
    ]
    responses = await asyncio.gather(*requests)
    statuses = [r.status_code for r in responses]
    assert all(s < 500 for s in statuses), [r.text for r in responses if r.status_code >= 500][:3]
    assert statuses.count(201) == 50
    assert "too many connections" not in " ".join(r.text for r in responses)


@pytest.fixture(scope="module")
def cluster() -> Iterator[ThrowawayServer]:
    server = throwaway_server(max_connections=20)
    yield server
    server.remove()


async def test_postgres_down_is_503_and_the_app_recovers_without_restart(
    cluster: ThrowawayServer,
) -> None:
    if not cluster.is_running():
        cluster.start()
    async with fresh_database(cluster.url()) as url:
        app = await app_on(url)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                assert (await client.get("/v1/users")).status_code == 200
                cluster.stop()
                down = await client.get("/v1/users")
                assert down.status_code == 503
                assert down.headers["retry-after"]
                assert down.json()["component"] == "store"
                ready = await client.get("/readyz")
                assert ready.status_code == 503
                assert ready.json()["checks"]["store"] != "ok"

                cluster.start()
                assert (await client.get("/readyz")).status_code == 200
                assert (await client.get("/v1/users")).status_code == 200
            # fresh_database drops the database after the app has let go of it


async def test_a_store_outage_between_the_user_and_its_job_leaves_no_ghost_user() -> None:
    """PostgreSQL stops answering while the welcome job is written after the user (triggers
    that outlast the statement timeout): the client gets 503, and nothing was written. Its
    retry with the same Idempotency-Key gets its own user (201), and the retry after that the
    same answer replayed, never 409 "email taken" by a user nobody was told about."""
    async with fresh_database() as url:
        app = create_app(load_settings(database_url=url, io_timeout=1.0))
        async with app.router.lifespan_context(app):
            admin = await asyncpg.connect(url)
            try:
                # Writing the job, and undoing the user (what the code once did), hang.
                await admin.execute(
                    "CREATE FUNCTION stall() RETURNS trigger LANGUAGE plpgsql AS"
                    " $$ BEGIN PERFORM pg_sleep(3); RETURN COALESCE(NEW, OLD); END $$;"
                    " CREATE TRIGGER stall BEFORE INSERT ON jobs"
                    " FOR EACH ROW EXECUTE FUNCTION stall();"
                    " CREATE TRIGGER stall BEFORE DELETE ON users"
                    " FOR EACH ROW EXECUTE FUNCTION stall()"
                )
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                    ada = {"email": "ada@example.com", "name": "Ada"}
                    key = {"Idempotency-Key": "8d0f6e1c-retry-me"}
                    failed = await client.post("/v1/users", json=ada, headers=key)
                    assert failed.status_code == 503, failed.text
                    assert await admin.fetchval("SELECT count(*) FROM users") == 0
                    await admin.execute("DROP TRIGGER stall ON jobs; DROP TRIGGER stall ON users")

                    retried = await client.post("/v1/users", json=ada, headers=key)
                    assert retried.status_code == 201, retried.text
                    again = await client.post("/v1/users", json=ada, headers=key)
                    assert (again.status_code, again.json()) == (201, retried.json())
                    assert again.headers["idempotent-replayed"] == "true"
                    assert await admin.fetchval("SELECT count(*) FROM users") == 1
                    assert await admin.fetchval("SELECT count(*) FROM jobs") == 1
            finally:
                await admin.close()


async def test_lambdarun_dev_shows_the_database_url_without_its_password() -> None:
    async with fresh_database() as url:
        given = url.replace("://postgres@", "://postgres:hunter2@")
        assert "hunter2" in given  # trust authentication here: the password is not checked
        process = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "lambdarun"),
            "dev",
            "--no-reload",
            "--port",
            "0",
            env={**os.environ, "DATABASE_URL": given},
            stderr=asyncio.subprocess.PIPE,
        )
        assert process.stderr is not None
        shown = ""
        try:
            async with asyncio.timeout(60):
                while "DATABASE_URL=" not in shown:
                    line = await process.stderr.readline()
                    assert line, f"lambdarun dev ended early:\n{shown}"
                    shown += line.decode()
        finally:
            process.terminate()
            await process.wait()
    assert "hunter2" not in shown
    assert "postgres:***@" in shown
