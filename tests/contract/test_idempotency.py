"""The IdempotencyStore contract: every implementation (beside memory, SQLite, PostgreSQL and
DynamoDB stores) passes these same tests, above all the atomic claim."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.bootstrap import build_idempotency_store
from adapters.ports import IdempotencyStore
from adapters.records import IdempotencyRecord, StoredResponse
from tests.support.stores import STORE_FACTORIES

NOW = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)
SCHEMES = {"memory": "memory://", "sqlite": "sqlite://", "postgres": "postgresql://",
           "dynamodb": "dynamodb://table"}  # fmt: skip
ANSWER = StoredResponse(
    status=201,
    headers=(("content-type", "application/json"), ("location", "/v1/users/1")),
    body=b'{"id": "1"}\xff',  # any bytes
)


@pytest.fixture(params=sorted(STORE_FACTORIES))
async def records(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[IdempotencyStore]:
    async with STORE_FACTORIES[request.param](tmp_path) as store:
        yield build_idempotency_store(SCHEMES[request.param], store)


def a_claim(
    key: str | None = None, *, fingerprint: str = "f1", lock: int = 60, at: datetime = NOW
) -> IdempotencyRecord:
    return IdempotencyRecord(
        key=key or os.urandom(8).hex(),
        fingerprint=fingerprint,
        token=os.urandom(8).hex(),
        expires_at=at + timedelta(hours=24),
        locked_until=at + timedelta(seconds=lock),
    )


def same_time(a: datetime, b: datetime) -> bool:
    return abs((a - b).total_seconds()) < 1  # DynamoDB keeps TTL times in whole seconds


async def test_the_first_claim_wins_and_a_second_sees_it(records: IdempotencyStore) -> None:
    first = a_claim()
    assert await records.claim(first, now=NOW) is None
    seen = await records.claim(a_claim(first.key, fingerprint="f2"), now=NOW)
    assert seen is not None
    assert (seen.key, seen.fingerprint, seen.token, seen.response) == (
        first.key, "f1", first.token, None,
    )  # fmt: skip
    assert same_time(seen.expires_at, first.expires_at)
    assert same_time(seen.locked_until, first.locked_until)


async def test_a_completed_record_returns_its_answer(records: IdempotencyStore) -> None:
    claim = a_claim()
    await records.claim(claim, now=NOW)
    assert await records.complete(
        claim.key, token=claim.token, response=ANSWER, expires_at=claim.expires_at
    )
    # Long after its lock, but before it expires, it still holds its key.
    later = NOW + timedelta(hours=1)
    seen = await records.claim(a_claim(claim.key), now=later)
    assert seen is not None
    assert seen.response == ANSWER


async def test_only_the_claiming_token_completes_or_releases(records: IdempotencyStore) -> None:
    claim = a_claim()
    await records.claim(claim, now=NOW)
    other = os.urandom(8).hex()
    assert not await records.complete(
        claim.key, token=other, response=ANSWER, expires_at=claim.expires_at
    )
    await records.release(claim.key, token=other)
    assert await records.claim(a_claim(claim.key), now=NOW) is not None  # still held
    await records.release(claim.key, token=claim.token)
    assert await records.claim(a_claim(claim.key), now=NOW) is None  # free again


async def test_a_completed_record_is_not_released_or_completed_again(
    records: IdempotencyStore,
) -> None:
    claim = a_claim()
    await records.claim(claim, now=NOW)
    await records.complete(
        claim.key, token=claim.token, response=ANSWER, expires_at=claim.expires_at
    )
    await records.release(claim.key, token=claim.token)
    other = StoredResponse(status=500, headers=(), body=b"")
    assert not await records.complete(
        claim.key, token=claim.token, response=other, expires_at=claim.expires_at
    )
    seen = await records.claim(a_claim(claim.key), now=NOW)
    assert seen is not None
    assert seen.response == ANSWER


async def test_an_in_progress_record_past_its_lock_can_be_claimed_again(
    records: IdempotencyStore,
) -> None:
    stale = a_claim(lock=30)
    await records.claim(stale, now=NOW)
    assert await records.claim(a_claim(stale.key), now=NOW + timedelta(seconds=29)) is not None
    taker = a_claim(stale.key, fingerprint="f2")
    assert await records.claim(taker, now=NOW + timedelta(seconds=31)) is None
    # The first claimant finishing late changes nothing: its claim is gone.
    assert not await records.complete(
        stale.key, token=stale.token, response=ANSWER, expires_at=stale.expires_at
    )
    seen = await records.claim(a_claim(stale.key), now=NOW + timedelta(seconds=32))
    assert seen is not None
    assert (seen.token, seen.fingerprint) == (taker.token, "f2")


async def test_an_expired_record_frees_its_key(records: IdempotencyStore) -> None:
    claim = a_claim()
    await records.claim(claim, now=NOW)
    await records.complete(
        claim.key, token=claim.token, response=ANSWER, expires_at=claim.expires_at
    )
    after = claim.expires_at + timedelta(seconds=1)
    fresh = a_claim(claim.key, fingerprint="f2", at=after)
    assert await records.claim(fresh, now=after) is None
    seen = await records.claim(a_claim(claim.key, at=after), now=after)
    assert seen is not None
    assert (seen.fingerprint, seen.response) == ("f2", None)


async def test_concurrent_claims_of_one_key_have_exactly_one_winner(
    records: IdempotencyStore,
) -> None:
    claims = [a_claim("contended") for _ in range(10)]
    results = await asyncio.gather(*(records.claim(c, now=NOW) for c in claims))
    winners = [c for c, result in zip(claims, results, strict=True) if result is None]
    assert len(winners) == 1
    assert {r.token for r in results if r is not None} == {winners[0].token}


async def test_purge_removes_only_expired_records(records: IdempotencyStore) -> None:
    live = a_claim()
    await records.claim(live, now=NOW)
    expired = a_claim(at=NOW - timedelta(days=2))  # expired a day before NOW
    await records.claim(expired, now=NOW - timedelta(days=2))
    gone = await records.purge(now=NOW, limit=100)
    assert 0 <= gone <= 100
    assert await records.claim(a_claim(live.key), now=NOW) is not None
    assert await records.claim(a_claim(expired.key), now=NOW) is None
