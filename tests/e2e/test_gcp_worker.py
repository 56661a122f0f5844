"""The Cloud Run shape end to end: the API started with the Dockerfile's command publishes to
Pub/Sub (a local fake of its REST API); the worker started with the worker stage's command
(functions-framework) receives each published message as Eventarc delivers it, a CloudEvent in
binary or structured mode; both share one SQLite file, as they would share one database."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from adapters.sqlite_store import SqliteStore
from api.jobs.runner import utcnow
from tests.support.gcp_events import (
    ServerProcess,
    binary_event,
    pubsub_message,
    running_pair,
    start_command,
    structured_event,
)
from tests.support.pubsub import QUEUE_URL, FakePubSub, Published, running_fake_pubsub
from tests.support.stores import a_job

ROOT = Path(__file__).resolve().parents[2]
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@dataclass
class CloudRun:
    api: ServerProcess
    worker: ServerProcess
    pubsub: FakePubSub
    database_url: str

    def create_user(self, email: str) -> tuple[dict[str, Any], Published]:
        before = len(self.pubsub.published)
        created = httpx.post(
            self.api.base_url + "/v1/users",
            json={"email": email, "name": "Ada"},
            headers={"traceparent": TRACEPARENT},
            timeout=10,
        )
        assert created.status_code == 201, created.text
        published = self.pubsub.wait_for(before + 1)[before]
        user: dict[str, Any] = created.json()
        return user, published

    def deliver(self, event: tuple[dict[str, str], bytes]) -> httpx.Response:
        headers, body = event
        return httpx.post(self.worker.base_url + "/", content=body, headers=headers, timeout=30)

    def user(self, user_id: str) -> dict[str, Any]:
        answer: dict[str, Any] = httpx.get(
            f"{self.api.base_url}/v1/users/{user_id}", timeout=10
        ).json()
        return answer

    def write_job(self, task: str, payload: dict[str, Any], *, due: bool = False) -> str:
        """A queued job written straight into the shared database (as an API would before its
        send); with `due`, its outbox entry due now. Returns its id."""

        async def write() -> str:
            store = SqliteStore.from_url(self.database_url)
            await store.open()
            try:
                now = utcnow()
                job = a_job(
                    task=task, payload=payload, created_at=now, updated_at=now,
                    due_at=now if due else None,
                )  # fmt: skip
                await store.create_job(job)
                return job.id
            finally:
                await store.close()

        return asyncio.run(write())

    def job(self, job_id: str) -> dict[str, Any]:
        answer: dict[str, Any] = httpx.get(
            f"{self.api.base_url}/v1/jobs/{job_id}", timeout=10
        ).json()
        return answer


def as_message(published: Published, **options: Any) -> dict[str, Any]:
    return pubsub_message(published.data, attributes=published.attributes, **options)


@pytest.fixture
def cloud_run(tmp_path: Path) -> Iterator[CloudRun]:
    database_url = f"sqlite:///{tmp_path}/shared.db"
    with running_fake_pubsub() as fake:
        settings = {
            "DATABASE_URL": database_url,
            "QUEUE_URL": QUEUE_URL,
            "PUBSUB_EMULATOR_HOST": fake.host,
            "GOOGLE_CLOUD_PROJECT": "lambdarun-test",
            "STAGE": "test",  # not local: JSON lines; a deployed stage would refuse AUTH=off
        }
        with running_pair(tmp_path, **settings) as (api, worker):
            yield CloudRun(api, worker, fake, database_url)


def test_the_worker_command_is_functions_framework_on_the_cloudevent_target() -> None:
    command = start_command("worker")
    assert command[0] == "functions-framework"
    options = dict(zip(command[1::2], command[2::2], strict=True))
    assert options == {
        "--target": "on_job_message",
        "--source": "handlers/gcp_worker.py",
        "--signature-type": "cloudevent",
    }


def test_the_welcome_flow_runs_through_pubsub_and_the_worker(cloud_run: CloudRun) -> None:
    user, published = cloud_run.create_user("ada@example.com")
    assert published.attributes["traceparent"] == TRACEPARENT
    job_id = published.attributes["job_id"]
    assert cloud_run.job(job_id)["status"] == "queued"  # nothing runs it inside the API

    answer = cloud_run.deliver(binary_event(as_message(published)))
    assert answer.status_code == 200, answer.text
    assert cloud_run.user(user["id"])["welcomed_at"] is not None
    job = cloud_run.job(job_id)
    assert (job["status"], job["attempts"]) == ("succeeded", 1)


def test_a_structured_mode_event_is_handled_the_same(cloud_run: CloudRun) -> None:
    user, published = cloud_run.create_user("grace@example.com")
    answer = cloud_run.deliver(structured_event(as_message(published)))
    assert answer.status_code == 200, answer.text
    assert cloud_run.user(user["id"])["welcomed_at"] is not None


def test_a_duplicate_delivery_runs_the_job_once(cloud_run: CloudRun) -> None:
    user, published = cloud_run.create_user("linus@example.com")
    event = binary_event(as_message(published, message_id="1234567890"))
    first = cloud_run.deliver(event)
    welcomed = cloud_run.user(user["id"])["welcomed_at"]
    second = cloud_run.deliver(event)  # the same ce-id again
    assert (first.status_code, second.status_code) == (200, 200)
    assert cloud_run.user(user["id"])["welcomed_at"] == welcomed
    job = cloud_run.job(published.attributes["job_id"])
    assert (job["status"], job["attempts"]) == ("succeeded", 1)


def test_concurrent_deliveries_share_one_runtime(cloud_run: CloudRun) -> None:
    created = [cloud_run.create_user(f"user{n}@example.com") for n in range(6)]

    async def deliver_all() -> list[int]:
        async with httpx.AsyncClient(timeout=30) as client:
            answers = await asyncio.gather(
                *(
                    client.post(cloud_run.worker.base_url + "/", content=body, headers=headers)
                    for headers, body in (
                        binary_event(as_message(published)) for _, published in created
                    )
                )
            )
        return [a.status_code for a in answers]

    assert asyncio.run(deliver_all()) == [200] * 6
    assert all(cloud_run.user(user["id"])["welcomed_at"] for user, _ in created)


def test_a_job_that_asks_for_redelivery_answers_500(cloud_run: CloudRun) -> None:
    """A job whose task this worker lacks fails and asks for redelivery: Pub/Sub retries it and,
    after the subscription's maximum attempts, dead-letters it."""
    job_id = cloud_run.write_job("reports.monthly", {})
    body = json.dumps({"job_id": job_id, "task": "reports.monthly", "payload": {}, "version": 1})
    answer = cloud_run.deliver(binary_event(pubsub_message(body, attributes={"job_id": job_id})))
    assert answer.status_code == 500
    job = cloud_run.job(job_id)
    assert (job["status"], job["attempts"]) == ("failed", 1)
    assert "unknown task" in job["error"]


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (
            binary_event(
                pubsub_message(b"{}"), event_type="google.cloud.storage.object.v1.finalized"
            ),
            "expected a google.cloud.pubsub.topic.v1.messagePublished event",
        ),
        (binary_event(pubsub_message(b"{}"), data=b'{"no": "message"}'), "no Pub/Sub message"),
        (binary_event({**pubsub_message(b"{}"), "data": "%%%"}), "not a job message"),
        (binary_event(pubsub_message(b"not json")), "not a job message"),
        (structured_event(pubsub_message(b'{"version": 99}')), "not a job message"),
        (({"Content-Type": "application/json"}, b'{"hello": "world"}'), ""),  # no CloudEvent
    ],
    ids=["wrong-type", "no-message", "not-base64", "not-json", "unknown-version", "not-an-event"],
)
def test_a_malformed_event_is_refused_with_400(
    cloud_run: CloudRun, event: tuple[dict[str, str], bytes], reason: str
) -> None:
    answer = cloud_run.deliver(event)
    assert answer.status_code == 400, answer.text
    assert reason in answer.text


