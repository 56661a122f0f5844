"""The store's half of the outbox, on every Store implementation: a user and its jobs are one
atomic write, and the due index tells the sweeper exactly which jobs need their message sent."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from adapters.errors import AlreadyExists
from adapters.ports import Store
from adapters.records import JobStatus
from tests.support.stores import NOW, a_job, a_user


async def test_a_user_and_its_jobs_are_written_together(store: Store) -> None:
    user = a_user()
    job = a_job(payload={"user_id": user.id}, due_at=NOW + timedelta(seconds=10))
    await store.create_user(user, jobs=[job])
    assert await store.get_user(user.id) == user
    assert await store.get_job(job.id) == job


async def test_a_taken_email_writes_neither_the_user_nor_its_jobs(store: Store) -> None:
    await store.create_user(a_user("taken@example.com"))
    second = a_user("taken@example.com")
    job = a_job(payload={"user_id": second.id}, due_at=NOW)
    with pytest.raises(AlreadyExists) as raised:
        await store.create_user(second, jobs=[job])
    assert raised.value.field == "email"
    assert await store.get_job(job.id) is None
    assert await store.due_jobs(now=NOW, limit=10) == []


async def test_a_taken_job_id_writes_no_user(store: Store) -> None:
    existing = await store.create_job(a_job())
    user = a_user()
    with pytest.raises(AlreadyExists) as raised:
        await store.create_user(user, jobs=[a_job(id=existing.id)])
    assert raised.value.field == "id"
    assert await store.get_user(user.id) is None
    # Nothing half-written holds the email either.
    await store.create_user(a_user(user.email))


async def test_due_jobs_are_the_ones_due_earliest_first(store: Store) -> None:
    late = await store.create_job(a_job(due_at=NOW + timedelta(seconds=3)))
    early = await store.create_job(a_job(due_at=NOW - timedelta(seconds=5)))
    now_due = await store.create_job(a_job(due_at=NOW))
    later = await store.create_job(a_job(due_at=NOW + timedelta(hours=1)))
    await store.create_job(a_job())  # no due time: never in the index

    assert [j.id for j in await store.due_jobs(now=NOW, limit=10)] == [early.id, now_due.id]
    in_a_minute = NOW + timedelta(minutes=1)
    assert [j.id for j in await store.due_jobs(now=in_a_minute, limit=10)] == [
        early.id,
        now_due.id,
        late.id,
    ]
    assert [j.id for j in await store.due_jobs(now=in_a_minute, limit=2)] == [early.id, now_due.id]
    found = await store.due_jobs(now=later.due_at or NOW, limit=10)
    assert found[-1] == later


async def test_reschedule_moves_the_due_time_only_from_the_one_expected(store: Store) -> None:
    job = await store.create_job(a_job(due_at=NOW))
    moved = NOW + timedelta(minutes=15)
    assert await store.reschedule(job.id, expected=NOW, due_at=moved)
    assert await store.due_jobs(now=NOW, limit=10) == []
    # A sender that read the old due time changes nothing.
    assert not await store.reschedule(job.id, expected=NOW, due_at=NOW + timedelta(seconds=1))
    current = await store.get_job(job.id)
    assert current is not None
    assert current.due_at == moved


async def test_concurrent_reschedules_of_one_due_time_let_one_through(store: Store) -> None:
    job = await store.create_job(a_job(due_at=NOW))
    wins = await asyncio.gather(
        *(
            store.reschedule(job.id, expected=NOW, due_at=NOW + timedelta(seconds=n + 1))
            for n in range(6)
        )
    )
    assert sum(wins) == 1


async def test_a_claim_makes_the_job_due_at_the_end_of_its_lease(store: Store) -> None:
    job = await store.create_job(a_job(due_at=NOW))
    lease = NOW + timedelta(seconds=30)
    claimed = await store.claim_job(job.id, now=NOW, lease_until=lease)
    assert claimed is not None
    assert claimed.due_at == lease
    assert await store.due_jobs(now=NOW + timedelta(seconds=29), limit=10) == []
    abandoned = await store.due_jobs(now=lease, limit=10)
    assert [(j.id, j.status) for j in abandoned] == [(job.id, JobStatus.RUNNING)]
    # The sender that read the creation's due time comes too late.
    assert not await store.reschedule(job.id, expected=NOW, due_at=NOW + timedelta(minutes=15))


async def test_renewing_a_lease_holds_the_job_for_its_claim_only(store: Store) -> None:
    job = await store.create_job(a_job(due_at=NOW))
    await store.claim_job(job.id, now=NOW, lease_until=NOW + timedelta(seconds=30))
    renewed = NOW + timedelta(seconds=50)
    assert await store.renew_lease(job.id, attempt=1, lease_until=renewed)
    current = await store.get_job(job.id)
    assert current is not None
    assert (current.lease_until, current.due_at) == (renewed, renewed)
    # Not claimable while the renewed lease holds, though the first lease has run out.
    assert await store.claim_job(job.id, now=NOW + timedelta(seconds=40), lease_until=NOW) is None
    assert not await store.renew_lease(job.id, attempt=2, lease_until=renewed)
    assert not await store.renew_lease(a_job().id, attempt=1, lease_until=renewed)


async def test_an_ended_job_leaves_the_due_index(store: Store) -> None:
    for status in (JobStatus.SUCCEEDED, JobStatus.FAILED):
        job = await store.create_job(a_job(due_at=NOW))
        await store.claim_job(job.id, now=NOW, lease_until=NOW + timedelta(seconds=30))
        done = await store.finish_job(job.id, attempt=1, status=status, at=NOW)
        assert done is not None
        assert done.due_at is None
        assert not await store.renew_lease(job.id, attempt=1, lease_until=NOW)
    assert await store.due_jobs(now=NOW + timedelta(days=1), limit=10) == []
