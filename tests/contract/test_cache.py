"""The cache contract: every implementation of the Cache port passes these same tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
from redis.asyncio import Redis

from adapters import memory_cache
from adapters.errors import ConfigurationError
from adapters.memory_cache import MemoryCache
from adapters.ports import Cache
from adapters.redis_cache import RedisCache
from tests.support.redis import redis_keyspace

REDIS = pytest.mark.service("redis")
TIMEOUT = 2.0  # generous: these tests are about behaviour, test_redis_faults about failures


@dataclass(frozen=True, slots=True)
class CacheCase:
    cache: Cache
    advance: Callable[[float], Awaitable[None]]  # make this many seconds pass for its entries


CaseFactory = Callable[[pytest.MonkeyPatch], AbstractAsyncContextManager[CacheCase]]


@asynccontextmanager
async def memory_case(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[CacheCase]:
    now = [1_000.0]
    # The module's own reference to `time`, not the global one the event loop reads.
    monkeypatch.setattr(memory_cache, "time", SimpleNamespace(monotonic=lambda: now[0]))

    async def advance(seconds: float) -> None:
        now[0] += seconds

    cache = MemoryCache()
    await cache.open()
    yield CacheCase(cache, advance)
    await cache.close()


@asynccontextmanager
async def redis_case(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[CacheCase]:
    async with redis_keyspace() as space:
        cache = RedisCache(space.url, timeout=TIMEOUT, prefix=space.prefix)
        await cache.open()
        try:
            yield CacheCase(cache, space.age)
        finally:
            await cache.close()


CASES: dict[str, CaseFactory] = {"memory": memory_case, "redis": redis_case}
IMPLEMENTATIONS = [pytest.param("memory"), pytest.param("redis", marks=REDIS)]


@pytest.fixture(params=IMPLEMENTATIONS)
async def case(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[CacheCase]:
    async with CASES[request.param](monkeypatch) as opened:
        yield opened


@pytest.fixture(params=IMPLEMENTATIONS)
async def real_time_cache(request: pytest.FixtureRequest) -> AsyncIterator[Cache]:
    """An implementation on the real clock (no monkeypatch): for the one test that waits."""
    if request.param == "memory":
        yield MemoryCache()
        return
    async with redis_keyspace() as space:
        cache = RedisCache(space.url, timeout=TIMEOUT, prefix=space.prefix)
        yield cache
        await cache.close()


async def test_a_missing_key_is_none(case: CacheCase) -> None:
    assert await case.cache.get("absent") is None


async def test_a_value_reads_back(case: CacheCase) -> None:
    await case.cache.set("user:1", b'{"name": "Ada"}', ttl=30)
    assert await case.cache.get("user:1") == b'{"name": "Ada"}'


@pytest.mark.parametrize(
    "value",
    [
        bytes(range(256)),
        b"\xff\xfe\x00\x80",
        b"\x00",
        b"",
        "é ✓".encode("utf-16"),
        b"x" * 1_000_000,
    ],
    ids=["all-bytes", "invalid-utf8", "nul", "empty", "utf16", "1MB"],
)
async def test_any_bytes_round_trip(case: CacheCase, value: bytes) -> None:
    await case.cache.set("k", value, ttl=30)
    got = await case.cache.get("k")
    assert got == value
    assert type(got) is bytes


@pytest.mark.parametrize("key", ["with space", "é/ünïcode/✓", "a:b:c", "*?[glob]", "x" * 500])
async def test_any_key_works(case: CacheCase, key: str) -> None:
    await case.cache.set(key, b"v", ttl=30)
    assert await case.cache.get(key) == b"v"
    await case.cache.delete(key)
    assert await case.cache.get(key) is None


async def test_keys_are_independent(case: CacheCase) -> None:
    await case.cache.set("a", b"1", ttl=30)
    await case.cache.set("b", b"2", ttl=30)
    await case.cache.set("ab", b"3", ttl=30)
    await case.cache.delete("a")
    assert (await case.cache.get("a"), await case.cache.get("b")) == (None, b"2")
    assert await case.cache.get("ab") == b"3"


async def test_a_set_overwrites(case: CacheCase) -> None:
    await case.cache.set("k", b"first", ttl=30)
    await case.cache.set("k", b"second", ttl=30)
    assert await case.cache.get("k") == b"second"


async def test_deleting_an_absent_key_is_fine(case: CacheCase) -> None:
    await case.cache.delete("never-set")
    await case.cache.set("k", b"v", ttl=30)
    await case.cache.delete("k")
    await case.cache.delete("k")
    assert await case.cache.get("k") is None


async def test_a_value_lives_for_its_ttl_and_no_longer(case: CacheCase) -> None:
    await case.cache.set("short", b"s", ttl=10)
    await case.cache.set("long", b"l", ttl=60)
    await case.advance(9.5)
    assert await case.cache.get("short") == b"s"
    await case.advance(1)
    assert await case.cache.get("short") is None
    assert await case.cache.get("long") == b"l"
    await case.advance(50)
    assert await case.cache.get("long") is None


async def test_an_overwrite_restarts_the_ttl(case: CacheCase) -> None:
    await case.cache.set("k", b"old", ttl=10)
    await case.advance(8)
    await case.cache.set("k", b"new", ttl=10)
    await case.advance(8)
    assert await case.cache.get("k") == b"new"
    await case.advance(3)
    assert await case.cache.get("k") is None


async def test_a_ttl_of_zero_keeps_nothing(case: CacheCase) -> None:
    await case.cache.set("k", b"old", ttl=30)
    await case.cache.set("k", b"new", ttl=0)
    assert await case.cache.get("k") is None


async def test_open_twice_and_reopen_after_close(case: CacheCase) -> None:
    await case.cache.open()
    await case.cache.ping()
    await case.cache.close()
    await case.cache.open()
    await case.cache.set("k", b"v", ttl=30)
    assert await case.cache.get("k") == b"v"


async def test_concurrent_use(case: CacheCase) -> None:
    await asyncio.gather(*(case.cache.set(f"k{i}", b"%d" % i, ttl=30) for i in range(50)))
    values = await asyncio.gather(*(case.cache.get(f"k{i}") for i in range(50)))
    assert values == [b"%d" % i for i in range(50)]


async def test_expiry_on_the_real_clock(real_time_cache: Cache) -> None:
    # The fake clocks above could hide a unit mistake (ms for s); this waits about a second.
    await real_time_cache.set("k", b"v", ttl=1)
    assert await real_time_cache.get("k") == b"v"
    deadline = time.monotonic() + 5
    while await real_time_cache.get("k") is not None:
        assert time.monotonic() < deadline, "a 1 s TTL still held after 5 s"
        await asyncio.sleep(0.05)


# Redis only: what the port does not say but operators and the composition root rely on.


@REDIS
async def test_redis_keys_carry_the_prefix_and_the_ttl() -> None:
    async with redis_keyspace() as space:
        cache = RedisCache.from_url(space.url, timeout=TIMEOUT, prefix=space.prefix)
        await cache.set("user:1", b"v", ttl=30)
        assert await space.keys() == [f"{space.prefix}user:1".encode()]
        assert 29_000 < await space.admin.pttl(f"{space.prefix}user:1") <= 30_000
        await cache.close()


@REDIS
async def test_redis_prefixes_keep_caches_apart() -> None:
    async with redis_keyspace() as space:
        one = RedisCache.from_url(space.url, timeout=TIMEOUT, prefix=space.prefix + "one:")
        two = RedisCache.from_url(space.url, timeout=TIMEOUT, prefix=space.prefix + "two:")
        await one.set("k", b"1", ttl=30)
        assert await two.get("k") is None
        await two.delete("k")
        assert await one.get("k") == b"1"
        await one.close()
        await two.close()


@REDIS
async def test_redis_client_passed_in_is_used_and_left_open() -> None:
    async with redis_keyspace() as space:
        cache = RedisCache(space.url, timeout=TIMEOUT, prefix=space.prefix, client=space.admin)
        await cache.set("k", b"v", ttl=30)
        await cache.close()
        await cache.open()
        assert await cache.get("k") == b"v"
        assert await space.admin.get(f"{space.prefix}k") == b"v"  # still open: not ours


@REDIS
async def test_redis_url_selects_the_database() -> None:
    async with redis_keyspace() as space:
        parts = urlsplit(space.url)
        other = parts._replace(path="/4" if parts.path.strip("/") == "3" else "/3").geturl()
        cache = RedisCache.from_url(other, timeout=TIMEOUT, prefix=space.prefix)
        peek = Redis.from_url(other)
        try:
            await cache.set("k", b"elsewhere", ttl=30)
            assert await peek.get(f"{space.prefix}k") == b"elsewhere"
            assert await space.keys() == []  # nothing in the test URL's own database
        finally:
            await peek.delete(f"{space.prefix}k")
            await peek.aclose()
            await cache.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://localhost:6379", "redis:// or rediss://"),
        ("redis://localhost/zero", "database number"),
        ("redis://localhost:notaport/0", "Port"),
        ("redis:///0", "no host"),
        ("redis://localhost/0?socket_timeout=30", "IO_TIMEOUT"),
        ("redis://localhost/0?max_connections=many", "max_connections"),
        ("redis://:s3cret@localhost/zero", ":***@localhost"),
    ],
)
def test_a_bad_redis_url_fails_at_construction_without_leaking_the_password(
    url: str, message: str
) -> None:
    with pytest.raises(ConfigurationError) as raised:
        RedisCache.from_url(url, timeout=1)
    assert message in str(raised.value)
    assert "s3cret" not in str(raised.value)


def test_construction_does_no_io() -> None:
    # Nothing listens on port 1: building (as the composition root does at start-up) must
    # not care; the first call would raise Unavailable (tests/integration/test_redis_faults).
    cache = RedisCache.from_url("rediss://user:pw@127.0.0.1:1/2", timeout=0.25, prefix="p:")
    assert (cache.timeout, cache.prefix) == (0.25, "p:")
