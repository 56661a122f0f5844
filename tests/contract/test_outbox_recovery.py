"""Nothing accepted is lost, on every store: a request dies at each point between its write and
its send, and a restarted process (a new queue, runner and outbox on the same store) finishes
every job exactly once and welcomes every user.

Here the "process" dies by a BaseException at the point, so the memory store can take part;
tests/e2e/test_crash_recovery.py kills real server processes with SIGKILL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest

from adapters.inprocess_queue import InProcessQueue
from adapters.memory_cache import MemoryCache
from adapters.ports import Store
from adapters.records import JobStatus
from api.jobs.outbox import Outbox
from api.jobs.runner import JobRunner
from api.jobs.submit import submit_job
from api.schemas import UserCreate
from api.services.users import create_user
from api.tasks import tasks
from tests.support.dying import POINTS, DyingQueue, DyingStore, Trigger
from tests.support.queues import RecordingQueue

GRACE = timedelta(seconds=10)


class Crash(BaseException):
    """The process dies here."""


def crash() -> None:
    raise Crash


@contextmanager
def dies() -> Iterator[None]:
    with pytest.raises(Crash):
        yield


@pytest.mark.parametrize("kept", [False, True], ids=["messages-lost", "messages-kept"])
@pytest.mark.parametrize("point", POINTS)
async def test_a_process_that_dies_between_write_and_send_loses_nothing(
    store: Store, point: str, kept: bool
) -> None:
    now = datetime.now(UTC)
    # Two requests, each in a process that dies at `point` of its first send. With `kept` the
    # messages they sent outlive them (as SQS's and Pub/Sub's do) and reach the next process
    # too; else they die with them (the in-process queue).
    sent = RecordingQueue()  # lost with an in-process queue, kept by SQS and Pub/Sub

    def dying_process() -> Outbox:
        trigger = Trigger(point, 1, crash)
        return Outbox(
            store=DyingStore(store, trigger),  # type: ignore[arg-type]
            queue=DyingQueue(sent, trigger),
            grace=GRACE,
            resend_after=timedelta(minutes=15),
        )

    with dies():
        await create_user(
            store=store,
            outbox=dying_process(),
            registry=tasks,
            data=UserCreate(email=f"{point}@example.com", name="Ada"),
            now=now,
        )
    with dies():
        await submit_job(
            store=store,
            outbox=dying_process(),
            registry=tasks,
            task="users.welcome",
            payload={"user_id": "someone-else"},
            now=now,
        )
    [welcome, other] = await store.due_jobs(now=now + timedelta(days=1), limit=10)
    [user] = (await store.list_users(limit=10)).items

    # The next process: a fresh queue, runner and outbox on the same store.
    queue = InProcessQueue()
    runner = JobRunner(store=store, cache=MemoryCache(), registry=tasks, lease=timedelta(minutes=1))
    outbox = Outbox(store=store, queue=queue, grace=GRACE, resend_after=timedelta(minutes=15))
    for message in sent.sent if kept else ():
        await queue.send(message)
    queue.start_consuming(runner.handle)
    # One sweep, as soon as the killed request's grace has passed, sends what is due.
    report = await outbox.sweep(now=now + timedelta(days=1))
    assert report.sent == 2
    await queue.join()
    await queue.close()

    for job_id in (welcome.id, other.id):
        job = await store.get_job(job_id)
        assert job is not None
        assert (job.status, job.attempts, job.due_at) == (JobStatus.SUCCEEDED, 1, None)
    welcomed = await store.get_user(user.id)
    assert welcomed is not None
    assert welcomed.welcomed_at is not None
    assert welcomed.version == 2  # welcomed once
    assert queue.dead_letters == []
