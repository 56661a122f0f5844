"""RATE_LIMIT per client: 429 problem+json with Retry-After and RateLimit headers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from api.app import create_app
from api.settings import load_settings


@pytest.fixture
async def limited_app(tmp_path: Path) -> AsyncIterator[FastAPI]:
    settings = load_settings(database_url=f"sqlite:///{tmp_path}/rl.db", rate_limit="3/minute")
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


def client_from(app: FastAPI, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://t")


async def test_the_request_over_the_limit_is_429_with_retry_after(limited_app: FastAPI) -> None:
    async with client_from(limited_app, "198.51.100.1") as client:
        allowed = [await client.get("/v1/users") for _ in range(3)]
        assert [r.status_code for r in allowed] == [200, 200, 200]
        assert [r.headers["ratelimit-remaining"] for r in allowed] == ["2", "1", "0"]
        assert allowed[0].headers["ratelimit-limit"] == "3"
        assert allowed[0].headers["ratelimit-policy"] == "3;w=60"
        refused = await client.get("/v1/users")
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["ratelimit-remaining"] == "0"
    assert refused.json()["request_id"] == refused.headers["x-request-id"]


async def test_clients_are_counted_apart_and_probes_never_limited(limited_app: FastAPI) -> None:
    async with client_from(limited_app, "198.51.100.2") as first:
        for _ in range(3):
            await first.get("/v1/users")
        assert (await first.get("/v1/users")).status_code == 429
        assert (await first.get("/healthz")).status_code == 200
        assert (await first.get("/readyz")).status_code == 200
    async with client_from(limited_app, "198.51.100.3") as second:
        assert (await second.get("/v1/users")).status_code == 200


async def test_without_a_rate_limit_nothing_is_counted(client: httpx.AsyncClient) -> None:
    responses = [await client.get("/v1/users") for _ in range(10)]
    assert all(r.status_code == 200 for r in responses)
    assert "ratelimit-limit" not in responses[0].headers
