"""Redis for tests: the shared server's URL, a key prefix per test, and throwaway servers."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from redis.asyncio import Redis
from redis.exceptions import RedisError

from adapters.redis_client import redacted
from tests.support.net import free_port
from tests.support.services import service_missing

DEFAULT_TEST_REDIS_URL = "redis://127.0.0.1:6379/0"


def redis_test_url() -> str:
    return os.environ.get("TEST_REDIS_URL", DEFAULT_TEST_REDIS_URL)


@dataclass(frozen=True, slots=True)
class Keyspace:
    """One test's corner of the shared Redis: every key it makes starts with `prefix`."""

    url: str
    prefix: str
    admin: Redis  # a plain client for looking behind an adapter's back

    async def keys(self) -> list[bytes]:
        return [key async for key in self.admin.scan_iter(match=self.prefix + "*", count=500)]

    async def age(self, seconds: float) -> None:
        """Make `seconds` pass for every expiring key of this test, by shortening its TTL."""
        for key in await self.keys():
            left = await self.admin.pttl(key) - round(seconds * 1000)
            if left <= 0:
                await self.admin.delete(key)
            else:
                await self.admin.pexpire(key, left)


@asynccontextmanager
async def redis_keyspace(url: str | None = None) -> AsyncIterator[Keyspace]:
    """A unique prefix on a reachable Redis (else `service_missing`), its keys deleted after."""
    url = url or redis_test_url()
    admin = Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        await admin.ping()
    except (RedisError, OSError) as exc:
        await admin.aclose()
        service_missing("redis", f"{redacted(url)}: {exc}")
    space = Keyspace(url=url, prefix=f"lambdarun-test:{uuid.uuid4().hex}:", admin=admin)
    try:
        yield space
    finally:
        keys = await space.keys()
        if keys:
            await admin.delete(*keys)
        await admin.aclose()


class RedisServer:
    """A redis-server process owned by one test, which may kill, pause and restart it."""

    def __init__(self, executable: str, port: int, *, tls: tuple[Path, Path] | None = None):
        self.executable = executable
        self.port = port
        self.tls = tls  # (certificate, key); the certificate is its own CA
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.tls is None:
            return f"redis://127.0.0.1:{self.port}/0"
        return f"rediss://127.0.0.1:{self.port}/0?ssl_ca_certs={self.tls[0]}"

    def start(self, *, ready_within: float = 10.0) -> None:
        """Start (or start again, on the same port) and return once it accepts connections."""
        args = [self.executable, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        if self.tls is None:
            args += ["--port", str(self.port)]
        else:
            cert, key = (str(path) for path in self.tls)
            args += ["--port", "0", "--tls-port", str(self.port), "--tls-auth-clients", "no"]
            args += ["--tls-cert-file", cert, "--tls-key-file", key, "--tls-ca-cert-file", cert]
        self._process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait_ready(ready_within)

    def kill(self) -> None:
        """SIGKILL: the server vanishes without closing anything politely."""
        if self._process is not None:
            self.resume()
            self._process.kill()
            self._process.wait(timeout=10)
            self._process = None

    def pause(self) -> None:
        """SIGSTOP: the kernel still accepts connections, but nothing answers."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def _signal(self, signum: int) -> None:
        if self._process is not None:
            self._process.send_signal(signum)

    def _wait_ready(self, within: float) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(f"redis-server on port {self.port} exited at start")
            if self._answers():
                return
            time.sleep(0.01)  # a bounded poll: the loop ends at the deadline
        raise TimeoutError(f"redis-server on port {self.port} not ready within {within}s")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                if self.tls is not None:
                    return True  # Redis listens only once its TLS context has loaded
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False


def redis_server_executable() -> str:
    executable = shutil.which("redis-server")
    if executable is None:
        service_missing("redis-server", "not on PATH (Debian package redis-server)")
    assert executable is not None
    return executable


@contextmanager
def throwaway_redis(tls: tuple[Path, Path] | None = None) -> Iterator[RedisServer]:
    """A fresh redis-server on a free port, killed afterwards whatever the test did to it."""
    executable = redis_server_executable()
    for attempt in range(3):
        server = RedisServer(executable, free_port(), tls=tls)
        try:
            server.start()
            break
        except RuntimeError:  # another process took the port between the probe and the start
            server.kill()
            if attempt == 2:
                raise
    try:
        yield server
    finally:
        server.kill()


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (its own CA) and its key, made with the openssl CLI."""
    openssl = shutil.which("openssl")
    if openssl is None:
        service_missing("openssl", "not on PATH, needed to make a test certificate")
    assert openssl is not None
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key
