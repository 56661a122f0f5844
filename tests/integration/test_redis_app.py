"""The whole app on a real Redis cache and limiter, and what happens when Redis dies mid-test:
reads fall back to the store, the limiter fails open, /readyz says degraded, not down."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis

from api.app import create_app
from api.settings import load_settings
from tests.api.conftest import drain, new_user
from tests.support.redis import RedisServer, throwaway_redis


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with throwaway_redis() as server:
        yield server


@pytest.fixture
async def app(tmp_path: Path, redis_server: RedisServer) -> AsyncIterator[FastAPI]:
    settings = load_settings(
        database_url=f"sqlite:///{tmp_path}/app.db",
        cache_url=redis_server.url,
        rate_limit="1000/minute",
        io_timeout=0.25,
    )
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


async def cached_keys(server: RedisServer) -> list[bytes]:
    admin = Redis.from_url(server.url)
    try:
        return sorted(await admin.keys("*user:*"))
    finally:
        await admin.aclose()


async def test_reads_go_through_redis_and_writes_invalidate(
    app: FastAPI, client: httpx.AsyncClient, redis_server: RedisServer
) -> None:
    user = await new_user(client)
    await drain(app)
    url = f"/v1/users/{user['id']}"
    first = await client.get(url)
    assert first.headers["ratelimit-limit"] == "1000"  # the limiter counted it in Redis
    assert len(await cached_keys(redis_server)) == 1
    assert (await client.get(url)).json() == first.json()
    await client.patch(url, json={"name": "Ada King"})
    assert await cached_keys(redis_server) == []
    assert (await client.get(url)).json()["name"] == "Ada King"


async def test_when_redis_dies_the_api_serves_from_the_store(
    app: FastAPI, client: httpx.AsyncClient, redis_server: RedisServer
) -> None:
    user = await new_user(client)
    await drain(app)
    url = f"/v1/users/{user['id']}"
    assert (await client.get(url)).status_code == 200
    redis_server.kill()

    served = await client.get(url)
    assert served.status_code == 200
    assert served.json()["id"] == user["id"]
    assert "ratelimit-limit" not in served.headers  # limiter failed open
    created = await client.post("/v1/users", json={"email": "bob@example.com", "name": "Bob"})
    assert created.status_code == 201

    ready = await client.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "degraded"
    assert body["checks"]["store"] == "ok"
    assert body["checks"]["cache"] != "ok"

    redis_server.start()
    # A successful readiness check closes the breaker: the cache is used again, no restart.
    assert (await client.get("/readyz")).json()["status"] == "ok"
    await client.get(url)
    assert len(await cached_keys(redis_server)) == 1
