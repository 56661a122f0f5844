"""Shared fixtures: a clean environment for every test, and an HTTP client for the `app` fixture
a test module or directory provides."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

# Settings read these; a developer's shell must not leak into a test.
SETTING_NAMES = (
    "DATABASE_URL",
    "QUEUE_URL",
    "CACHE_URL",
    "RATE_LIMIT_URL",
    "RATE_LIMIT",
    "PROXY_HOPS",
    "STAGE",
    "CURSOR_SECRET",
    "LOG_LEVEL",
    "TELEMETRY",
    "PORT",
    "MAX_BODY_BYTES",
    "MAX_JOB_PAYLOAD_BYTES",
    "MAX_URL_BYTES",
    "MAX_HEADER_BYTES",
    "READ_TIMEOUT_SECONDS",
    "CORS_ORIGINS",
    "CORS_ALLOW_CREDENTIALS",
    "IDEMPOTENCY_TTL_SECONDS",
    "IDEMPOTENCY_LOCK_SECONDS",
    "AUTH",
    "JWT_JWKS_URL",
    "JWT_ISSUER",
    "JWT_AUDIENCE",
    "JWT_ALGORITHMS",
    "JWT_LEEWAY_SECONDS",
    "PUBSUB_PUSH_AUDIENCE",
    "PUBSUB_PUSH_SERVICE_ACCOUNT",
    # Cloud Run and Google SDK conventions the Cloud Run code reads
    "K_SERVICE",
    "GOOGLE_CLOUD_PROJECT",
    "GCLOUD_PROJECT",
    "GCP_PROJECT",
    "PUBSUB_EMULATOR_HOST",
    "GCE_METADATA_HOST",
)


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SETTING_NAMES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app over ASGI, no server: the module's or directory's own `app` fixture."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http
