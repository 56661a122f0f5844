"""The ports: small Protocols the app depends on. Adapters satisfy them without inheriting."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, TypedDict, runtime_checkable

from adapters.records import (
    IdempotencyRecord,
    JobMessage,
    JobRecord,
    JobStatus,
    Page,
    StoredResponse,
    UserRecord,
)


class Resource(Protocol):
    """Something with a connection: opened once per process, checked by /readyz, closed at exit."""

    async def open(self) -> None:
        """Connect or create what is needed; cheap to call when already open."""

    async def ping(self) -> None:
        """Return if usable, raise `Unavailable` if not."""

    async def close(self) -> None:
        """Release connections; the resource may be opened again."""


class UserChanges(TypedDict, total=False):
    email: str
    name: str
    welcomed_at: datetime | None


class Store(Resource, Protocol):
    """Users and jobs. Every rule below is enforced by the store's own conditional writes.

    A job is its own outbox entry: it is written in the same atomic write as whatever asked for
    it, with `due_at` set, and `due_jobs` finds the ones whose message must be (re)sent."""

    async def create_user(self, user: UserRecord, *, jobs: Sequence[JobRecord] = ()) -> UserRecord:
        """Insert the user and its new `jobs` in one atomic write; `AlreadyExists` if the user's
        id or email, or a job's id, is taken (and then nothing is written)."""

    async def get_user(self, user_id: str) -> UserRecord | None:
        """The user, or None."""

    async def list_users(self, *, limit: int, after: str | None = None) -> Page[UserRecord]:
        """Users in creation order; `after` is a `next_token` this store returned."""

    async def update_user(
        self,
        user_id: str,
        changes: UserChanges,
        *,
        at: datetime,
        expected_version: int | None = None,
    ) -> UserRecord:
        """Apply changes and bump the version; `NotFound`, `VersionConflict`, `AlreadyExists`."""

    async def delete_user(self, user_id: str) -> None:
        """Remove; `NotFound` if absent."""

    async def create_job(self, job: JobRecord) -> JobRecord:
        """Insert a new job (with its `due_at`); `AlreadyExists` if the id is taken."""

    async def get_job(self, job_id: str) -> JobRecord | None:
        """The job, or None."""

    async def claim_job(
        self, job_id: str, *, now: datetime, lease_until: datetime
    ) -> JobRecord | None:
        """Atomically move a claimable job (see `records.can_claim`) to running, counting the
        attempt and making it due when the lease ends; None when missing or not claimable."""

    async def renew_lease(self, job_id: str, *, attempt: int, lease_until: datetime) -> bool:
        """Extend the lease (and the due time) of the claim that counted `attempt`; False if
        that claim no longer holds the job."""

    async def finish_job(
        self,
        job_id: str,
        *,
        attempt: int,
        status: JobStatus,
        at: datetime,
        result: dict[str, object] | None = None,
        error: str | None = None,
    ) -> JobRecord | None:
        """Record the outcome of the claim that counted `attempt` and clear the due time; None
        if another claim has taken the job since (the lease ran out), so a late worker cannot
        overwrite it."""

    async def reschedule(self, job_id: str, *, expected: datetime, due_at: datetime) -> bool:
        """Move the job's due time from `expected` to `due_at` in one conditional write; False
        if it is no longer `expected` (a claim, a finish or another sender came first)."""

    async def due_jobs(self, *, now: datetime, limit: int) -> list[JobRecord]:
        """Up to `limit` jobs whose due time is at or before `now`, the earliest first, read
        from an index of due jobs (never a scan of every job)."""


class Disposition(enum.StrEnum):
    """What a consumer tells its queue about one message."""

    ACK = "ack"  # done, or nothing left to do: delete it
    RETRY = "retry"  # deliver again later (and dead-letter after the queue's limit)


MessageHandler = Callable[[JobMessage], Awaitable[Disposition]]


class Queue(Resource, Protocol):
    """Where job messages go; the consumer side belongs to the runtime (SQS, Pub/Sub, inprocess)."""

    async def send(self, message: JobMessage) -> None:
        """Send one message; `Unavailable` if it was not accepted."""


@runtime_checkable
class LocalConsumer(Protocol):
    """A queue that also delivers its messages inside this process."""

    def start_consuming(self, handler: MessageHandler) -> None:
        """Begin delivering messages to `handler` in the background of the running loop."""


class Cache(Resource, Protocol):
    """Bytes by key with a time to live; a miss is None."""

    async def get(self, key: str) -> bytes | None:
        """The value, or None when absent or expired."""

    async def set(self, key: str, value: bytes, *, ttl: int) -> None:
        """Store for `ttl` seconds."""

    async def delete(self, key: str) -> None:
        """Forget the key; absent keys are fine."""


@dataclass(frozen=True, slots=True)
class RateLimitResult:
    allowed: bool
    limit: int
    remaining: int
    reset_after: float  # seconds until the window frees a slot


class RateLimiter(Resource, Protocol):
    """Counts hits per key in a window."""

    async def hit(self, key: str, *, limit: int, window: int) -> RateLimitResult:
        """Count one hit for `key` and say whether it is within `limit` per `window` seconds."""


class IdempotencyStore(Protocol):
    """Idempotency-Key records, kept in the store's own database (so every instance sees them)
    and over the store's connections: opened, checked and closed with the store."""

    async def claim(self, record: IdempotencyRecord, *, now: datetime) -> IdempotencyRecord | None:
        """Insert the in-progress `record` unless a live record (`records.idempotency_live`)
        holds its key, in one conditional write; None when inserted, else the live record."""

    async def complete(
        self, key: str, *, token: str, response: StoredResponse, expires_at: datetime
    ) -> bool:
        """Keep `response` on the record `token` claimed; False if that claim no longer holds."""

    async def release(self, key: str, *, token: str) -> None:
        """Delete the record `token` claimed, if it still holds it, so a retry may run."""

    async def purge(self, *, now: datetime, limit: int) -> int:
        """Delete up to `limit` expired records; returns how many went."""
