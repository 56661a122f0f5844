"""SQLite store (aiosqlite): the embedded default, a real file with real constraints."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiosqlite

from adapters.errors import AlreadyExists, NotFound, Unavailable, VersionConflict
from adapters.ports import UserChanges
from adapters.records import JobRecord, JobStatus, Page, UserRecord, sortable_time

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id          TEXT PRIMARY KEY,
    email       TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    version     INTEGER NOT NULL,
    welcomed_at TEXT
);
CREATE TABLE IF NOT EXISTS jobs (
    id          TEXT PRIMARY KEY,
    task        TEXT NOT NULL,
    payload     TEXT NOT NULL,
    status      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    attempts    INTEGER NOT NULL,
    started_at  TEXT,
    finished_at TEXT,
    lease_until TEXT,
    result      TEXT,
    error       TEXT,
    owner       TEXT,
    due_at      TEXT
);
-- Idempotency-Key records (adapters/sqlite_idempotency.py); status NULL while in progress.
CREATE TABLE IF NOT EXISTS idempotency (
    key          TEXT PRIMARY KEY,
    fingerprint  TEXT NOT NULL,
    token        TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    locked_until TEXT NOT NULL,
    status       INTEGER,
    headers      TEXT,
    body         BLOB
);
"""
# Columns added after their table was first made. CREATE TABLE IF NOT EXISTS leaves an existing
# development database as it is, so open() adds them there.
_ADDED_COLUMNS = (("jobs", "owner", "TEXT"), ("jobs", "due_at", "TEXT"))
# After the columns exist. Partial: only jobs with a due time are in it, which is what the
# sweeper reads.
_INDEXES = "CREATE INDEX IF NOT EXISTS jobs_due_at ON jobs (due_at) WHERE due_at IS NOT NULL"
_JOB_COLUMNS = (
    "id, task, payload, status, created_at, updated_at, attempts, started_at, finished_at,"
    " lease_until, result, error, owner, due_at"
)
_USER_COLUMNS = ("email", "name", "welcomed_at")
_PLACEHOLDERS = ", ".join("?" for _ in _JOB_COLUMNS.split(","))
_INSERT_JOB = f"INSERT INTO jobs ({_JOB_COLUMNS}) VALUES ({_PLACEHOLDERS})"  # noqa: S608
# The claim rule of records.can_claim, as one conditional write.
_CLAIM_SQL = (
    "UPDATE jobs SET status = 'running', attempts = attempts + 1, started_at = ?,"
    " updated_at = ?, lease_until = ?, due_at = ?, error = NULL WHERE id = ?"
    " AND (status IN ('queued', 'failed') OR (status = 'running' AND lease_until < ?))"
    " RETURNING *"
)


def _ts(value: datetime | None) -> str | None:
    return None if value is None else sortable_time(value)


def _dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _user(row: sqlite3.Row) -> UserRecord:
    return UserRecord(
        id=row["id"],
        email=row["email"],
        name=row["name"],
        created_at=datetime.fromisoformat(row["created_at"]),
        updated_at=datetime.fromisoformat(row["updated_at"]),
        version=row["version"],
        welcomed_at=_dt(row["welcomed_at"]),
    )


def _job(row: sqlite3.Row) -> JobRecord:
    return JobRecord(
        id=row["id"],
        task=row["task"],
        payload=json.loads(row["payload"]),
        status=JobStatus(row["status"]),
        created_at=datetime.fromisoformat(row["created_at"]),
        updated_at=datetime.fromisoformat(row["updated_at"]),
        attempts=row["attempts"],
        started_at=_dt(row["started_at"]),
        finished_at=_dt(row["finished_at"]),
        lease_until=_dt(row["lease_until"]),
        result=None if row["result"] is None else json.loads(row["result"]),
        error=row["error"],
        owner=row["owner"],
        due_at=_dt(row["due_at"]),
    )


def _job_values(job: JobRecord) -> tuple[Any, ...]:
    """The row of `_JOB_COLUMNS` for `job`."""
    return (
        job.id,
        job.task,
        json.dumps(job.payload),
        job.status.value,
        _ts(job.created_at),
        _ts(job.updated_at),
        job.attempts,
        _ts(job.started_at),
        _ts(job.finished_at),
        _ts(job.lease_until),
        None if job.result is None else json.dumps(job.result),
        job.error,
        job.owner,
        _ts(job.due_at),
    )


