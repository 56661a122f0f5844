"""In-memory store: ships for tests and single-process development, and passes the same contract."""

from __future__ import annotations

import bisect
import copy
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

    async def open(self) -> None:
        return None

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def create_user(self, user: UserRecord) -> UserRecord:
        if user.id in self._users:
            raise AlreadyExists(f"user {user.id} exists", field="id")
        if user.email in self._emails:
            raise AlreadyExists("email is already registered", field="email")
        self._users[user.id] = user
        self._emails[user.email] = user.id
        bisect.insort(self._user_ids, user.id)
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

    async def create_job(self, job: JobRecord) -> JobRecord:
        if job.id in self._jobs:
            raise AlreadyExists(f"job {job.id} exists", field="id")
        self._jobs[job.id] = job.replace(payload=copy.deepcopy(job.payload))
        return job

    async def get_job(self, job_id: str) -> JobRecord | None:
        return self._jobs.get(job_id)

    async def claim_job(
        self, job_id: str, *, now: datetime, lease_until: datetime
    ) -> JobRecord | None:
        job = self._jobs.get(job_id)
        if job is None or not can_claim(job, now):
            return None
        claimed = job.replace(
            status=JobStatus.RUNNING,
            attempts=job.attempts + 1,
            started_at=now,
            updated_at=now,
            lease_until=lease_until,
            error=None,
        )
        self._jobs[job_id] = claimed
        return claimed

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
        finished = job.replace(
            status=status,
            finished_at=at,
            updated_at=at,
            lease_until=None,
            result=copy.deepcopy(result),
            error=error,
        )
        self._jobs[job_id] = finished
        return finished

    async def delete_job(self, job_id: str) -> None:
        self._jobs.pop(job_id, None)
