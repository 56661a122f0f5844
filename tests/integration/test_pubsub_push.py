"""POST /internal/pubsub/push: push envelopes authenticated by Google-signed OIDC tokens (here
signed by our own RSA key, whose certificate a local endpoint serves in Google's format), run
through the shared job runner, answered so Pub/Sub acks, retries or dead-letters."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from adapters.pubsub_push_verifier import PubSubPushVerifier
from adapters.records import JobMessage, JobRecord, JobStatus
from api.app import create_app
from api.ids import new_id
from api.jobs.runner import utcnow
from api.pubsub_push import PUSH_PATH, build_router
from api.runtime import Runtime
from api.settings import load_settings
from api.tasks.registry import ScheduleContext, TaskContext, TaskRegistry, TaskResult
from tests.support.gcp_events import (
    PUSH_ACCOUNT,
    GoogleKeys,
    certs_server,
    pubsub_message,
    push_envelope,
)

ROOT = Path(__file__).resolve().parents[2]
AUDIENCE = "https://api.example.run.app/internal/pubsub/push"
PROBLEM_JSON = "application/problem+json"


class Note(BaseModel):
    text: str


@dataclass
class Pushing:
    client: httpx.AsyncClient
    runtime: Runtime
    keys: GoogleKeys
    ran: list[str]
    certs_requests: list[str]

    async def job(self, task: str = "test.note") -> JobMessage:
        now = utcnow()
        record = JobRecord(
            id=new_id(),
            task=task,
            payload={"text": "hi"},
            status=JobStatus.QUEUED,
            created_at=now,
            updated_at=now,
        )
        await self.runtime.adapters.store.create_job(record)
        return JobMessage(job_id=record.id, task=task, payload=record.payload)

    async def push(
        self, body: object, *, token: str | None = None, authorization: str | None = None
    ) -> httpx.Response:
        headers = {"Authorization": authorization or f"Bearer {token or self.keys.token()}"}
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
        return await self.client.post(PUSH_PATH, content=content, headers=headers)


def registry_with(ran: list[str]) -> TaskRegistry:
    registry = TaskRegistry()

    @registry.register("test.note")
    async def note(payload: Note, ctx: TaskContext) -> TaskResult:
        ran.append(ctx.job_id)
        return {"noted": payload.text}

    @registry.register("test.broken")
    async def broken(payload: Note, ctx: TaskContext) -> TaskResult:
        raise RuntimeError("broken on purpose")

    @registry.schedule("rate(1 hour)", name="test.hourly")
    async def hourly(ctx: ScheduleContext) -> TaskResult:
        ran.append(f"hourly at {ctx.scheduled_for.isoformat()}")
        return None

    return registry


@pytest.fixture(scope="module")
def keys() -> GoogleKeys:
    return GoogleKeys()


@pytest.fixture
def certs(keys: GoogleKeys) -> Iterator[tuple[str, list[str]]]:
    with certs_server(keys) as served:
        yield served


@pytest.fixture
async def pushing(
    tmp_path: Path, keys: GoogleKeys, certs: tuple[str, list[str]]
) -> AsyncIterator[Pushing]:
    ran: list[str] = []
    app: FastAPI = create_app(
        load_settings(database_url=f"sqlite:///{tmp_path}/push.db"),
        registry=registry_with(ran),
        configure_logs=False,
    )
    verifier = PubSubPushVerifier(
        audience=AUDIENCE, service_account=PUSH_ACCOUNT, certs_url=certs[0]
    )
    app.include_router(build_router(verifier))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield Pushing(http, app.state.runtime, keys, ran, certs[1])
    await verifier.close()


async def test_a_pushed_job_runs_and_is_acknowledged_with_204(pushing: Pushing) -> None:
    message = await pushing.job()
    response = await pushing.push(push_envelope(pubsub_message(message)))
    assert response.status_code == 204, response.text
    assert pushing.ran == [message.job_id]
    job = await pushing.runtime.adapters.store.get_job(message.job_id)
    assert job is not None
    assert (job.status, job.result) == (JobStatus.SUCCEEDED, {"noted": "hi"})


async def test_a_duplicate_push_is_acknowledged_without_running_again(pushing: Pushing) -> None:
    message = await pushing.job()
    envelope = push_envelope(pubsub_message(message, message_id="42"))
    assert (await pushing.push(envelope)).status_code == 204
    assert (await pushing.push(envelope)).status_code == 204
    assert pushing.ran == [message.job_id]


async def test_googles_keys_are_fetched_once_and_kept(pushing: Pushing) -> None:
    for _ in range(3):
        message = await pushing.job()
        assert (await pushing.push(push_envelope(pubsub_message(message)))).status_code == 204
    assert pushing.certs_requests == ["/oauth2/v1/certs"]


async def test_a_failed_job_answers_500_so_pubsub_redelivers(pushing: Pushing) -> None:
    message = await pushing.job("test.broken")
    response = await pushing.push(push_envelope(pubsub_message(message)))
    assert response.status_code == 500
    assert response.headers["content-type"] == PROBLEM_JSON
    body = response.json()
    assert (body["type"], body["job_id"]) == ("urn:lambdarun:problem:job-retry", message.job_id)
    job = await pushing.runtime.adapters.store.get_job(message.job_id)
    assert job is not None
    assert job.status is JobStatus.FAILED
    assert "broken on purpose" in (job.error or "")


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        {"subscription": "projects/p/subscriptions/s"},  # no message
        {"message": {"data": "%%% not base64 %%%"}},
        {"message": {"data": "bm90IGpzb24="}},  # base64 of "not json"
        {"message": {"data": "e30="}},  # base64 of "{}": no version
    ],
    ids=["not-json", "no-message", "not-base64", "data-not-json", "not-a-job-message"],
)
async def test_an_unusable_message_answers_400(pushing: Pushing, body: object) -> None:
    response = await pushing.push(body)
    assert response.status_code == 400
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["type"] == "urn:lambdarun:problem:poison-message"


def claims_cases() -> list[Any]:
    other = GoogleKeys()
    return [
        pytest.param({"aud": "https://someone-else.example"}, 401, id="wrong-audience"),
        pytest.param({"iss": "https://evil.example"}, 401, id="wrong-issuer"),
        pytest.param({"exp": 1_000_000_000, "iat": 999_996_400}, 401, id="expired"),
        pytest.param({"email": "intruder@example.iam.gserviceaccount.com"}, 403, id="other-sa"),
        pytest.param({"email_verified": False}, 403, id="email-unverified"),
        pytest.param({"email": None}, 403, id="no-email"),
        pytest.param({"__sign_with__": other}, 401, id="signed-by-another-key"),
    ]


@pytest.mark.parametrize(("claims", "status"), claims_cases())
async def test_a_bad_token_is_refused(
    pushing: Pushing, claims: dict[str, Any], status: int
) -> None:
    message = await pushing.job()
    signer = claims.pop("__sign_with__", pushing.keys)
    if signer is not pushing.keys:
        signer.key_id = pushing.keys.key_id  # same key id, wrong key: the signature fails
    response = await pushing.push(
        push_envelope(pubsub_message(message)), token=signer.token(**claims)
    )
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    assert pushing.ran == []


@pytest.mark.parametrize(
    "authorization", ["", "Bearer", "Basic dXNlcjpwYXNz", "Bearer not.a.jwt", "Bearer x.y.z"]
)
async def test_a_missing_or_malformed_token_is_401(pushing: Pushing, authorization: str) -> None:
    message = await pushing.job()
    response = await pushing.client.post(
        PUSH_PATH,
        json=push_envelope(pubsub_message(message)),
        headers={"Authorization": authorization} if authorization else {},
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert pushing.ran == []


async def test_the_body_is_not_read_before_the_token_is_checked(pushing: Pushing) -> None:
    response = await pushing.client.post(PUSH_PATH, content=b"not json")
    assert response.status_code == 401


async def test_unreachable_google_keys_answer_503_so_pubsub_retries(
    tmp_path: Path, keys: GoogleKeys
) -> None:
    with certs_server(keys) as (url, _):
        pass  # served, then stopped: the port now refuses connections
    app = create_app(
        load_settings(database_url=f"sqlite:///{tmp_path}/push.db"), configure_logs=False
    )
    verifier = PubSubPushVerifier(audience=AUDIENCE, certs_url=url, timeout=0.5)
    app.include_router(build_router(verifier))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            response = await http.post(
                PUSH_PATH,
                json=push_envelope(pubsub_message(b"{}")),
                headers={"Authorization": f"Bearer {keys.token()}"},
            )
    assert response.status_code == 503
    assert response.json()["component"] == "pubsub-push"


async def test_the_endpoint_is_absent_unless_configured(tmp_path: Path) -> None:
    app = create_app(load_settings(database_url=f"sqlite:///{tmp_path}/a.db"), configure_logs=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            assert (await http.post(PUSH_PATH, json={})).status_code == 404


async def test_settings_turn_the_endpoint_on_with_verification(tmp_path: Path) -> None:
    settings = load_settings(
        database_url=f"sqlite:///{tmp_path}/a.db", pubsub_push_audience=AUDIENCE
    )
    app = create_app(settings, configure_logs=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            response = await http.post(PUSH_PATH, json={})
    assert response.status_code == 401


PROBE = """
import sys
at_startup = set(sys.modules)  # .pth files may import the google namespace package
import asyncio, json
import httpx
from api.app import create_app
from api.settings import load_settings

