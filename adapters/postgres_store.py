"""PostgreSQL store (asyncpg): a lazy pool per process, every rule enforced by the database."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

# Without the asyncpg-stubs package asyncpg is untyped; the second code keeps mypy quiet once it is.
import asyncpg  # type: ignore[import-untyped, unused-ignore]

from adapters.errors import (
    AlreadyExists,
    ConfigurationError,
    NotFound,
    Unavailable,
    VersionConflict,
)
from adapters.ports import UserChanges
from adapters.records import JobRecord, JobStatus, Page, UserRecord

SCHEMES = frozenset({"postgresql", "postgres"})
_CHANGEABLE = ("email", "name", "welcomed_at")
# The constraint names of 0001_initial.sql, mapped to the field the caller broke.
_UNIQUE = {
    "users_email_key": ("email", "email is already registered"),
    "users_pkey": ("id", "user id is already taken"),
    "jobs_pkey": ("id", "job id is already taken"),
}
# After these the same request may succeed later: the server is unreachable, full or
# shutting down, cancelled the statement, or the connection broke.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, no socket; TimeoutError too (connect, acquire, command_timeout)
    asyncpg.PostgresConnectionError,  # class 08, and a connection closed mid-query
    asyncpg.InterfaceError,  # the connection or the pool is closed
    asyncpg.InsufficientResourcesError,  # class 53: too many connections, disk or memory full
    asyncpg.OperatorInterventionError,  # class 57: shutdown, starting up, statement_timeout
    asyncpg.TransactionRollbackError,  # class 40: serialization failure, deadlock
    asyncpg.InvalidAuthorizationSpecificationError,  # class 28: login refused
    asyncpg.InvalidCatalogNameError,  # 3D000: no such database
)
# Ours, not libpq's: removed from the URL before asyncpg sees it (asyncpg would send
# unknown query parameters to the server as settings).
_CACHE_PARAM = "statement_cache_size"


def parse_url(url: str) -> tuple[str, int]:
    """The DSN asyncpg gets and the prepared-statement cache size (100 unless the URL says)."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in SCHEMES:
        raise ConfigurationError(
            f"DATABASE_URL: {parts.scheme!r} is not postgresql:// or postgres://"
        )
    query = parse_qsl(parts.query, keep_blank_values=True)
    sizes = [value for key, value in query if key == _CACHE_PARAM]
    if not sizes:
        return url, 100
    try:
        size = int(sizes[-1])
    except ValueError:
        raise ConfigurationError(f"DATABASE_URL: {_CACHE_PARAM} must be a number") from None
    rest = urlencode([(key, value) for key, value in query if key != _CACHE_PARAM])
    return urlunsplit(parts._replace(query=rest)), size


def _json(value: dict[str, object] | None) -> str | None:
    return None if value is None else json.dumps(value)


