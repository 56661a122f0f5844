"""The plain records that cross the ports: what a store keeps and a queue carries."""

from __future__ import annotations

import dataclasses
import enum
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class UserRecord:
    id: str
    email: str
    name: str
    created_at: datetime
    updated_at: datetime
    version: int = 1
    welcomed_at: datetime | None = None

    def replace(self, **changes: Any) -> UserRecord:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True, slots=True)
class JobRecord:
    id: str
    task: str
    payload: dict[str, Any]
    status: JobStatus
    created_at: datetime
    updated_at: datetime
    attempts: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # A running job whose lease has passed is presumed abandoned (its worker died)
    # and may be claimed again.
    lease_until: datetime | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    # The submitter's subject (the token's `sub`); None when AUTH=off. Only the owner, or a
    # holder of jobs:admin, may read the job.
    owner: str | None = None
    # When the sweeper should (re)send this job's message if nothing else has happened by then
    # (docs/jobs.md): the outbox entry. Set at creation (a grace for the request's own send),
    # moved on by each send and claim, cleared when the job ends.
    due_at: datetime | None = None

    def replace(self, **changes: Any) -> JobRecord:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a listing; `next_token` is the store's own resume point, opaque to callers."""

    items: list[T]
    next_token: str | None = None


@dataclass(frozen=True, slots=True)
class JobMessage:
    """What a queue carries for one job; `version` lets the format change without a flag day."""

    job_id: str
    task: str
    payload: dict[str, Any]
    version: int = 1
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ScheduleTick:
    """A scheduler's call to run one scheduled task (EventBridge Scheduler invoking the worker,
    Cloud Scheduler publishing to the jobs topic, the in-process scheduler)."""

    schedule: str
    scheduled_time: datetime | None = None  # when the scheduler meant it to run, if it says


def sortable_time(value: datetime) -> str:
    """A fixed-width UTC text form: compared as strings (SQLite, DynamoDB conditions) it orders
    as the times do."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


CLAIMABLE = frozenset({JobStatus.QUEUED, JobStatus.FAILED})


def can_claim(job: JobRecord, now: datetime) -> bool:
    """The claim rule every store enforces in its own conditional write."""
    if job.status in CLAIMABLE:
        return True
    return job.status is JobStatus.RUNNING and job.lease_until is not None and job.lease_until < now


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """An HTTP answer kept for an Idempotency-Key: status, the app's own headers, body."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def headers_json(self) -> str:
        """The headers as every store keeps them: a JSON list of [name, value] pairs."""
        return json.dumps(self.headers)

    @classmethod
    def stored(cls, status: int, headers_json: str, body: bytes) -> StoredResponse:
        """The answer from a store's columns (`headers_json` as `headers_json()` wrote it)."""
        headers = tuple((name, value) for name, value in json.loads(headers_json))
        return cls(status=status, headers=headers, body=body)


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    """One Idempotency-Key of one caller: in progress (no response yet) under `token` until
    `locked_until`, then complete; gone at `expires_at`."""

    key: str  # a hash of the caller and the client's key
    fingerprint: str  # a hash of the request it was first used with
    token: str  # which claim holds it
    expires_at: datetime
    locked_until: datetime
    response: StoredResponse | None = None


def idempotency_live(record: IdempotencyRecord, now: datetime) -> bool:
    """The rule every idempotency store enforces in its conditional insert: a record holds its
    key until it expires, and while in progress only until its lock passes (its request died)."""
    return record.expires_at > now and (record.response is not None or record.locked_until > now)