app = create_app(load_settings(pubsub_push_audience="https://a.example/push"))

async def main():
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get("/healthz")).status_code == 200
            created = await client.post("/v1/users", json={"email": "a@b.co", "name": "A"})
            assert created.status_code == 201, created.text
            refused = await client.post("/internal/pubsub/push", json={})
            assert refused.status_code == 401, refused.text

asyncio.run(main())
print(json.dumps(sorted(m for m in set(sys.modules) - at_startup if m.startswith("google"))))
"""


def test_with_push_on_no_google_module_is_imported_before_a_token_is_checked(
    tmp_path: Path,
) -> None:
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": f"sqlite:///{tmp_path}/probe.db"}
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


async def test_cloud_schedulers_tick_runs_its_scheduled_task(pushing: Pushing) -> None:
    """One service, no worker: Cloud Scheduler's tick reaches the API's push endpoint."""
    tick = b'{"schedule": "test.hourly", "version": 1, "time": "2026-12-04T12:00:00Z"}'
    answer = await pushing.push(push_envelope(pubsub_message(tick)))
    assert answer.status_code == 204, answer.text
    assert pushing.ran == ["hourly at 2026-12-04T12:00:00+00:00"]

    unknown = await pushing.push(
        push_envelope(pubsub_message(b'{"schedule": "reports.gone", "version": 1}'))
    )
    assert unknown.status_code == 400
    assert unknown.headers["content-type"] == PROBLEM_JSON
    assert "reports.gone" in unknown.json()["detail"]
