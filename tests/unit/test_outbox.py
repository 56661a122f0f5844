"""The outbox's sending side over the in-memory store: the request's fast path, and the sweeper
sending exactly the jobs that are due and stopping when the queue refuses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from adapters.memory_store import MemoryStore
from adapters.records import JobRecord
from api.jobs.observe import SENT_AT
from api.jobs.outbox import Outbox
from tests.support.queues import RecordingQueue
from tests.support.stores import a_job as new_job

T0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
GRACE = timedelta(seconds=10)
RESEND = timedelta(minutes=15)


def outbox(store: MemoryStore, queue: RecordingQueue, batch: int = 500) -> Outbox:
    return Outbox(store=store, queue=queue, grace=GRACE, resend_after=RESEND, batch=batch)


async def a_job(store: MemoryStore, due_at: datetime | None) -> JobRecord:
    return await store.create_job(new_job(created_at=T0, updated_at=T0, due_at=due_at))


async def test_the_fast_path_sends_and_marks_the_job_sent() -> None:
    store, queue = MemoryStore(), RecordingQueue()
    box = outbox(store, queue)
    job = await a_job(store, box.first_due(T0))
    assert await box.send(job, now=T0, attributes={"traceparent": "00-abc-def-01"})
    [sent] = queue.sent
    assert sent.job_id == job.id
    assert sent.attributes["traceparent"] == "00-abc-def-01"
    assert sent.attributes[SENT_AT].isdigit()  # the worker's queue lag starts here
    current = await store.get_job(job.id)
    assert current is not None
    assert current.due_at == T0 + RESEND
    # Past its grace it is not due: the request sent it.
    assert await store.due_jobs(now=T0 + GRACE, limit=10) == []


async def test_a_refused_send_leaves_the_job_due_for_the_sweeper() -> None:
    store, queue = MemoryStore(), RecordingQueue(refuse_after=0)
    box = outbox(store, queue)
    job = await a_job(store, box.first_due(T0))
    assert not await box.send(job, now=T0)
    assert [j.id for j in await store.due_jobs(now=T0 + GRACE, limit=10)] == [job.id]

    queue.refuse_after = None
    report = await box.sweep(now=T0 + GRACE)
    assert report.as_dict() == {"due": 1, "sent": 1, "failed": 0}
    assert [m.job_id for m in queue.sent] == [job.id]
    assert await store.due_jobs(now=T0 + GRACE, limit=10) == []


async def test_a_sweep_sends_only_what_is_due_and_moves_it_on() -> None:
    store, queue = MemoryStore(), RecordingQueue()
    box = outbox(store, queue)
    due = [await a_job(store, T0 - timedelta(seconds=n)) for n in range(3)]
    await a_job(store, T0 + timedelta(seconds=1))  # not yet
    await a_job(store, None)  # ended
    report = await box.sweep(now=T0)
    assert report.as_dict() == {"due": 3, "sent": 3, "failed": 0}
    assert sorted(m.job_id for m in queue.sent) == sorted(j.id for j in due)
    # Sent, so due again only after RESEND: a second sweep now sends nothing.
    assert (await box.sweep(now=T0)).sent == 0
    # Due again after RESEND, with the one that was not due yet.
    assert (await box.sweep(now=T0 + RESEND)).sent == 4


async def test_a_sweep_is_bounded_by_its_batch() -> None:
    store, queue = MemoryStore(), RecordingQueue()
    for n in range(5):
        await a_job(store, T0 - timedelta(seconds=n))
    report = await outbox(store, queue, batch=2).sweep(now=T0)
    assert (report.due, report.sent) == (2, 2)
    assert len(await store.due_jobs(now=T0, limit=10)) == 3


async def test_a_sweep_stops_sending_when_the_queue_refuses() -> None:
    store, queue = MemoryStore(), RecordingQueue(refuse_after=2)
    box = outbox(store, queue)
    for n in range(40):
        await a_job(store, T0 - timedelta(seconds=n))
    report = await box.sweep(now=T0)
    assert report.sent == 2
    assert report.failed >= 1
    # Everything not sent is still due, for the next run.
    assert len(await store.due_jobs(now=T0, limit=100)) == 38


async def test_a_job_claimed_before_its_mark_keeps_the_claims_due_time() -> None:
    store, queue = MemoryStore(), RecordingQueue()
    box = outbox(store, queue)
    job = await a_job(store, box.first_due(T0))
    lease = T0 + timedelta(seconds=30)
    # The worker claims it between the send and the mark (the in-process queue is that fast).
    await store.claim_job(job.id, now=T0, lease_until=lease)
    assert await box.send(job, now=T0)
    current = await store.get_job(job.id)
    assert current is not None
    assert current.due_at == lease
