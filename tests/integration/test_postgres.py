"""PostgresStore and its migrations against real servers: the shared one and a throwaway one."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped, unused-ignore]
import pytest

from adapters.errors import ConfigurationError, Unavailable
from adapters.postgres_migrate import MigrationError, migrations, upgrade
from adapters.postgres_store import PostgresStore
from adapters.records import JobRecord, JobStatus, UserRecord
from api.ids import new_id
from tests.support.postgres import (
    ThrowawayServer,
    fresh_database,
    throwaway_server,
)

pytestmark = pytest.mark.service("postgres")

NOW = datetime(2026, 11, 30, 12, 0, 0, 123456, tzinfo=UTC)
VERSIONS = [version for version, _ in migrations()]
# Room for a pool of 5, one checking connection and one backend still exiting.
MAX_CONNECTIONS = 7


def a_user() -> UserRecord:
    user_id = new_id()
    return UserRecord(
        id=user_id, email=f"{user_id}@example.com", name="Ada", created_at=NOW, updated_at=NOW
    )


def with_query(url: str, parameter: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{parameter}"


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def eventually(check: Callable[[], Awaitable[object]], *, within: float = 20.0) -> None:
    """Poll `check` until it stops raising Unavailable, for at most `within` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        try:
            await check()
            return
        except Unavailable:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.05)


async def fetchval(url: str, sql: str, *args: object) -> object:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def cluster() -> Iterator[ThrowawayServer]:
    server = throwaway_server(max_connections=MAX_CONNECTIONS)
    yield server
    server.remove()


@pytest.fixture
def server(cluster: ThrowawayServer) -> ThrowawayServer:
    """The throwaway server, running (a test before may have stopped it)."""
    if not cluster.is_running():
        cluster.start()
    return cluster


# Migrations


async def test_upgrade_applies_every_file_once_and_is_idempotent() -> None:
    async with fresh_database(migrate=False) as url:
        assert await upgrade(url) == VERSIONS
        assert await upgrade(url) == []
        assert await fetchval(url, "SELECT count(*) FROM schema_migrations") == len(VERSIONS)
        assert await fetchval(url, "SELECT to_regclass('users') IS NOT NULL")


async def test_concurrent_upgrades_apply_each_file_once() -> None:
    async with fresh_database(migrate=False) as url:
        results = await asyncio.gather(*(upgrade(url) for _ in range(6)))
        applied = [version for result in results for version in result]
        assert applied == VERSIONS
        versions = await fetchval(
            url, "SELECT array_agg(version ORDER BY version) FROM schema_migrations"
        )
        assert versions == VERSIONS


async def test_new_files_apply_in_order_and_applied_ones_must_not_change(tmp_path: Path) -> None:
    (tmp_path / "0001_first.sql").write_text("CREATE TABLE first (n int);")
    async with fresh_database(migrate=False) as url:
        assert await upgrade(url, directory=tmp_path) == ["0001_first"]
        (tmp_path / "0003_third.sql").write_text("ALTER TABLE second ADD COLUMN m int;")
        (tmp_path / "0002_second.sql").write_text("CREATE TABLE second (n int);")
        assert await upgrade(url, directory=tmp_path) == ["0002_second", "0003_third"]
        (tmp_path / "0001_first.sql").write_text("CREATE TABLE first (n bigint);")
        with pytest.raises(MigrationError, match="0001_first changed"):
            await upgrade(url, directory=tmp_path)


async def test_a_failing_migration_is_rolled_back_whole(tmp_path: Path) -> None:
    (tmp_path / "0001_good.sql").write_text("CREATE TABLE good (n int);")
    (tmp_path / "0002_bad.sql").write_text("CREATE TABLE half (n int);\nSELECT 1 / 0;")
    async with fresh_database(migrate=False) as url:
        with pytest.raises(MigrationError, match="0002_bad"):
            await upgrade(url, directory=tmp_path)
        assert await fetchval(url, "SELECT to_regclass('good') IS NOT NULL")
        assert await fetchval(url, "SELECT to_regclass('half') IS NULL")
        assert await fetchval(url, "SELECT array_agg(version) FROM schema_migrations") == [
            "0001_good"
        ]


