"""PostgreSQL in tests: a throwaway database per use, and a throwaway server a test may kill."""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped, unused-ignore]

from adapters.ports import Store
from adapters.postgres_migrate import upgrade
from adapters.postgres_store import PostgresStore
from tests.support.services import service_missing

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
# Cloud SQL's socket directory is /cloudsql/PROJECT:REGION:INSTANCE; the throwaway server
# puts its socket under a directory of that shape so its URL has exactly Cloud SQL's form.
CLOUD_SQL_DIR = "cloudsql/lambdarun-test:europe-west1:db"


def test_database_url() -> str:
    return os.environ.get("TEST_DATABASE_URL", DEFAULT_URL)


def with_database(url: str, name: str) -> str:
    """The same server and options, another database."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


async def admin_connection(url: str) -> asyncpg.Connection:
    """A connection to `url`, or the test is skipped (failed under CI=true) saying why."""
    try:
        conn: asyncpg.Connection = await asyncpg.connect(url, timeout=10)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        host = urlsplit(url).hostname or url.partition("?")[2]
        service_missing("postgres", f"{host}: {type(exc).__name__}: {exc}")
        raise  # service_missing always raises; this tells the type checker
    return conn


@asynccontextmanager
async def fresh_database(
    admin_url: str | None = None, *, migrate: bool = True
) -> AsyncIterator[str]:
    """Create `lambdarun_<random>` beside `admin_url`'s database, migrate it, drop it after."""
    admin_url = admin_url or test_database_url()
    name = f"lambdarun_{secrets.token_hex(6)}"
    admin = await admin_connection(admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()  # not held meanwhile: the throwaway server has few slots
    try:
        url = with_database(admin_url, name)
        if migrate:
            await upgrade(url)
        yield url
    finally:
        admin = await asyncpg.connect(admin_url, timeout=10)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@asynccontextmanager
async def postgres_store(tmp_path: Path) -> AsyncIterator[Store]:
    """The contract-suite factory: an opened store on a fresh, migrated database."""
    async with fresh_database() as url:
        store = PostgresStore.from_url(url, pool_max=5, timeout=10.0)
        await store.open()
        try:
            yield store
        finally:
            await store.close()


def find_bindir() -> Path | None:
    """Where initdb and pg_ctl are: $PG_BINDIR, Debian's newest /usr/lib/postgresql, or PATH."""
    if "PG_BINDIR" in os.environ:
        given = Path(os.environ["PG_BINDIR"])
        return given if (given / "pg_ctl").is_file() else None
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name)
    )
    if debian:
        return debian[-1].parent
    found = shutil.which("pg_ctl")
    return Path(found).parent if found else None


@dataclass
class ThrowawayServer:
    """A private PostgreSQL cluster on a Unix socket only (no TCP port to collide on)."""

    root: Path
    bindir: Path
    max_connections: int

    @property
    def socket_dir(self) -> Path:
        return self.root / CLOUD_SQL_DIR

    def url(self, database: str = "postgres") -> str:
        """Cloud SQL's form: no host or port in the authority, the socket directory in `host`."""
        return f"postgresql://postgres@/{database}?host={self.socket_dir}"

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        # initdb and postgres refuse to run as root; as root, run them as the postgres user.
        command = [str(self.bindir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)

    def create(self) -> None:
        self.socket_dir.mkdir(parents=True)
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            for path in (self.root, self.socket_dir.parent, self.socket_dir):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        done = self._run(
            "initdb", "-D", str(self.root / "data"), "-U", "postgres", "-A", "trust",
            "-E", "UTF8", "--locale=C", "--no-sync",
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stderr}")
        settings = {
            "listen_addresses": "''",
            "port": "5432",  # only names the socket file, so the URL needs no port, as on Cloud SQL
            "unix_socket_directories": f"'{self.socket_dir}'",
            "max_connections": str(self.max_connections),
            "superuser_reserved_connections": "0",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
        }
        with (self.root / "data" / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())

    def start(self) -> None:
        # -w polls until the server accepts connections, up to -t seconds.
        log = str(self.root / "server.log")
        done = self._run(
            "pg_ctl", "-D", str(self.root / "data"), "-l", log, "-w", "-t", "60", "start"
        )
        if done.returncode != 0:
            server_log = Path(log).read_text(errors="replace")[-2000:] if Path(log).exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {done.stdout}{done.stderr}{server_log}")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "fast", "-w", "-t", "60", "stop")

    def is_running(self) -> bool:
        return self._run("pg_ctl", "-D", str(self.root / "data"), "status").returncode == 0

    def remove(self) -> None:
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def throwaway_server(max_connections: int) -> ThrowawayServer:
    """A new, started cluster; the test is skipped (failed under CI=true) if it cannot be made."""
    bindir = find_bindir()
    if bindir is None:
        service_missing("postgres", "initdb/pg_ctl not found (set PG_BINDIR)")
        raise AssertionError("unreachable")
    # A short path under /tmp: socket paths are limited to ~100 bytes, and pytest's tmp
    # directories are private to root, where the postgres user cannot reach them.
    server = ThrowawayServer(
        Path(tempfile.mkdtemp(prefix="lr-pg-", dir="/tmp")), bindir, max_connections=max_connections
    )
    try:
        server.create()
        server.start()
    except (OSError, KeyError, RuntimeError, subprocess.TimeoutExpired) as exc:
        server.remove()
        service_missing("postgres", f"cannot start a throwaway server: {exc}")
    return server
