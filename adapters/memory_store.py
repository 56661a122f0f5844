"""In-memory store: ships for tests and single-process development, and passes the same contract."""

from __future__ import annotations

import bisect
import copy
from collections.abc import Sequence
from datetime import datetime

from adapters.errors import AlreadyExists, NotFound, VersionConflict
from adapters.ports import UserChanges
from adapters.records import JobRecord, JobStatus, Page, UserRecord, can_claim


class MemoryStore:
    # Every method runs without awaiting between its check and its write, so on
    # one event loop each is atomic, which is what the conditional writes of the
    # real stores give.

    def __init__(self) -> None:
        self._users: dict[str, UserRecord] = {}
        self._user_ids: list[str] = []  # sorted; ids are time-ordered, so this is creation order
        self._emails: dict[str, str] = {}
        self._jobs: dict[str, JobRecord] = {}
        self._due: dict[str, datetime] = {}  # job id -> due_at, for the jobs that have one

    async def open(self) -> None:
        return None

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def create_user(self, user: UserRecord, *, jobs: Sequence[JobRecord] = ()) -> UserRecord:
        if user.id in self._users:
            raise AlreadyExists(f"user {user.id} exists", field="id")
        if user.email in self._emails:
            raise AlreadyExists("email is already registered", field="email")
        self._check_new_jobs(jobs)
        self._users[user.id] = user
        self._emails[user.email] = user.id
        bisect.insort(self._user_ids, user.id)
        for job in jobs:
            self._put_job(job)
        return user

    async def get_user(self, user_id: str) -> UserRecord | None:
        return self._users.get(user_id)

    async def list_users(self, *, limit: int, after: str | None = None) -> Page[UserRecord]:
        start = 0 if after is None else bisect.bisect_right(self._user_ids, after)
        ids = self._user_ids[start : start + limit + 1]
        items = [self._users[i] for i in ids[:limit]]
        more = len(ids) > limit
        return Page(items=items, next_token=items[-1].id if more and items else None)

    async def update_user(
        self,
        user_id: str,
        changes: UserChanges,
        *,
        at: datetime,
        expected_version: int | None = None,
    ) -> UserRecord:
        current = self._users.get(user_id)
        if current is None:
            raise NotFound(f"user {user_id}")
        if expected_version is not None and current.version != expected_version:
            raise VersionConflict(f"user {user_id} is at version {current.version}")
        email = changes.get("email", current.email)
        owner = self._emails.get(email)
        if owner is not None and owner != user_id:
            raise AlreadyExists("email is already registered", field="email")
        updated = current.replace(**changes, version=current.version + 1, updated_at=at)
        self._users[user_id] = updated
        if email != current.email:
            del self._emails[current.email]
            self._emails[email] = user_id
        return updated

    async def delete_user(self, user_id: str) -> None:
        user = self._users.pop(user_id, None)
        if user is None:
            raise NotFound(f"user {user_id}")
        del self._emails[user.email]
        self._user_ids.remove(user_id)

    def _check_new_jobs(self, jobs: Sequence[JobRecord]) -> None:
        ids = [job.id for job in jobs]
        if len(set(ids)) != len(ids) or any(i in self._jobs for i in ids):
            raise AlreadyExists("job id is already taken", field="id")

    def _put_job(self, job: JobRecord) -> JobRecord:
        stored = job.replace(payload=copy.deepcopy(job.payload), result=copy.deepcopy(job.result))
        self._jobs[job.id] = stored
        if stored.due_at is None:
            self._due.pop(job.id, None)
        else:
            self._due[job.id] = stored.due_at
        return stored

    async def create_job(self, job: JobRecord) -> JobRecord:
        self._check_new_jobs([job])
        self._put_job(job)
        return job

    async def get_job(self, job_id: str) -> JobRecord | None:
        return self._jobs.get(job_id)

    async def claim_job(
        self, job_id: str, *, now: datetime, lease_until: datetime
    ) -> JobRecord | None:
        job = self._jobs.get(job_id)
        if job is None or not can_claim(job, now):
            return None
        return self._put_job(
            job.replace(
                status=JobStatus.RUNNING,
                attempts=job.attempts + 1,
                started_at=now,
                updated_at=now,
                lease_until=lease_until,
                due_at=lease_until,
                error=None,
            )
        )

    async def renew_lease(self, job_id: str, *, attempt: int, lease_until: datetime) -> bool:
        job = self._jobs.get(job_id)
        if job is None or job.status is not JobStatus.RUNNING or job.attempts != attempt:
            return False
        self._put_job(job.replace(lease_until=lease_until, due_at=lease_until))
        return True

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
        job = self._jobs.get(job_id)
        if job is None or job.status is not JobStatus.RUNNING or job.attempts != attempt:
            return None
        return self._put_job(
            job.replace(
                status=status,
                finished_at=at,
                updated_at=at,
                lease_until=None,
                due_at=None,
                result=result,
                error=error,
            )
        )

    async def reschedule(self, job_id: str, *, expected: datetime, due_at: datetime) -> bool:
        job = self._jobs.get(job_id)
        if job is None or job.due_at != expected:
            return False
        self._put_job(job.replace(due_at=due_at))
        return True

    async def due_jobs(self, *, now: datetime, limit: int) -> list[JobRecord]:
        due = sorted((at, job_id) for job_id, at in self._due.items() if at <= now)
        return [self._jobs[job_id] for _, job_id in due[:limit]]
