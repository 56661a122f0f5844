"""The real app over HTTP (httpx ASGITransport) on the embedded defaults, a fresh SQLite
file each."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from adapters.inprocess_queue import InProcessQueue
from adapters.ports import Queue
from api.app import create_app
from api.runtime import Runtime
from api.settings import load_settings


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[FastAPI]:
    application = create_app(load_settings(database_url=f"sqlite:///{tmp_path}/api.db"))
    async with application.router.lifespan_context(application):
        yield application


def runtime_of(app: FastAPI) -> Runtime:
    runtime: Runtime = app.state.runtime
    return runtime


def use_queue(app: FastAPI, queue: Queue) -> Queue:
    """Put `queue` where the app sends (the adapters and the outbox); returns the one it was."""
    runtime = runtime_of(app)
    previous, runtime.adapters.queue, runtime.outbox.queue = runtime.adapters.queue, queue, queue
    return previous


async def drain(app: FastAPI) -> None:
    """Wait until the in-process queue has handled everything sent so far."""
    queue = runtime_of(app).adapters.queue
    assert isinstance(queue, InProcessQueue)
    await queue.join()


async def new_user(client: httpx.AsyncClient, email: str = "ada@example.com") -> dict[str, object]:
    response = await client.post("/v1/users", json={"email": email, "name": "Ada"})
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body
