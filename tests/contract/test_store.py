"""The store contract: every implementation of the Store port passes these same tests."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from adapters.errors import AlreadyExists, NotFound, VersionConflict
from adapters.ports import Store
from adapters.records import JobStatus, UserRecord
from api.ids import new_id
from tests.support.stores import NOW, a_job, a_user


async def test_a_created_user_reads_back_equal(store: Store) -> None:
    user = a_user(welcomed_at=NOW + timedelta(seconds=1))
    await store.create_user(user)
    assert await store.get_user(user.id) == user


async def test_a_missing_user_is_none(store: Store) -> None:
    assert await store.get_user(new_id()) is None


async def test_an_email_belongs_to_one_user(store: Store) -> None:
    await store.create_user(a_user("ada@example.com"))
    with pytest.raises(AlreadyExists) as raised:
        await store.create_user(a_user("ada@example.com"))
    assert raised.value.field == "email"
    page = await store.list_users(limit=10)
    assert len(page.items) == 1


async def test_an_id_is_never_reused(store: Store) -> None:
    first = a_user()
    await store.create_user(first)
    with pytest.raises(AlreadyExists):
        await store.create_user(first.replace(email="other@example.com"))


async def test_listing_walks_every_user_once_in_creation_order(store: Store) -> None:
    created = [a_user() for _ in range(7)]
    for user in created:
        await store.create_user(user)
    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        page = await store.list_users(limit=3, after=token)
        pages += 1
        seen += [u.id for u in page.items]
        token = page.next_token
        if token is None:
            break
    assert seen == [u.id for u in created]
    assert pages == 3


async def test_listing_an_exact_page_has_no_next_token(store: Store) -> None:
    for _ in range(2):
        await store.create_user(a_user())
    page = await store.list_users(limit=2)
    assert len(page.items) == 2
    assert page.next_token is None
    empty = await store.list_users(limit=5, after=page.items[-1].id)
    assert empty.items == []


async def test_an_update_bumps_the_version(store: Store) -> None:
    user = await store.create_user(a_user())
    later = NOW + timedelta(minutes=1)
    updated = await store.update_user(user.id, {"name": "Ada King"}, at=later, expected_version=1)
    assert (updated.name, updated.version, updated.updated_at) == ("Ada King", 2, later)
    assert await store.get_user(user.id) == updated


async def test_a_stale_version_changes_nothing(store: Store) -> None:
    user = await store.create_user(a_user())
    await store.update_user(user.id, {"name": "First"}, at=NOW, expected_version=1)
    with pytest.raises(VersionConflict):
        await store.update_user(user.id, {"name": "Second"}, at=NOW, expected_version=1)
    current = await store.get_user(user.id)
    assert current is not None
    assert (current.name, current.version) == ("First", 2)


async def test_concurrent_updates_of_one_version_let_exactly_one_through(store: Store) -> None:
    user = await store.create_user(a_user())
    outcomes = await asyncio.gather(
        *(
            store.update_user(user.id, {"name": f"n{i}"}, at=NOW, expected_version=1)
            for i in range(5)
        ),
        return_exceptions=True,
    )
    assert sum(isinstance(o, UserRecord) for o in outcomes) == 1
    assert sum(isinstance(o, VersionConflict) for o in outcomes) == 4


async def test_updating_a_missing_user_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        await store.update_user(new_id(), {"name": "x"}, at=NOW)
    with pytest.raises(NotFound):
        await store.update_user(new_id(), {"name": "x"}, at=NOW, expected_version=1)


async def test_an_email_change_keeps_emails_unique(store: Store) -> None:
    ada = await store.create_user(a_user("ada@example.com"))
    bob = await store.create_user(a_user("bob@example.com"))
    with pytest.raises(AlreadyExists):
        await store.update_user(bob.id, {"email": "ada@example.com"}, at=NOW)
    await store.update_user(ada.id, {"email": "ada@new.example"}, at=NOW)
    # The old address is free again.
    await store.update_user(bob.id, {"email": "ada@example.com"}, at=NOW)
    moved = await store.get_user(bob.id)
    assert moved is not None
    assert moved.email == "ada@example.com"


async def test_welcomed_at_can_be_set(store: Store) -> None:
    user = await store.create_user(a_user())
    welcomed = await store.update_user(user.id, {"welcomed_at": NOW}, at=NOW)
    assert welcomed.welcomed_at == NOW


async def test_a_deleted_user_is_gone_and_frees_its_email(store: Store) -> None:
    user = await store.create_user(a_user("gone@example.com"))
    await store.delete_user(user.id)
    assert await store.get_user(user.id) is None
    with pytest.raises(NotFound):
        await store.delete_user(user.id)
    await store.create_user(a_user("gone@example.com"))
    assert [u.email for u in (await store.list_users(limit=5)).items] == ["gone@example.com"]


async def test_a_job_reads_back_equal(store: Store) -> None:
    job = await store.create_job(a_job())
    assert await store.get_job(job.id) == job
    with pytest.raises(AlreadyExists):
        await store.create_job(job)


async def test_a_queued_job_is_claimed_once(store: Store) -> None:
    job = await store.create_job(a_job())
    lease = NOW + timedelta(minutes=5)
    claimed = await store.claim_job(job.id, now=NOW, lease_until=lease)
    assert claimed is not None
    assert (claimed.status, claimed.attempts, claimed.lease_until) == (JobStatus.RUNNING, 1, lease)
    assert await store.claim_job(job.id, now=NOW, lease_until=lease) is None


async def test_concurrent_claims_give_exactly_one_runner(store: Store) -> None:
    job = await store.create_job(a_job())
    claims = await asyncio.gather(
        *(
            store.claim_job(job.id, now=NOW, lease_until=NOW + timedelta(minutes=1))
            for _ in range(8)
        )
    )
    assert sum(c is not None for c in claims) == 1


async def test_a_finished_job_is_not_claimed_again(store: Store) -> None:
    job = await store.create_job(a_job())
    await store.claim_job(job.id, now=NOW, lease_until=NOW + timedelta(minutes=1))
    done = await store.finish_job(
        job.id, attempt=1, status=JobStatus.SUCCEEDED, at=NOW, result={"ok": True}
    )
    assert done is not None
    assert (done.status, done.result, done.lease_until) == (JobStatus.SUCCEEDED, {"ok": True}, None)
    later = NOW + timedelta(days=1)
    assert await store.claim_job(job.id, now=later, lease_until=later) is None


async def test_a_failed_job_can_be_claimed_for_another_attempt(store: Store) -> None:
    job = await store.create_job(a_job())
    await store.claim_job(job.id, now=NOW, lease_until=NOW + timedelta(minutes=1))
    failed = await store.finish_job(
        job.id, attempt=1, status=JobStatus.FAILED, at=NOW, error="boom"
    )
    assert failed is not None
    assert (failed.status, failed.error) == (JobStatus.FAILED, "boom")
    again = await store.claim_job(job.id, now=NOW, lease_until=NOW + timedelta(minutes=1))
    assert again is not None
    assert (again.attempts, again.error) == (2, None)


async def test_an_abandoned_job_is_claimed_after_its_lease(store: Store) -> None:
    job = await store.create_job(a_job())
    await store.claim_job(job.id, now=NOW, lease_until=NOW + timedelta(minutes=1))
    assert await store.claim_job(job.id, now=NOW + timedelta(seconds=59), lease_until=NOW) is None
    later = NOW + timedelta(minutes=2)
    taken = await store.claim_job(job.id, now=later, lease_until=later + timedelta(minutes=1))
    assert taken is not None
    assert taken.attempts == 2
    # The first worker, back late, cannot overwrite the second one's claim.
    assert await store.finish_job(job.id, attempt=1, status=JobStatus.SUCCEEDED, at=later) is None
    assert await store.finish_job(job.id, attempt=2, status=JobStatus.SUCCEEDED, at=later)


async def test_claiming_a_missing_job_is_none(store: Store) -> None:
    assert await store.claim_job(new_id(), now=NOW, lease_until=NOW) is None
    assert await store.finish_job(new_id(), attempt=1, status=JobStatus.FAILED, at=NOW) is None


async def test_a_jobs_owner_is_kept_through_claim_and_finish(store: Store) -> None:
    owned = await store.create_job(a_job(owner="auth0|alice@example.com"))
    assert await store.get_job(owned.id) == owned
    claimed = await store.claim_job(owned.id, now=NOW, lease_until=NOW + timedelta(minutes=1))
    assert claimed is not None
    assert claimed.owner == "auth0|alice@example.com"
    done = await store.finish_job(owned.id, attempt=1, status=JobStatus.SUCCEEDED, at=NOW)
    assert done is not None
    assert done.owner == "auth0|alice@example.com"
    unowned = await store.create_job(a_job())
    fetched = await store.get_job(unowned.id)
    assert fetched is not None
    assert fetched.owner is None
