"""The composition root: builds every adapter from settings, importing only the selected ones."""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from adapters.errors import ConfigurationError, Unavailable

if TYPE_CHECKING:
    from adapters.ports import Cache, IdempotencyStore, Queue, RateLimiter, Resource, Store
    from adapters.pubsub_push_verifier import PubSubPushVerifier

logger = logging.getLogger(__name__)

# The URL schemes each setting accepts; settings validation reads these so the
# two lists cannot drift apart.
STORE_SCHEMES = frozenset({"memory", "sqlite", "postgresql", "postgres", "dynamodb"})
QUEUE_SCHEMES = frozenset({"inprocess", "http", "https", "pubsub"})
CACHE_SCHEMES = frozenset({"memory", "redis", "rediss", "none"})
RATE_LIMIT_SCHEMES = frozenset({"memory", "redis", "rediss"})


def scheme_of(url: str) -> str:
    return urlsplit(url).scheme.lower()


_PASSWORD_PARAMETER = re.compile(r"(?i)(^|&)(password|passwd)=[^&]*")


def redacted(url: str) -> str:
    """The URL with its password hidden (in the authority or a `password=` parameter), for
    messages and logs."""
    parts = urlsplit(url)
    if parts.password is not None:
        userinfo, _, host = parts.netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        parts = parts._replace(netloc=f"{user}:***@{host}")
    return parts._replace(query=_PASSWORD_PARAMETER.sub(r"\1\2=***", parts.query)).geturl()


@dataclass(slots=True)
class AdapterOptions:
    """What the adapters need besides their URL, taken from settings by the app."""

    job_max_attempts: int = 3
    db_pool_max: int = 5
    io_timeout: float = 2.0


def build_store(url: str, options: AdapterOptions) -> Store:
    scheme = scheme_of(url)
    if scheme == "memory":
        from adapters.memory_store import MemoryStore

        return MemoryStore()
    if scheme == "sqlite":
        from adapters.sqlite_store import SqliteStore

        return SqliteStore.from_url(url)
    if scheme in {"postgresql", "postgres"}:
        from adapters.postgres_store import PostgresStore

        return PostgresStore.from_url(url, pool_max=options.db_pool_max, timeout=options.io_timeout)
    if scheme == "dynamodb":
        from adapters.dynamodb_store import DynamoDBStore

        return DynamoDBStore.from_url(url, timeout=options.io_timeout)
    raise ConfigurationError(f"DATABASE_URL: no store for scheme {scheme!r} in this build")


def build_idempotency_store(url: str, store: Store) -> IdempotencyStore:
    """The idempotency records that live beside `store` (built from the same DATABASE_URL)."""
    scheme = scheme_of(url)
    if scheme == "memory":
        from adapters.memory_idempotency import MemoryIdempotencyStore

        return MemoryIdempotencyStore()
    if scheme == "sqlite":
        from adapters.sqlite_idempotency import SqliteIdempotencyStore
        from adapters.sqlite_store import SqliteStore

        assert isinstance(store, SqliteStore)  # noqa: S101 - built from the same URL
        return SqliteIdempotencyStore(store)
    if scheme in {"postgresql", "postgres"}:
        from adapters.postgres_idempotency import PostgresIdempotencyStore
        from adapters.postgres_store import PostgresStore

        assert isinstance(store, PostgresStore)  # noqa: S101
        return PostgresIdempotencyStore(store)
    if scheme == "dynamodb":
        from adapters.dynamodb_idempotency import DynamoDBIdempotencyStore
        from adapters.dynamodb_store import DynamoDBStore

        assert isinstance(store, DynamoDBStore)  # noqa: S101
        return DynamoDBIdempotencyStore(store)
    raise ConfigurationError(f"DATABASE_URL: no idempotency records for scheme {scheme!r}")


