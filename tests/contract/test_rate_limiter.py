"""The rate limiter contract: every implementation of the RateLimiter port passes these tests.

Both implementations are GCRA (docs/redis.md): up to `limit` hits at once, then one slot
back every `window / limit` seconds, the whole limit back after `window` idle seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import pytest

from adapters.memory_rate_limiter import MemoryRateLimiter
from adapters.ports import RateLimiter, RateLimitResult
from adapters.redis_rate_limiter import RedisRateLimiter
from tests.support.redis import redis_keyspace

REDIS = pytest.mark.service("redis")
TIMEOUT = 2.0  # generous: these tests are about behaviour, test_redis_faults about failures


class FakeClock:
    """Seconds that move only when told; kept in whole microseconds so sums stay exact."""

    def __init__(self) -> None:
        self._micros = 1_000_000 * 1_000_000

    def __call__(self) -> float:
        return self._micros / 1_000_000

    def advance(self, seconds: float) -> None:
        self._micros += round(seconds * 1_000_000)


Clock = Callable[[], float]
LimiterFactory = Callable[[Clock | None], AbstractAsyncContextManager[RateLimiter]]


@asynccontextmanager
async def memory_limiter(clock: Clock | None) -> AsyncIterator[RateLimiter]:
    limiter = MemoryRateLimiter() if clock is None else MemoryRateLimiter(clock=clock)
    await limiter.open()
    yield limiter
    await limiter.close()


@asynccontextmanager
async def redis_limiter(clock: Clock | None) -> AsyncIterator[RateLimiter]:
    # clock=None: Redis's own clock (TIME inside the script), as deployed.
    async with redis_keyspace() as space:
        limiter = RedisRateLimiter(space.url, timeout=TIMEOUT, prefix=space.prefix, clock=clock)
        await limiter.open()
        try:
            yield limiter
        finally:
            await limiter.close()


FACTORIES: dict[str, LimiterFactory] = {"memory": memory_limiter, "redis": redis_limiter}
IMPLEMENTATIONS = [pytest.param("memory"), pytest.param("redis", marks=REDIS)]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=IMPLEMENTATIONS)
async def limiter(request: pytest.FixtureRequest, clock: FakeClock) -> AsyncIterator[RateLimiter]:
    async with FACTORIES[request.param](clock) as opened:
        yield opened


@pytest.fixture(params=IMPLEMENTATIONS)
async def real_time_limiter(request: pytest.FixtureRequest) -> AsyncIterator[RateLimiter]:
    async with FACTORIES[request.param](None) as opened:
        yield opened


async def hits(
    limiter: RateLimiter, n: int, key: str = "k", *, limit: int, window: int
) -> list[RateLimitResult]:
    return [await limiter.hit(key, limit=limit, window=window) for _ in range(n)]


async def test_allows_up_to_the_limit_then_refuses(limiter: RateLimiter) -> None:
    results = await hits(limiter, 5, limit=3, window=60)
    assert [r.allowed for r in results] == [True, True, True, False, False]
    assert {r.limit for r in results} == {3}


async def test_remaining_counts_down_to_zero(limiter: RateLimiter) -> None:
    results = await hits(limiter, 6, limit=4, window=60)
    assert [r.remaining for r in results] == [3, 2, 1, 0, 0, 0]


async def test_reset_after_is_within_the_window(limiter: RateLimiter) -> None:
    for limit, window in [(1, 1), (3, 60), (10, 1), (1000, 86400)]:
        for result in await hits(
            limiter, limit + 2, f"{limit}/{window}", limit=limit, window=window
        ):
            assert 0 < result.reset_after <= window, result


async def test_waiting_reset_after_lets_the_next_hit_through(
    limiter: RateLimiter, clock: FakeClock
) -> None:
    await hits(limiter, 3, limit=3, window=60)
    clock.advance(5)
    refused = await limiter.hit("k", limit=3, window=60)
    assert not refused.allowed
    assert refused.reset_after == pytest.approx(15)
    clock.advance(refused.reset_after - 0.001)
    assert not (await limiter.hit("k", limit=3, window=60)).allowed
    clock.advance(0.001)
    assert (await limiter.hit("k", limit=3, window=60)).allowed


async def test_reset_after_of_an_allowed_hit_is_when_the_next_slot_frees(
    limiter: RateLimiter, clock: FakeClock
) -> None:
    first, *_, last = await hits(limiter, 3, limit=3, window=60)
    assert first.reset_after == pytest.approx(20)
    assert last.remaining == 0
    clock.advance(last.reset_after)
    assert (await limiter.hit("k", limit=3, window=60)).remaining == 0  # one slot came back


async def test_refused_hits_are_not_counted(limiter: RateLimiter, clock: FakeClock) -> None:
    await hits(limiter, 2, limit=2, window=10)
    refused = await hits(limiter, 20, limit=2, window=10)
    assert not any(r.allowed for r in refused)
    clock.advance(5)  # one interval (10 s / 2): hammering did not push it back
    assert (await limiter.hit("k", limit=2, window=10)).allowed


async def test_keys_are_independent(limiter: RateLimiter) -> None:
    await hits(limiter, 3, "alice", limit=3, window=60)
    assert not (await limiter.hit("alice", limit=3, window=60)).allowed
    bob = await limiter.hit("bob", limit=3, window=60)
    assert (bob.allowed, bob.remaining) == (True, 2)
    assert (await limiter.hit("alice:x", limit=3, window=60)).allowed


async def test_after_a_window_the_whole_limit_is_back(
    limiter: RateLimiter, clock: FakeClock
) -> None:
    await hits(limiter, 7, limit=5, window=60)
    clock.advance(60)
    again = await hits(limiter, 6, limit=5, window=60)
    assert [r.allowed for r in again] == [True] * 5 + [False]
    assert again[0].remaining == 4


async def test_slots_come_back_one_interval_at_a_time(
    limiter: RateLimiter, clock: FakeClock
) -> None:
    # GCRA: no burst of 2 x limit across a window boundary, unlike a fixed window.
    await hits(limiter, 4, limit=4, window=60)
    clock.advance(15)
    assert [r.allowed for r in await hits(limiter, 2, limit=4, window=60)] == [True, False]
    clock.advance(30)
    assert [r.allowed for r in await hits(limiter, 3, limit=4, window=60)] == [True, True, False]


async def test_concurrent_hits_never_exceed_the_limit(limiter: RateLimiter) -> None:
    results = await asyncio.gather(*(limiter.hit("k", limit=10, window=60) for _ in range(50)))
    allowed = [r for r in results if r.allowed]
    assert len(allowed) == 10
    assert sorted(r.remaining for r in allowed) == list(range(10))


@pytest.mark.parametrize(("limit", "window"), [(0, 60), (-1, 60), (10, 0)])
async def test_a_limit_or_window_below_one_is_refused(
    limiter: RateLimiter, limit: int, window: int
) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        await limiter.hit("k", limit=limit, window=window)


async def test_a_new_window_on_the_real_clock(real_time_limiter: RateLimiter) -> None:
    # The fake clock above could hide a unit mistake; this waits about a second (for Redis,
    # on the server's own clock, as deployed).
    first = await real_time_limiter.hit("k", limit=1, window=1)
    refused = await real_time_limiter.hit("k", limit=1, window=1)
    assert (first.allowed, refused.allowed) == (True, False)
    assert 0 < refused.reset_after <= 1
    deadline = time.monotonic() + 5
    while not (await real_time_limiter.hit("k", limit=1, window=1)).allowed:
        assert time.monotonic() < deadline, "a 1 s window still refused after 5 s"
        await asyncio.sleep(0.05)


# Redis only.


@REDIS
async def test_redis_keys_expire_on_their_own() -> None:
    async with redis_keyspace() as space:
        limiter = RedisRateLimiter.from_url(space.url, timeout=TIMEOUT, prefix=space.prefix)
        await limiter.hit("k", limit=10, window=60)
        await limiter.hit("k", limit=10, window=60)
        assert await space.keys() == [f"{space.prefix}k".encode()]
        # The key lives as long as it says anything: until the two hits' slots are free.
        assert 11_000 < await space.admin.pttl(f"{space.prefix}k") <= 12_000
        await limiter.close()