async def test_misnamed_migration_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "1_first.sql").write_text("SELECT 1;")
    async with fresh_database(migrate=False) as url:
        with pytest.raises(MigrationError, match="NNNN_words"):
            await upgrade(url, directory=tmp_path)
        assert await fetchval(url, "SELECT to_regclass('schema_migrations') IS NULL")


async def test_the_store_creates_no_tables_and_says_to_upgrade() -> None:
    async with fresh_database(migrate=False) as url:
        store = PostgresStore.from_url(url, pool_max=2, timeout=5)
        await store.open()
        try:
            await store.ping()
            with pytest.raises(Unavailable, match="db upgrade"):
                await store.get_user(new_id())
        finally:
            await store.close()
        assert await fetchval(url, "SELECT to_regclass('users') IS NULL")


# Construction and connections


async def test_both_url_schemes_and_the_statement_cache_option_reach_the_database() -> None:
    async with fresh_database() as url:
        with pytest.raises(ConfigurationError, match="DATABASE_URL"):
            PostgresStore.from_url(url.replace("postgresql", "mysql", 1), pool_max=1, timeout=1)
        with pytest.raises(ConfigurationError, match="statement_cache_size"):
            PostgresStore.from_url(with_query(url, "statement_cache_size=x"), pool_max=1, timeout=1)
        for variant in (
            url.replace("postgresql://", "postgres://", 1),
            with_query(url, "statement_cache_size=0"),
        ):
            store = PostgresStore.from_url(variant, pool_max=1, timeout=5)
            await store.open()
            try:
                user = await store.create_user(a_user())
                assert await store.get_user(user.id) == user
            finally:
                await store.close()


async def test_a_closed_store_opens_again() -> None:
    async with fresh_database() as url:
        store = PostgresStore.from_url(url, pool_max=1, timeout=5)
        await store.open()
        await store.ping()
        await store.close()
        with pytest.raises(Unavailable, match="not open"):
            await store.ping()
        await store.open()
        await store.ping()
        await store.close()


async def test_connection_refused_is_unavailable_from_ping_and_from_a_read() -> None:
    async with fresh_database() as url:
        working = PostgresStore.from_url(url, pool_max=1, timeout=5)
        await working.open()
        await working.ping()  # the same URL but for the port reaches the database
        await working.close()
        parts = urlsplit(url)
        netloc = f"{parts.username}@127.0.0.1:{unused_port()}"
        refused = PostgresStore.from_url(
            urlunsplit(parts._replace(netloc=netloc)), pool_max=1, timeout=5
        )
        await refused.open()  # connects lazily, so this succeeds
        try:
            with pytest.raises(Unavailable) as from_ping:
                await refused.ping()
            assert isinstance(from_ping.value.__cause__, ConnectionRefusedError)
            with pytest.raises(Unavailable) as from_read:
                await refused.get_user(new_id())
            assert from_read.value.component == "store"
            with pytest.raises(Unavailable):
                await refused.create_user(a_user())
        finally:
            await refused.close()


async def test_a_statement_stuck_behind_a_lock_times_out_as_unavailable() -> None:
    async with fresh_database() as url:
        store = PostgresStore.from_url(url, pool_max=2, timeout=1.0)
        await store.open()
        blocker = await asyncpg.connect(url, timeout=10)
        try:
            user = await store.create_user(a_user())
            async with blocker.transaction():
                await blocker.execute("SELECT 1 FROM users WHERE id = $1 FOR UPDATE", user.id)
                with pytest.raises(Unavailable) as raised:
                    await store.update_user(user.id, {"name": "late"}, at=NOW)
                cause = raised.value.__cause__
                assert isinstance(cause, TimeoutError | asyncpg.QueryCanceledError)
            updated = await store.update_user(user.id, {"name": "on time"}, at=NOW)
            assert updated.name == "on time"
        finally:
            await blocker.close()
            await store.close()