def test_the_workers_lines_are_cloud_logging_json(cloud_run: CloudRun) -> None:
    cloud_run.deliver(binary_event(pubsub_message(b"not json")))
    deadline = time.monotonic() + 5
    while "refused" not in cloud_run.worker.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    entries = [
        json.loads(line) for line in cloud_run.worker.log().splitlines() if line.startswith("{")
    ]
    [refusal] = [e for e in entries if "refused" in e["message"]]
    assert refusal["severity"] == "ERROR"
    assert refusal["logger"] == "gcp_worker"


def test_cloud_schedulers_tick_runs_the_sweeper_in_the_worker(cloud_run: CloudRun) -> None:
    """cloudrun/schedules.yaml's job publishes the sweeper's tick to the jobs topic; Eventarc
    delivers it to the worker, which sends what the outbox says is due: here a job written with
    its outbox entry whose request died before sending it."""
    job_id = cloud_run.write_job("users.welcome", {"user_id": "gone"}, due=True)
    [sweep] = yaml.safe_load((ROOT / "cloudrun" / "schedules.yaml").read_text())
    tick = base64.b64decode(sweep["pubsubTarget"]["data"])
    before = len(cloud_run.pubsub.published)
    answer = cloud_run.deliver(binary_event(pubsub_message(tick)))
    assert answer.status_code == 200, answer.text
    sent = cloud_run.pubsub.wait_for(before + 1)[before]
    assert sent.attributes["job_id"] == job_id

    unknown = cloud_run.deliver(
        binary_event(pubsub_message(b'{"schedule": "reports.gone", "version": 1}'))
    )
    assert unknown.status_code == 400
    assert "reports.gone" in unknown.text