def _user(row: asyncpg.Record) -> UserRecord:
    return UserRecord(
        id=row["id"],
        email=row["email"],
        name=row["name"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        version=row["version"],
        welcomed_at=row["welcomed_at"],
    )


def _job(row: asyncpg.Record) -> JobRecord:
    return JobRecord(
        id=row["id"],
        task=row["task"],
        payload=json.loads(row["payload"]),
        status=JobStatus(row["status"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        attempts=row["attempts"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        lease_until=row["lease_until"],
        result=None if row["result"] is None else json.loads(row["result"]),
        error=row["error"],
        owner=row["owner"],
        due_at=row["due_at"],
    )


_JOB_COLUMNS = (
    "id, task, payload, status, created_at, updated_at, attempts, started_at, finished_at,"
    " lease_until, result, error, owner, due_at"
)
_JOB_WIDTH = len(_JOB_COLUMNS.split(","))


def _job_values(job: JobRecord) -> list[object]:
    """The row of `_JOB_COLUMNS` for `job`."""
    return [
        job.id,
        job.task,
        _json(job.payload),
        job.status.value,
        job.created_at,
        job.updated_at,
        job.attempts,
        job.started_at,
        job.finished_at,
        job.lease_until,
        _json(job.result),
        job.error,
        job.owner,
        job.due_at,
    ]


def _insert_jobs(jobs: Sequence[JobRecord], first: int) -> str:
    """`INSERT INTO jobs ... VALUES (...), (...)` for `jobs`, numbering parameters from `first`."""
    rows = ", ".join(
        "(" + ", ".join(f"${first + n * _JOB_WIDTH + i}" for i in range(_JOB_WIDTH)) + ")"
        for n in range(len(jobs))
    )
    return f"INSERT INTO jobs ({_JOB_COLUMNS}) VALUES {rows}"  # noqa: S608 - numbered parameters


async def _keep_session(connection: asyncpg.Connection) -> None:
    # Replaces asyncpg's reset on release (advisory unlock, CLOSE ALL, UNLISTEN, RESET ALL):
    # the store leaves no session state, so that is a round trip per operation for nothing,
    # and RESET ALL pins the session behind RDS Proxy. asyncpg still rolls back any open
    # transaction before calling this.
    return None


class PostgresStore:
    def __init__(
        self,
        dsn: str,
        *,
        pool_max: int = 5,
        timeout: float = 2.0,
        statement_cache_size: int = 100,
    ) -> None:
        if pool_max < 1 or timeout <= 0:
            raise ConfigurationError("PostgreSQL: pool_max must be at least 1 and timeout positive")
        self.dsn = dsn
        self.pool_max = pool_max
        self.timeout = timeout
        self.statement_cache_size = statement_cache_size
        self._pool: asyncpg.Pool | None = None

    @classmethod
    def from_url(cls, url: str, *, pool_max: int, timeout: float) -> PostgresStore:
        """`postgresql://user:pass@host:port/db`, `postgres://…`, or Cloud SQL's socket form
        `postgresql://user@/db?host=/cloudsql/PROJECT:REGION:INSTANCE`. `statement_cache_size=0`
        in the query turns off named prepared statements (PgBouncer in transaction mode)."""
        dsn, cache_size = parse_url(url)
        return cls(dsn, pool_max=pool_max, timeout=timeout, statement_cache_size=cache_size)

    async def open(self) -> None:
        if self._pool is not None:
            return
        pool = asyncpg.create_pool(
            self.dsn,
            # No connection until the first query: open() does no I/O, so the app starts
            # (and /readyz can say why) while the database is down.
            min_size=0,
            max_size=self.pool_max,
            timeout=self.timeout,  # connecting
            command_timeout=self.timeout,  # each query, on the client
            statement_cache_size=self.statement_cache_size,
            # The server's own limit, which also holds if this client vanishes mid-query.
            server_settings={
                "application_name": "lambdarun",
                "statement_timeout": str(max(1, round(self.timeout * 1000))),
            },
            reset=_keep_session,
        )
        self._pool = await pool

    async def close(self) -> None:
        if self._pool is None:
            return
        pool, self._pool = self._pool, None
        try:
            await asyncio.wait_for(pool.close(), self.timeout)
        except TimeoutError:
            pool.terminate()  # a connection still busy after the grace: cut it

    async def ping(self) -> None:
        async with self._connection() as conn:
            await conn.fetchval("SELECT 1")

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.pool.PoolConnectionProxy]:
        """A pooled connection; the driver's errors become ours on the way out."""
        if self._pool is None:
            raise Unavailable("store", "PostgreSQL store is not open")
        try:
            async with self._pool.acquire(timeout=self.timeout) as conn:
                yield conn
        except asyncpg.UniqueViolationError as exc:
            field, message = _UNIQUE.get(exc.constraint_name or "", ("id", "already exists"))
            raise AlreadyExists(message, field=field) from exc
        except (asyncpg.UndefinedTableError, asyncpg.UndefinedColumnError) as exc:
            raise Unavailable("store", f"PostgreSQL: {exc}; run `lambdarun db upgrade`") from exc
        except UNAVAILABLE_ERRORS as exc:
            raise Unavailable("store", f"PostgreSQL: {type(exc).__name__}: {exc}") from exc

    async def _fetchrow(self, sql: str, *args: object) -> asyncpg.Record | None:
        async with self._connection() as conn:
            row: asyncpg.Record | None = await conn.fetchrow(sql, *args)
            return row

    async def create_user(self, user: UserRecord, *, jobs: Sequence[JobRecord] = ()) -> UserRecord:
        insert_user = (
            "INSERT INTO users (id, email, name, created_at, updated_at, version, welcomed_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7)"
        )
        args: list[object] = [
            user.id,
            user.email,
            user.name,
            user.created_at,
            user.updated_at,
            user.version,
            user.welcomed_at,
        ]
        if jobs:
            # One statement, so one round trip and atomic without BEGIN/COMMIT: the jobs are
            # written only if the user is (a data-modifying CTE runs in the statement's snapshot).
            insert_user = f"WITH new_user AS ({insert_user} RETURNING id) " + _insert_jobs(
                jobs, first=len(args) + 1
            )
            for job in jobs:
                args += _job_values(job)
        await self._fetchrow(insert_user, *args)
        return user

    async def get_user(self, user_id: str) -> UserRecord | None:
        row = await self._fetchrow("SELECT * FROM users WHERE id = $1", user_id)
        return None if row is None else _user(row)

    async def list_users(self, *, limit: int, after: str | None = None) -> Page[UserRecord]:
        async with self._connection() as conn:
            rows = await conn.fetch(
                "SELECT * FROM users WHERE id > $1 ORDER BY id LIMIT $2",
                after or "",
                limit + 1,
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
        given: dict[str, object] = dict(changes)
        values = [given[column] for column in _CHANGEABLE if column in given]
        assignments = "".join(
            f"{column} = ${i}, "
            for i, column in enumerate((c for c in _CHANGEABLE if c in given), start=3)
        )
        # Columns come from the fixed list above; every value is a parameter.
        sql = f"UPDATE users SET {assignments}version = version + 1, updated_at = $2 WHERE id = $1"  # noqa: S608
        args: list[object] = [user_id, at, *values]
        if expected_version is not None:
            args.append(expected_version)
            sql += f" AND version = ${len(args)}"
        row = await self._fetchrow(f"{sql} RETURNING *", *args)
        if row is not None:
            return _user(row)
        if await self.get_user(user_id) is None:
            raise NotFound(f"user {user_id}")
        raise VersionConflict(f"user {user_id} changed since version {expected_version}")

    async def delete_user(self, user_id: str) -> None:
        if await self._fetchrow("DELETE FROM users WHERE id = $1 RETURNING id", user_id) is None:
            raise NotFound(f"user {user_id}")

    async def create_job(self, job: JobRecord) -> JobRecord:
        await self._fetchrow(_insert_jobs([job], first=1), *_job_values(job))
        return job

    async def get_job(self, job_id: str) -> JobRecord | None:
        row = await self._fetchrow("SELECT * FROM jobs WHERE id = $1", job_id)
        return None if row is None else _job(row)

    async def claim_job(
        self, job_id: str, *, now: datetime, lease_until: datetime
    ) -> JobRecord | None:
        # The WHERE clause is `records.can_claim` ($2 is now). Concurrent claims queue on the
        # row lock and each re-checks it on the row the winner wrote: exactly one matches.
        row = await self._fetchrow(
            "UPDATE jobs SET status = 'running', attempts = attempts + 1, started_at = $2,"
            " updated_at = $2, lease_until = $3, due_at = $3, error = NULL WHERE id = $1"
            " AND (status IN ('queued', 'failed') OR (status = 'running' AND lease_until < $2))"
            " RETURNING *",
            job_id,
            now,
            lease_until,
        )
        return None if row is None else _job(row)

    async def renew_lease(self, job_id: str, *, attempt: int, lease_until: datetime) -> bool:
        row = await self._fetchrow(
            "UPDATE jobs SET lease_until = $3, due_at = $3 WHERE id = $1 AND status = 'running'"
            " AND attempts = $2 RETURNING id",
            job_id,
            attempt,
            lease_until,
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
        row = await self._fetchrow(
            "UPDATE jobs SET status = $3, finished_at = $4, updated_at = $4, lease_until = NULL,"
            " due_at = NULL, result = $5, error = $6 WHERE id = $1 AND status = 'running'"
            " AND attempts = $2 RETURNING *",
            job_id,
            attempt,
            status.value,
            at,
            _json(result),
            error,
        )
        return None if row is None else _job(row)

    async def reschedule(self, job_id: str, *, expected: datetime, due_at: datetime) -> bool:
        row = await self._fetchrow(
            "UPDATE jobs SET due_at = $3 WHERE id = $1 AND due_at = $2 RETURNING id",
            job_id,
            expected,
            due_at,
        )
        return row is not None

    async def due_jobs(self, *, now: datetime, limit: int) -> list[JobRecord]:
        async with self._connection() as conn:
            rows = await conn.fetch(
                "SELECT * FROM jobs WHERE due_at <= $1 ORDER BY due_at LIMIT $2", now, limit
            )
        return [_job(row) for row in rows]
