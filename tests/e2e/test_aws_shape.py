"""The AWS shape end to end on moto in server mode, driven by the `lambdarun local` commands as a
developer drives them: `local up` makes the template's table and queues, the API function (in
the Runtime Interface Emulator, or in process where none runs) creates a user, its job message
lands in SQS, `local start-worker` delivers it as Lambda's event source mapping would, and the
user is welcomed. Failures are retried by SQS and dead-lettered after maxReceiveCount while
their neighbours succeed once; a duplicate runs once; a worker killed mid-batch loses nothing;
a worker that loses SQS keeps polling with backoff and catches up when it comes back."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from adapters.messages import encode_body
from adapters.records import JobMessage, JobRecord, JobStatus, UserRecord
from api.ids import new_id
from api.jobs.outbox import Outbox
from api.jobs.submit import submit_job
from api.tasks import tasks
from tests.support.local_stack import LocalStack, local_stack
from tests.support.moto_server import aws_env, dynamodb_client, moto_server, sqs_client
from tests.support.tcp_switch import tcp_switch

__all__ = ["aws_env", "moto_server"]  # fixtures, used by name

ROOT = Path(__file__).resolve().parents[2]
LAMBDARUN = str(Path(sys.executable).parent / "lambdarun")
MAX_RECEIVE_COUNT = 3
# Longer than the worker's 1 s batching window plus a batch's work, so a message does not come
# back while its batch is still being gathered or run (Lambda asks for 6x the function timeout).
VISIBILITY_SECONDS = 2
RESEND = timedelta(minutes=15)  # the default for SQS: nothing here is sent twice by the outbox


@pytest.fixture
def stack(aws_env: pytest.MonkeyPatch, tmp_path: Path) -> LocalStack:
    """A stack whose queue gives up after MAX_RECEIVE_COUNT deliveries, 2 s apart."""
    return local_stack(
        tmp_path, max_receive_count=MAX_RECEIVE_COUNT, visibility_seconds=VISIBILITY_SECONDS
    )


def sample(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((ROOT / "events" / name).read_text())
    return event


def now() -> datetime:
    return datetime.now(UTC)


async def welcome_jobs(stack: LocalStack, count: int) -> list[tuple[str, str]]:
    """(user id, job id) for `count` new users, each with a welcome job submitted to the queue
    the way the API submits it."""
    store, queue = stack.store(), stack.queue()
    outbox = Outbox(store=store, queue=queue, grace=timedelta(seconds=10), resend_after=RESEND)
    made = []
    for n in range(count):
        at = now()
        user = UserRecord(
            id=new_id(), email=f"u{n}-{uuid.uuid4().hex[:6]}@example.com", name="U",
            created_at=at, updated_at=at,
        )  # fmt: skip
        await store.create_user(user)
        job = await submit_job(
            store=store,
            outbox=outbox,
            registry=tasks,
            task="users.welcome",
            payload={"user_id": user.id},
            now=at,
        )
        made.append((user.id, job.id))
    return made


async def job_of(stack: LocalStack, job_id: str) -> JobRecord:
    job = await stack.store().get_job(job_id)
    assert job is not None
    return job


async def welcomed(stack: LocalStack, user_id: str) -> datetime | None:
    user = await stack.store().get_user(user_id)
    assert user is not None
    return user.welcomed_at


def test_a_user_created_through_the_api_function_is_welcomed_by_the_worker(
    stack: LocalStack,
) -> None:
    event = sample("http_v2_create_user.json")
    event["body"] = json.dumps({"email": f"ada-{uuid.uuid4().hex[:6]}@example.com", "name": "Ada"})
    created = stack.invoke(event)
    assert created["statusCode"] == 201, created
    user = json.loads(created["body"])
    assert user["welcomed_at"] is None
    assert stack.counts(stack.queue_url) == (1, 0)  # the job message is waiting in SQS

    log = stack.work_until_empty()
    assert "batch 1: 1 messages, 1 deleted" in log

    assert asyncio.run(welcomed(stack, user["id"])) is not None
    [job] = dynamodb_client().scan(
        TableName=stack.table,
        FilterExpression="sk = :job",
        ExpressionAttributeValues={":job": {"S": "JOB"}},
    )["Items"]
    assert job["status"] == {"S": "succeeded"}
    assert json.loads(job["payload"]["S"]) == {"user_id": user["id"]}
    get = sample("http_v2_get_user.json")
    path = f"/v1/users/{user['id']}"
    get["rawPath"] = get["requestContext"]["http"]["path"] = path
    fetched = stack.invoke(get)
    assert fetched["statusCode"] == 200
    assert json.loads(fetched["body"])["welcomed_at"] is not None
    assert stack.counts(stack.queue_url) == (0, 0)
    assert stack.dead_letters() == []


def test_failures_are_dead_lettered_while_their_neighbours_succeed_once(
    stack: LocalStack,
) -> None:
    async def arrange() -> tuple[list[tuple[str, str]], str]:
        good = await welcome_jobs(stack, 3)
        at = now()
        # A job whose payload no longer fits its task: every attempt fails.
        broken = JobRecord(
            id=new_id(),
            task="users.welcome",
            payload={},
            status=JobStatus.QUEUED,
            created_at=at,
            updated_at=at,
        )
        await stack.store().create_job(broken)
        await stack.queue().send(JobMessage(job_id=broken.id, task=broken.task, payload={}))
        return good, broken.id

    good, broken_id = asyncio.run(arrange())
    with sqs_client() as sqs:
        sqs.send_message(QueueUrl=stack.queue_url, MessageBody="{not json")  # poison

    log = stack.work_until_empty()

    assert "left for redelivery (batchItemFailures)" in log
    assert stack.counts(stack.queue_url) == (0, 0)
    broken_body = encode_body(JobMessage(job_id=broken_id, task="users.welcome", payload={}))
    assert stack.dead_letters() == sorted([broken_body, "{not json"])

    async def outcome() -> None:
        for user_id, job_id in good:
            job = await job_of(stack, job_id)
            assert (job.status, job.attempts) == (JobStatus.SUCCEEDED, 1)
            assert await welcomed(stack, user_id) is not None
        broken = await job_of(stack, broken_id)
        assert broken.status is JobStatus.FAILED
        assert broken.attempts == MAX_RECEIVE_COUNT  # one attempt per receive, then the DLQ

    asyncio.run(outcome())


def test_a_duplicate_delivery_of_a_finished_job_runs_once(stack: LocalStack) -> None:
    [(user_id, job_id)] = asyncio.run(welcome_jobs(stack, 1))
    stack.work_until_empty()
    first = asyncio.run(welcomed(stack, user_id))
    assert first is not None

    body = encode_body(
        JobMessage(job_id=job_id, task="users.welcome", payload={"user_id": user_id})
    )
    with sqs_client() as sqs:
        sqs.send_message(QueueUrl=stack.queue_url, MessageBody=body)
    log = stack.work_until_empty()

    assert "1 messages, 1 deleted" in log  # acknowledged, not retried
    job = asyncio.run(job_of(stack, job_id))
    assert (job.status, job.attempts) == (JobStatus.SUCCEEDED, 1)
    assert asyncio.run(welcomed(stack, user_id)) == first
    assert stack.dead_letters() == []


@pytest.fixture
def black_hole() -> Iterator[tuple[int, threading.Event]]:
    """A port that accepts connections and never answers: a DynamoDB that hangs mid-batch."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.1)
    connected, done = threading.Event(), threading.Event()
    held: list[socket.socket] = []

    def accept() -> None:
        while not done.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            held.append(connection)
            connected.set()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1], connected
    done.set()
    thread.join(5)
    server.close()
    for connection in held:
        connection.close()


