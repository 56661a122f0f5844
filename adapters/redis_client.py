"""Shared Redis plumbing: URL checks, a client with deliberate timeouts and retries, and the
open/ping/close flow and error translation every Redis adapter uses."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import ClassVar, TypeVar
from urllib.parse import parse_qs, urlsplit

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from adapters.bootstrap import redacted
from adapters.errors import ConfigurationError, Unavailable

T = TypeVar("T")

SCHEMES = frozenset({"redis", "rediss"})
# These would override the timeout the app passes in (query arguments win in redis-py), or
# add retries on timeouts, so they are refused: IO_TIMEOUT is the one knob.
_REFUSED_QUERY_ARGUMENTS = frozenset(
    {"socket_timeout", "socket_connect_timeout", "timeout", "retry_on_timeout"}
)
DEFAULT_MAX_CONNECTIONS = 100


def check_url(url: str) -> None:
    """Raise `ConfigurationError` unless `url` is a usable redis:// or rediss:// URL."""
    shown = redacted(url)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError as exc:
        raise ConfigurationError(f"{shown}: {exc}") from None
    if parts.scheme not in SCHEMES:
        raise ConfigurationError(f"{shown}: expected a redis:// or rediss:// URL")
    if not parts.hostname:
        raise ConfigurationError(f"{shown}: no host")
    db = parts.path.strip("/")
    if db and not db.isdigit():
        # redis-py would silently fall back to database 0.
        raise ConfigurationError(f"{shown}: the path must be a database number, like /0")
    refused = sorted(_REFUSED_QUERY_ARGUMENTS & parse_qs(parts.query).keys())
    if refused:
        raise ConfigurationError(f"{shown}: {', '.join(refused)} come from IO_TIMEOUT, not the URL")
    try:
        parse_url(url)
    except ValueError as exc:
        raise ConfigurationError(f"{shown}: {exc}") from None


def make_client(url: str, *, timeout: float, max_connections: int) -> Redis:
    """A client whose every network wait is bounded by `timeout` seconds. No I/O happens here."""
    # redis-py's own default (Redis(...)) retries connection errors AND timeouts 10 times
    # with backoff, so a hung server would cost ~11 timeouts per call. We retry once, and only
    # on connection errors: they come back at once (refused, reset), and the retry replaces a
    # pooled connection the server closed (a restart, or a Lambda environment thawed after
    # the server dropped an idle client). A timeout is never retried.
    pool = ConnectionPool.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        max_connections=max_connections,
    )
    return Redis.from_pool(pool)  # the client owns the pool and closes it


class RedisResource:
    """The Resource part of a Redis adapter; subclasses add their port's methods on `_run`."""

    component: ClassVar[str]

    def __init__(
        self,
        url: str,
        *,
        timeout: float,
        prefix: str = "lambdarun:",
        client: Redis | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        if timeout <= 0:
            raise ConfigurationError(f"{self.component}: timeout must be positive, not {timeout}")
        check_url(url)
        self.url = url
        self.timeout = timeout
        self.prefix = prefix
        self._max_connections = max_connections
        # A client passed in belongs to the caller, who closes it.
        self._given_client = client
        self._client = client
        # A backstop over the whole call (connect, handshake, command, one retry): socket
        # timeouts bound each wait, this bounds their sum whatever redis-py does inside.
        self._deadline = 2 * timeout

    async def open(self) -> None:
        # No network I/O: a Redis that is down must not stop the app from starting, since
        # the app works without it (the cache fails open). The first call connects.
        self._get_client()

    async def ping(self) -> None:
        await self._run(lambda client: client.ping())

    async def close(self) -> None:
        client, self._client = self._client, self._given_client
        if client is not None and client is not self._given_client:
            try:
                await client.aclose()
            except (RedisError, OSError) as exc:
                raise self._unavailable(exc) from exc

    def _get_client(self) -> Redis:
        if self._client is None:
            self._client = make_client(
                self.url, timeout=self.timeout, max_connections=self._max_connections
            )
        return self._client

    async def _run(self, call: Callable[[Redis], Awaitable[T]]) -> T:
        """Run one operation; every Redis error or timeout becomes `Unavailable`."""
        client = self._get_client()
        try:
            async with asyncio.timeout(self._deadline):
                return await call(client)
        except (RedisError, OSError) as exc:  # OSError covers TimeoutError and ssl errors
            raise self._unavailable(exc) from exc

    def _unavailable(self, exc: BaseException) -> Unavailable:
        if isinstance(exc, TimeoutError):
            detail = f"no answer within {self._deadline:g}s"
        else:
            detail = f"{type(exc).__name__}: {exc}"
        return Unavailable(self.component, f"{self.component}: Redis {detail}")
