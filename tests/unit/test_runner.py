"""The job runner over the in-memory store: claims, duplicates, failures, lost leases."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel

from adapters.memory_cache import MemoryCache
from adapters.memory_store import MemoryStore
from adapters.ports import Disposition
from adapters.records import JobMessage, JobRecord, JobStatus
from api.jobs.runner import JobRunner, utcnow
from api.tasks.registry import TaskContext, TaskRegistry

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Count(BaseModel):
    n: int


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def make(clock: Clock) -> tuple[JobRunner, MemoryStore, list[int]]:
    registry = TaskRegistry()
    runs: list[int] = []

    @registry.register("count")
    async def count(payload: Count, ctx: TaskContext) -> dict[str, object]:
        runs.append(payload.n)
        if payload.n < 0:
            raise ValueError("negative")
        return {"n": payload.n}

    store = MemoryStore()
    runner = JobRunner(
        store=store, cache=MemoryCache(), registry=registry, lease=timedelta(minutes=1), clock=clock
    )
    return runner, store, runs


async def submit(store: MemoryStore, task: str, payload: dict[str, object]) -> JobMessage:
    job = JobRecord(
        id=f"job-{task}-{len(payload)}-{payload.get('n')}",
        task=task,
        payload=payload,
        status=JobStatus.QUEUED,
        created_at=T0,
        updated_at=T0,
    )
    await store.create_job(job)
    return JobMessage(job_id=job.id, task=task, payload=payload)


async def test_a_duplicate_delivery_runs_the_job_once() -> None:
    runner, store, runs = make(Clock())
    message = await submit(store, "count", {"n": 1})
    assert await runner.handle(message) is Disposition.ACK
    assert await runner.handle(message) is Disposition.ACK
    assert runs == [1]
    job = await store.get_job(message.job_id)
    assert job is not None
    assert (job.status, job.result) == (JobStatus.SUCCEEDED, {"n": 1})


async def test_a_failure_is_recorded_and_asks_for_a_retry() -> None:
    runner, store, _ = make(Clock())
    message = await submit(store, "count", {"n": -1})
    assert await runner.handle(message) is Disposition.RETRY
    job = await store.get_job(message.job_id)
    assert job is not None
    assert (job.status, job.error) == (JobStatus.FAILED, "ValueError: negative")


async def test_a_job_running_elsewhere_is_retried_later_and_taken_over_after_its_lease() -> None:
    clock = Clock()
    runner, store, runs = make(clock)
    message = await submit(store, "count", {"n": 2})
    await store.claim_job(message.job_id, now=T0, lease_until=T0 + timedelta(minutes=1))
    assert await runner.handle(message) is Disposition.RETRY
    assert runs == []
    clock.now = T0 + timedelta(minutes=2)  # the other worker died
    assert await runner.handle(message) is Disposition.ACK
    assert runs == [2]


async def test_unknown_tasks_bad_payloads_and_missing_jobs() -> None:
    runner, store, _ = make(Clock())
    unknown = await submit(store, "gone", {})
    assert await runner.handle(unknown) is Disposition.RETRY
    job = await store.get_job(unknown.job_id)
    assert job is not None
    assert job.error == "unknown task 'gone'"
    bad = await submit(store, "count", {"n": "x"})
    assert await runner.handle(bad) is Disposition.RETRY
    missing = JobMessage(job_id="never-created", task="count", payload={"n": 1})
    assert await runner.handle(missing) is Disposition.ACK


async def test_a_task_longer_than_its_lease_keeps_its_job() -> None:
    """The runner renews the lease while the task runs: no second worker can take the job,
    however long it takes, and the due time follows the lease."""
    registry = TaskRegistry()
    store = MemoryStore()
    lease = timedelta(seconds=0.15)
    runner = JobRunner(store=store, cache=MemoryCache(), registry=registry, lease=lease)
    renewals: list[datetime] = []

    @registry.register("slow")
    async def slow(payload: Count, ctx: TaskContext) -> dict[str, object]:
        # Run until twice the first lease has passed (at most 500 looks of 10 ms): a runner
        # that never renews loses the job on the way, and the claim below takes it.
        for _ in range(500):
            current = await store.get_job(ctx.job_id)
            assert current is not None
            assert current.lease_until is not None
            if not renewals or current.lease_until != renewals[-1]:
                renewals.append(current.lease_until)
            assert current.due_at == current.lease_until
            if utcnow() > renewals[0] + lease:
                break
            await asyncio.sleep(0.01)
        # Long past its first lease, a second worker still cannot take the job.
        assert utcnow() > renewals[0] + lease
        assert await store.claim_job(ctx.job_id, now=utcnow(), lease_until=utcnow()) is None
        return {"n": payload.n}

    message = await submit(store, "slow", {"n": 3})
    assert await runner.handle(message) is Disposition.ACK
    job = await store.get_job(message.job_id)
    assert job is not None
    assert (job.status, job.attempts, job.due_at) == (JobStatus.SUCCEEDED, 1, None)
    assert len(renewals) >= 3
    assert renewals == sorted(renewals)