def test_a_worker_killed_mid_batch_loses_nothing(
    stack: LocalStack, black_hole: tuple[int, threading.Event]
) -> None:
    made = asyncio.run(welcome_jobs(stack, 3))
    port, connected = black_hole
    worker = subprocess.Popen(
        stack.worker_command(),
        cwd=ROOT,
        env={**os.environ, "AWS_ENDPOINT_URL_DYNAMODB": f"http://127.0.0.1:{port}"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # The batch was received and the handler is inside its first DynamoDB call: kill it.
        assert connected.wait(30), "the worker never reached DynamoDB"
        worker.kill()
        _, log = worker.communicate(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert "START RequestId" in log  # the function had the batch...
    assert "deleted" not in log  # ...and never answered, so nothing was acknowledged
    visible, in_flight = stack.counts(stack.queue_url)
    assert visible + in_flight == 3

    log = stack.work_until_empty()  # after the visibility timeout they come back

    async def outcome() -> None:
        for user_id, job_id in made:
            job = await job_of(stack, job_id)
            assert job.status is JobStatus.SUCCEEDED
            assert await welcomed(stack, user_id) is not None

    asyncio.run(outcome())
    assert "3 deleted" in log
    assert stack.dead_letters() == []


class WorkerLog:
    """A running worker's stderr, line by line, read on a thread so a test can wait for a line."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        assert process.stderr is not None
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._stream = process.stderr

        def read() -> None:
            for line in self._stream:
                self._queue.put(line)
            self._queue.put(None)

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()

    def close(self) -> None:
        """After the worker ended: the rest of its output, and the pipe closed."""
        self._reader.join(10)
        self._stream.close()
        while (line := self._queue.get_nowait() if not self._queue.empty() else None) is not None:
            self.lines.append(line)

    def wait_for(self, done: Any, timeout: float = 60) -> None:
        """Read lines until `done(lines)` is true; fail with the log when the worker ends or the
        time is up first."""
        deadline = time.monotonic() + timeout
        while not done(self.lines):
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError("".join(self.lines)) from None
            if line is None:
                raise AssertionError("the worker ended:\n" + "".join(self.lines))
            self.lines.append(line)

    def deleted(self) -> int:
        return sum(int(m[1]) for m in re.finditer(r"messages, (\d+) deleted", "".join(self.lines)))


def test_a_worker_that_loses_sqs_keeps_polling_and_catches_up(stack: LocalStack) -> None:
    before = asyncio.run(welcome_jobs(stack, 2))
    endpoint = stack.queue_url.split("/")[2]  # moto's host:port
    host, port = endpoint.split(":")
    with tcp_switch((host, int(port))) as sqs_link:
        worker = subprocess.Popen(
            stack.worker_command(),
            cwd=ROOT,
            env={**os.environ, "AWS_ENDPOINT_URL_SQS": sqs_link.url},  # only SQS goes through it
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        log = WorkerLog(worker)
        try:
            log.wait_for(lambda _: log.deleted() == 2)

            sqs_link.cut()  # SQS unreachable while the worker polls
            log.wait_for(lambda lines: any("the queue is unreachable" in x for x in lines))
            during = asyncio.run(welcome_jobs(stack, 3))  # sent while the worker cannot see SQS
            assert stack.counts(stack.queue_url) == (3, 0)
            assert worker.poll() is None  # still running through the outage

            sqs_link.restore()
            log.wait_for(lambda _: log.deleted() == 5)
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(15) == 0
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
            log.close()
    text = "".join(log.lines)
    assert "the queue is reachable again after" in text

    async def outcome() -> None:
        for user_id, job_id in before + during:
            job = await job_of(stack, job_id)
            assert (job.status, job.attempts) == (JobStatus.SUCCEEDED, 1)
            assert await welcomed(stack, user_id) is not None

    asyncio.run(outcome())
    assert stack.counts(stack.queue_url) == (0, 0)
    assert stack.dead_letters() == []