def build_queue(url: str, options: AdapterOptions) -> Queue:
    scheme = scheme_of(url)
    if scheme == "inprocess":
        from adapters.inprocess_queue import InProcessQueue

        return InProcessQueue(max_attempts=options.job_max_attempts)
    if scheme == "pubsub":
        from adapters.pubsub_queue import PubSubQueue

        return PubSubQueue(url, timeout=options.io_timeout)
    if scheme in {"http", "https"}:
        from adapters.sqs_queue import SqsQueue

        return SqsQueue(url, timeout=options.io_timeout)
    raise ConfigurationError(f"QUEUE_URL: no queue for scheme {scheme!r} in this build")


def build_cache(url: str, options: AdapterOptions) -> Cache:
    scheme = scheme_of(url)
    if scheme == "memory":
        from adapters.memory_cache import MemoryCache

        return MemoryCache()
    if scheme == "none":
        from adapters.null_cache import NullCache

        return NullCache()
    if scheme in {"redis", "rediss"}:
        from adapters.redis_cache import RedisCache

        try:
            return RedisCache.from_url(url, timeout=options.io_timeout)
        except ConfigurationError as exc:
            raise ConfigurationError(f"CACHE_URL: {exc}") from None
    raise ConfigurationError(f"CACHE_URL: no cache for scheme {scheme!r} in this build")


def build_rate_limiter(url: str, options: AdapterOptions) -> RateLimiter:
    scheme = scheme_of(url)
    if scheme == "memory":
        from adapters.memory_rate_limiter import MemoryRateLimiter

        return MemoryRateLimiter()
    if scheme in {"redis", "rediss"}:
        from adapters.redis_rate_limiter import RedisRateLimiter

        try:
            return RedisRateLimiter.from_url(url, timeout=options.io_timeout)
        except ConfigurationError as exc:
            raise ConfigurationError(f"RATE_LIMIT_URL: {exc}") from None
    raise ConfigurationError(f"RATE_LIMIT_URL: no rate limiter for scheme {scheme!r} in this build")


@dataclass(slots=True)
class Adapters:
    """Every adapter the app uses, built once per process and kept on `app.state`."""

    store: Store
    queue: Queue
    cache: Cache
    rate_limiter: RateLimiter

    def named(self) -> dict[str, Resource]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    async def open(self) -> None:
        for resource in self.named().values():
            await resource.open()

    async def close(self) -> None:
        # The queue first: an in-process queue drains its jobs, which still need the store.
        # Then the rest together; everything is closed even if one fails, then the first
        # failure is raised.
        first = await asyncio.gather(self.queue.close(), return_exceptions=True)
        rest = [r.close() for name, r in self.named().items() if name != "queue"]
        results = [*first, *await asyncio.gather(*rest, return_exceptions=True)]
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def check(self, limit: float) -> dict[str, str]:
        """Ping every adapter at once; maps each name to "ok", "unavailable" or "timeout". The
        reason goes to the log, not the answer: a driver's message names hosts, ports and
        paths that a probe's caller has no business seeing."""

        async def one(name: str, resource: Resource) -> str:
            try:
                await asyncio.wait_for(resource.ping(), limit)
            except TimeoutError:
                logger.warning("readiness: %s gave no answer within %gs", name, limit)
                return "timeout"
            except Unavailable as exc:
                logger.warning("readiness: %s: %s", name, exc)
                return "unavailable"
            return "ok"

        named = self.named()
        answers = await asyncio.gather(*(one(n, r) for n, r in named.items()))
        return dict(zip(named, answers, strict=True))


def build_adapters(
    *,
    database_url: str,
    queue_url: str,
    cache_url: str,
    rate_limit_url: str,
    options: AdapterOptions,
) -> Adapters:
    return Adapters(
        store=build_store(database_url, options),
        queue=build_queue(queue_url, options),
        cache=build_cache(cache_url, options),
        rate_limiter=build_rate_limiter(rate_limit_url, options),
    )


def build_push_verifier(
    *, audience: str, service_account: str | None, timeout: float
) -> PubSubPushVerifier:
    """The Pub/Sub push token check (google-auth is imported on its first use)."""
    from adapters.pubsub_push_verifier import PubSubPushVerifier

    return PubSubPushVerifier(audience=audience, service_account=service_account, timeout=timeout)
