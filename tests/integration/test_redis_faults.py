"""Redis adapters against a server the test owns: killed, restarted, hung, and over TLS.

The app fails open on `Unavailable` (the cache falls back to the store), so what matters
is that a broken Redis raises it quickly instead of hanging a request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from redis.exceptions import RedisError

from adapters.errors import Unavailable
from adapters.redis_cache import RedisCache
from adapters.redis_rate_limiter import RedisRateLimiter
from tests.support.redis import RedisServer, self_signed_certificate, throwaway_redis

pytestmark = pytest.mark.service("redis")

TIMEOUT = 0.25
BOUND = 5 * TIMEOUT  # loose on purpose: a busy CI machine must not make this flaky
HANG_CAP = 10.0  # a call still running after this is a hang, whatever the machine

T = TypeVar("T")


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with throwaway_redis() as started:
        yield started


@pytest.fixture
async def cache(server: RedisServer) -> AsyncIterator[RedisCache]:
    adapter = RedisCache.from_url(server.url, timeout=TIMEOUT, prefix="faults:")
    await adapter.open()
    yield adapter
    await adapter.close()


@pytest.fixture
async def limiter(server: RedisServer) -> AsyncIterator[RedisRateLimiter]:
    adapter = RedisRateLimiter.from_url(server.url, timeout=TIMEOUT, prefix="faults:")
    await adapter.open()
    yield adapter
    await adapter.close()


async def unavailable(call: Awaitable[object], component: str) -> Unavailable:
    """Assert `call` raises Unavailable for `component`, translated from a Redis or socket
    error, within BOUND; return it."""
    started = time.monotonic()
    with pytest.raises(Unavailable) as raised:
        await asyncio.wait_for(call, HANG_CAP)
    elapsed = time.monotonic() - started
    assert elapsed < BOUND, f"took {elapsed:.2f}s with a {TIMEOUT}s timeout"
    assert raised.value.component == component
    assert isinstance(raised.value.__cause__, RedisError | OSError)
    return raised.value


async def answered(call: Awaitable[T]) -> T:
    return await asyncio.wait_for(call, HANG_CAP)


async def test_a_server_that_is_not_there_fails_fast_but_does_not_stop_open(
    server: RedisServer,
) -> None:
    server.kill()
    cache = RedisCache.from_url(server.url, timeout=TIMEOUT)
    limiter = RedisRateLimiter.from_url(server.url, timeout=TIMEOUT)
    await cache.open()  # the app starts; the cache fails open later
    await limiter.open()
    await unavailable(cache.ping(), "cache")
    await unavailable(cache.get("k"), "cache")
    await unavailable(limiter.ping(), "rate_limiter")
    await unavailable(limiter.hit("k", limit=1, window=1), "rate_limiter")
    await cache.close()
    await limiter.close()


async def test_a_killed_server_makes_every_call_unavailable(
    server: RedisServer, cache: RedisCache, limiter: RedisRateLimiter
) -> None:
    await answered(cache.set("k", b"v", ttl=30))
    assert (await answered(limiter.hit("k", limit=5, window=60))).allowed
    server.kill()
    await unavailable(cache.get("k"), "cache")
    await unavailable(cache.set("k", b"v", ttl=30), "cache")
    await unavailable(cache.delete("k"), "cache")
    await unavailable(cache.ping(), "cache")
    await unavailable(limiter.hit("k", limit=5, window=60), "rate_limiter")
    await unavailable(limiter.ping(), "rate_limiter")


async def test_the_adapters_work_again_after_a_restart_on_the_same_port(
    server: RedisServer, cache: RedisCache, limiter: RedisRateLimiter
) -> None:
    await answered(cache.set("k", b"before", ttl=30))
    await answered(limiter.hit("k", limit=5, window=60))
    server.kill()
    await unavailable(cache.get("k"), "cache")
    server.start()
    # The first call after the restart already succeeds: the dead pooled connection is
    # replaced, and the limiter's script is loaded again into the new server.
    assert await answered(cache.get("k")) is None  # --save '': the data went with the server
    await answered(cache.set("k", b"after", ttl=30))
    assert await answered(cache.get("k")) == b"after"
    again = await answered(limiter.hit("k", limit=5, window=60))
    assert (again.allowed, again.remaining) == (True, 4)


async def test_the_adapters_recover_without_a_failure_after_a_quiet_restart(
    server: RedisServer, cache: RedisCache, limiter: RedisRateLimiter
) -> None:
    # No call while the server is down: pooled connections are stale when calls resume
    # (a Lambda environment thawed after Redis restarted). No request may fail for it.
    await answered(cache.set("k", b"v", ttl=30))
    await answered(limiter.hit("k", limit=5, window=60))
    server.kill()
    server.start()
    assert await answered(cache.get("k")) is None
    assert (await answered(limiter.hit("k", limit=5, window=60))).allowed


async def test_a_hung_server_makes_calls_unavailable_within_the_timeout(
    server: RedisServer, cache: RedisCache, limiter: RedisRateLimiter
) -> None:
    await answered(cache.set("kept", b"v", ttl=30))
    await answered(limiter.hit("k", limit=5, window=60))
    server.pause()
    try:
        await unavailable(cache.get("kept"), "cache")
        await unavailable(cache.ping(), "cache")
        await unavailable(limiter.hit("k", limit=5, window=60), "rate_limiter")
    finally:
        server.resume()
    # The answers to the abandoned calls arrive now; none may be read as the answer to a
    # later call (each timed-out connection is dropped, not reused).
    assert await answered(cache.get("kept")) == b"v"
    assert await answered(cache.get("other")) is None
    assert (await answered(limiter.hit("fresh", limit=5, window=60))).remaining == 4


async def test_concurrent_calls_on_a_hung_server_fail_together_not_in_turn(
    server: RedisServer, cache: RedisCache
) -> None:
    await answered(cache.set("k", b"v", ttl=30))
    server.pause()
    try:
        started = time.monotonic()
        outcomes = await asyncio.wait_for(
            asyncio.gather(*(cache.get(f"k{i}") for i in range(20)), return_exceptions=True),
            HANG_CAP,
        )
        elapsed = time.monotonic() - started
    finally:
        server.resume()
    assert all(isinstance(outcome, Unavailable) for outcome in outcomes), outcomes
    assert elapsed < BOUND, f"20 concurrent calls took {elapsed:.2f}s with a {TIMEOUT}s timeout"


async def test_a_hung_server_at_connect_time_is_unavailable_within_the_timeout(
    server: RedisServer,
) -> None:
    # Paused before the first call: the TCP connect succeeds (the kernel accepts), the
    # handshake is what never answers.
    server.pause()
    cache = RedisCache.from_url(server.url, timeout=TIMEOUT)
    try:
        await unavailable(cache.get("k"), "cache")
    finally:
        server.resume()
        await cache.close()


async def test_rediss_connects_over_tls(tmp_path: Path) -> None:
    certificate = self_signed_certificate(tmp_path)
    with throwaway_redis(tls=certificate) as server:
        assert server.url.startswith("rediss://")
        cache = RedisCache.from_url(server.url, timeout=2.0)
        limiter = RedisRateLimiter.from_url(server.url, timeout=2.0)
        try:
            await answered(cache.set("k", b"\xff secret", ttl=30))
            assert await answered(cache.get("k")) == b"\xff secret"
            assert (await answered(limiter.hit("k", limit=2, window=60))).remaining == 1
            # Without the CA the certificate is refused, and that too is Unavailable.
            untrusted = RedisCache.from_url(server.url.split("?")[0], timeout=2.0)
            with pytest.raises(Unavailable):
                await answered(untrusted.get("k"))
            await untrusted.close()
        finally:
            await cache.close()
            await limiter.close()
