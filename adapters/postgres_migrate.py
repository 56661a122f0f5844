"""PostgreSQL migrations: the ordered SQL files of `postgres_migrations`, each applied once."""

# Why a 100-line runner and not alembic or yoyo: alembic is built on SQLAlchemy (tens of
# milliseconds of imports and a second database layer beside asyncpg), yoyo drives its own
# DB-API connection (psycopg) and asks for a package of its own. What we need is small: ordered
# plain-SQL files, a table of what was applied, one transaction per file, and a lock so two
# instances starting at once do not race. Only `lambdarun db upgrade` imports this module;
# the app never does, so none of it reaches a cold start. Not supported, on purpose:
# downgrades (write a new migration), and statements that refuse a transaction
# (CREATE INDEX CONCURRENTLY).

from __future__ import annotations

import hashlib
import re
from importlib.resources import files
from importlib.resources.abc import Traversable

import asyncpg  # type: ignore[import-untyped, unused-ignore]

from adapters.errors import AdapterError, Unavailable
from adapters.postgres_store import UNAVAILABLE_ERRORS, parse_url

_FILE_NAME = re.compile(r"^(?P<number>\d{4})_[a-z0-9_]+\.sql$")
# One key for this schema; advisory locks are per database, so other databases on the same
# server (parallel test sessions) never wait on it. The value is "lambdaru" in ASCII.
LOCK_KEY = 0x6C616D6264617275
_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    text PRIMARY KEY,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


class MigrationError(AdapterError):
    """A migration failed, is misnamed, or was edited after it was applied."""


def migrations(directory: Traversable | None = None) -> list[tuple[str, str]]:
    """(version, SQL) of every migration file, in order; the version is the name without .sql."""
    found: list[tuple[str, str]] = []
    for entry in (directory or files("adapters.postgres_migrations")).iterdir():
        if not entry.name.endswith(".sql"):
            continue
        if _FILE_NAME.match(entry.name) is None:
            raise MigrationError(f"{entry.name}: migration files are named NNNN_words.sql")
        found.append((entry.name.removesuffix(".sql"), entry.read_text(encoding="utf-8")))
    found.sort()
    numbers = [version[:4] for version, _ in found]
    if len(set(numbers)) != len(numbers):
        raise MigrationError(f"two migration files share a number: {sorted(numbers)}")
    return found


def _checksum(sql: str) -> str:
    return hashlib.sha256(sql.encode()).hexdigest()


async def upgrade(
    url: str,
    *,
    directory: Traversable | None = None,
    connect_timeout: float = 10.0,
    lock_timeout: float = 120.0,
) -> list[str]:
    """Apply the migrations this database lacks, in order; returns the versions applied.

    `connect_timeout` bounds connecting, `lock_timeout` the wait for another instance's upgrade.
    """
    pending = migrations(directory)
    dsn, cache_size = parse_url(url)
    try:
        conn = await asyncpg.connect(
            dsn,
            timeout=connect_timeout,
            statement_cache_size=cache_size,
            server_settings={"application_name": "lambdarun-migrate"},
        )
    except UNAVAILABLE_ERRORS as exc:
        raise Unavailable("store", f"PostgreSQL: {type(exc).__name__}: {exc}") from exc
    try:
        await _lock(conn, lock_timeout)
        # Closing the connection below ends the session, which releases the lock.
        return await _apply(conn, pending)
    except UNAVAILABLE_ERRORS as exc:
        raise Unavailable("store", f"PostgreSQL: {type(exc).__name__}: {exc}") from exc
    finally:
        await conn.close()


async def _lock(conn: asyncpg.Connection, lock_timeout: float) -> None:
    # Session-level, so it spans the per-file transactions. Through PgBouncer in transaction
    # mode a session lock means nothing: run upgrades on a direct connection.
    await conn.execute(f"SET lock_timeout = {max(1, round(lock_timeout * 1000))}")
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
    except asyncpg.LockNotAvailableError as exc:
        raise MigrationError(
            f"another upgrade held the migration lock for over {lock_timeout:g}s"
        ) from exc
    await conn.execute("RESET lock_timeout")


async def _apply(conn: asyncpg.Connection, pending: list[tuple[str, str]]) -> list[str]:
    await conn.execute(_CREATE_TABLE)
    rows = await conn.fetch("SELECT version, checksum FROM schema_migrations")
    applied: dict[str, str] = {row["version"]: row["checksum"] for row in rows}
    done: list[str] = []
    for version, sql in pending:
        checksum = _checksum(sql)
        if version in applied:
            if applied[version] != checksum:
                raise MigrationError(
                    f"{version} changed after it was applied; add a new migration instead"
                )
            continue
        try:
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, checksum) VALUES ($1, $2)",
                    version,
                    checksum,
                )
        except UNAVAILABLE_ERRORS:
            raise
        except asyncpg.PostgresError as exc:
            raise MigrationError(f"{version}: {type(exc).__name__}: {exc}") from exc
        done.append(version)
    return done