async def test_datetimes_read_back_equal_and_in_utc_whatever_the_session_zone() -> None:
    async with fresh_database() as url:
        name = urlsplit(url).path.lstrip("/")
        admin = await asyncpg.connect(url, timeout=10)
        await admin.execute(f"ALTER DATABASE \"{name}\" SET timezone TO 'Pacific/Chatham'")
        await admin.close()
        store = PostgresStore.from_url(url, pool_max=1, timeout=5)
        await store.open()
        try:
            job = JobRecord(
                id=new_id(),
                task="t",
                payload={"a": [1, 2.5, None, "é"], "b": {"c": True}},
                status=JobStatus.QUEUED,
                created_at=NOW,
                updated_at=NOW + timedelta(microseconds=1),
            )
            await store.create_job(job)
            read = await store.get_job(job.id)
            assert read == job
            assert read.created_at.utcoffset() == timedelta(0)
        finally:
            await store.close()


# The throwaway server: Cloud SQL's URL form, limits, and a restart


async def test_the_cloud_sql_socket_url_form_connects(server: ThrowawayServer) -> None:
    url = server.url()
    assert url.startswith("postgresql://postgres@/postgres?host=/")
    assert url.endswith("/cloudsql/lambdarun-test:europe-west1:db")
    async with fresh_database(url) as migrated:
        store = PostgresStore.from_url(migrated, pool_max=1, timeout=5)
        await store.open()
        try:
            user = await store.create_user(a_user())
            assert await store.get_user(user.id) == user
        finally:
            await store.close()


async def test_the_store_recovers_without_restart_when_the_server_comes_back(
    server: ThrowawayServer,
) -> None:
    async with fresh_database(server.url()) as url:
        store = PostgresStore.from_url(url, pool_max=2, timeout=5)
        await store.open()
        try:
            user = await store.create_user(a_user())
            await asyncio.to_thread(server.stop)
            with pytest.raises(Unavailable):
                await store.ping()
            with pytest.raises(Unavailable):
                await store.get_user(user.id)
            await asyncio.to_thread(server.start)
            await eventually(store.ping)
            assert await store.get_user(user.id) == user
            await store.create_user(a_user())
        finally:
            await store.close()


async def test_too_many_connections_is_unavailable_until_slots_free(
    server: ThrowawayServer,
) -> None:
    async with fresh_database(server.url()) as url:
        store = PostgresStore.from_url(url, pool_max=1, timeout=5)
        await store.open()
        hogs: list[asyncpg.Connection] = []
        try:
            with pytest.raises(asyncpg.TooManyConnectionsError):  # noqa: PT012 - fill every slot
                for _ in range(MAX_CONNECTIONS + 5):
                    hogs.append(await asyncpg.connect(url, timeout=10))
            with pytest.raises(Unavailable) as raised:
                await store.ping()
            assert isinstance(raised.value.__cause__, asyncpg.TooManyConnectionsError)
        finally:
            await asyncio.gather(*(hog.close() for hog in hogs))
        try:
            await eventually(store.ping)
        finally:
            await store.close()


async def test_a_pool_of_five_serves_200_concurrent_operations(server: ThrowawayServer) -> None:
    async with fresh_database(server.url()) as url:
        store = PostgresStore.from_url(url, pool_max=5, timeout=10)
        await store.open()

        async def one() -> None:
            user = await store.create_user(a_user())
            assert await store.get_user(user.id) == user
            await store.update_user(user.id, {"name": "Ada King"}, at=NOW, expected_version=1)

        try:
            outcomes = await asyncio.gather(*(one() for _ in range(200)), return_exceptions=True)
            assert [o for o in outcomes if o is not None] == []
            # Idle pooled connections stay open, so this counts every one the pool made.
            opened = await fetchval(
                url,
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND application_name = 'lambdarun'",
            )
            assert opened == 5
            assert len((await store.list_users(limit=500)).items) == 200
        finally:
            await store.close()
