"""The plain records that cross the ports: what a store keeps and a queue carries."""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from datetime import datetime
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


CLAIMABLE = frozenset({JobStatus.QUEUED, JobStatus.FAILED})


def can_claim(job: JobRecord, now: datetime) -> bool:
    """The claim rule every store enforces in its own conditional write."""
    if job.status in CLAIMABLE:
        return True
    return job.status is JobStatus.RUNNING and job.lease_until is not None and job.lease_until < now