async def _add_columns(db: aiosqlite.Connection) -> None:
    for table, column, kind in _ADDED_COLUMNS:
        # Names from the fixed _ADDED_COLUMNS, never from input.
        async with db.execute(f"PRAGMA table_info({table})") as cursor:
            present = {row["name"] for row in await cursor.fetchall()}
        if column in present:
            continue
        try:
            await db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
        except sqlite3.OperationalError as exc:
            if "duplicate column" not in str(exc):  # else another process added it just now
                raise


class SqliteStore:
    def __init__(self, path: str) -> None:
        self.path = path
        self._db: aiosqlite.Connection | None = None
        # One connection serves every coroutine, and a transaction spans several statements:
        # the lock keeps another coroutine's statement from landing inside one (aiosqlite runs
        # statements one at a time, but in whatever order coroutines await them).
        self._lock = asyncio.Lock()

    @classmethod
    def from_url(cls, url: str) -> SqliteStore:
        """`sqlite:///relative/path.db`, `sqlite:////absolute/path.db` or `sqlite:///:memory:`."""
        path = urlsplit(url).path.removeprefix("/")
        return cls(path or ":memory:")

    async def open(self) -> None:
        if self._db is not None:
            return
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            db = await aiosqlite.connect(self.path, isolation_level=None)
            db.row_factory = sqlite3.Row
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA busy_timeout=5000")
            await db.executescript(_SCHEMA)
            await _add_columns(db)
            await db.execute(_INDEXES)
        except sqlite3.Error as exc:
            raise Unavailable("store", f"cannot open SQLite database {self.path}: {exc}") from exc
        self._db = db

    async def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            await db.close()

    async def ping(self) -> None:
        await self._fetchone("SELECT 1")

    @property
    def _conn(self) -> aiosqlite.Connection:
        if self._db is None:
            raise Unavailable("store", "SQLite store is not open")
        return self._db

    async def _run(self, sql: str, args: Sequence[Any]) -> list[sqlite3.Row]:
        """One statement on the connection; the caller holds the lock."""
        try:
            async with self._conn.execute(sql, args) as cursor:
                return list(await cursor.fetchall())
        except sqlite3.IntegrityError:
            raise
        except (sqlite3.Error, ValueError) as exc:  # aiosqlite: ValueError once closed
            raise Unavailable("store", f"SQLite: {exc}") from exc

    async def _fetchone(self, sql: str, *args: Any) -> sqlite3.Row | None:
        async with self._lock:
            rows = await self._run(sql, args)
        return rows[0] if rows else None

    async def _fetchall(self, sql: str, *args: Any) -> list[sqlite3.Row]:
        async with self._lock:
            return await self._run(sql, args)

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[None]:
        """Statements run through `_run` inside commit together or not at all. IMMEDIATE takes
        the write lock at BEGIN, so a busy database fails here rather than at COMMIT."""
        async with self._lock:
            await self._run("BEGIN IMMEDIATE", ())
            try:
                yield
            except BaseException:
                with contextlib.suppress(Unavailable):  # else the connection, and it, are gone
                    await self._run("ROLLBACK", ())
                raise
            await self._run("COMMIT", ())

    async def create_user(self, user: UserRecord, *, jobs: Sequence[JobRecord] = ()) -> UserRecord:
        try:
            async with self._transaction():
                await self._run(
                    "INSERT INTO users VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        user.id,
                        user.email,
                        user.name,
                        _ts(user.created_at),
                        _ts(user.updated_at),
                        user.version,
                        _ts(user.welcomed_at),
                    ),
                )
                for job in jobs:
                    await self._run(_INSERT_JOB, _job_values(job))
        except sqlite3.IntegrityError as exc:
            field = "email" if "users.email" in str(exc) else "id"
            raise AlreadyExists(f"{field} is already registered", field=field) from exc
        return user

    async def get_user(self, user_id: str) -> UserRecord | None:
        row = await self._fetchone("SELECT * FROM users WHERE id = ?", user_id)
        return None if row is None else _user(row)

    async def list_users(self, *, limit: int, after: str | None = None) -> Page[UserRecord]:
        rows = await self._fetchall(
            "SELECT * FROM users WHERE id > ? ORDER BY id LIMIT ?", after or "", limit + 1
        )
        items = [_user(row) for row in rows[:limit]]
        return Page(items=items, next_token=items[-1].id if len(rows) > limit else None)

    async def update_user(
        self,
        user_id: str,
        changes: UserChanges,
        *,
        at: datetime,
        expected_version: int | None = None,
    ) -> UserRecord:
        values: dict[str, Any] = {k: changes[k] for k in _USER_COLUMNS if k in changes}  # type: ignore[literal-required]
        if "welcomed_at" in values:
            values["welcomed_at"] = _ts(values["welcomed_at"])
        assignments = "".join(f"{column} = ?, " for column in values)
        # Column names come from the fixed _USER_COLUMNS, never from input.
        sql = f"UPDATE users SET {assignments}version = version + 1, updated_at = ? WHERE id = ?"  # noqa: S608
        args: list[Any] = [*values.values(), _ts(at), user_id]
        if expected_version is not None:
            sql += " AND version = ?"
            args.append(expected_version)
        try:
            row = await self._fetchone(sql + " RETURNING *", *args)
        except sqlite3.IntegrityError as exc:
            raise AlreadyExists("email is already registered", field="email") from exc
        if row is not None:
            return _user(row)
        if await self.get_user(user_id) is None:
            raise NotFound(f"user {user_id}")
        raise VersionConflict(f"user {user_id} changed since version {expected_version}")

    async def delete_user(self, user_id: str) -> None:
        if await self._fetchone("DELETE FROM users WHERE id = ? RETURNING id", user_id) is None:
            raise NotFound(f"user {user_id}")

    async def create_job(self, job: JobRecord) -> JobRecord:
        try:
            await self._fetchone(_INSERT_JOB, *_job_values(job))
        except sqlite3.IntegrityError as exc:
            raise AlreadyExists(f"job {job.id} exists", field="id") from exc
        return job

    async def get_job(self, job_id: str) -> JobRecord | None:
        row = await self._fetchone("SELECT * FROM jobs WHERE id = ?", job_id)
        return None if row is None else _job(row)

    async def claim_job(
        self, job_id: str, *, now: datetime, lease_until: datetime
    ) -> JobRecord | None:
        row = await self._fetchone(
            _CLAIM_SQL, _ts(now), _ts(now), _ts(lease_until), _ts(lease_until), job_id, _ts(now)
        )
        return None if row is None else _job(row)

    async def renew_lease(self, job_id: str, *, attempt: int, lease_until: datetime) -> bool:
        row = await self._fetchone(
            "UPDATE jobs SET lease_until = ?, due_at = ? WHERE id = ? AND status = 'running'"
            " AND attempts = ? RETURNING id",
            _ts(lease_until),
            _ts(lease_until),
            job_id,
            attempt,
        )
        return row is not None

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
        row = await self._fetchone(
            "UPDATE jobs SET status = ?, finished_at = ?, updated_at = ?, lease_until = NULL,"
            " due_at = NULL, result = ?, error = ? WHERE id = ? AND status = 'running'"
            " AND attempts = ? RETURNING *",
            status.value,
            _ts(at),
            _ts(at),
            None if result is None else json.dumps(result),
            error,
            job_id,
            attempt,
        )
        return None if row is None else _job(row)

    async def reschedule(self, job_id: str, *, expected: datetime, due_at: datetime) -> bool:
        row = await self._fetchone(
            "UPDATE jobs SET due_at = ? WHERE id = ? AND due_at = ? RETURNING id",
            _ts(due_at),
            job_id,
            _ts(expected),
        )
        return row is not None

    async def due_jobs(self, *, now: datetime, limit: int) -> list[JobRecord]:
        rows = await self._fetchall(
            "SELECT * FROM jobs WHERE due_at <= ? ORDER BY due_at LIMIT ?", _ts(now), limit
        )
        return [_job(row) for row in rows]
