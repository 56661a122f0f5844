"""In-memory rate limiter: the same GCRA rule as the Redis one, for one process."""

from __future__ import annotations

import time
from collections.abc import Callable

from adapters.ports import RateLimitResult

MICROS = 1_000_000


def emission_interval(limit: int, window: int) -> int:
    """Microseconds one hit occupies: `window / limit`, rounded up so `limit` hits fit exactly.

    GCRA (docs/redis.md): a key holds its theoretical arrival time (TAT). A hit is allowed when
    `TAT + interval - now <= limit * interval`; each allowed hit moves TAT on by one interval.
    """
    if limit < 1 or window < 1:
        raise ValueError(f"limit and window must be at least 1, not {limit} and {window}")
    return -(-window * MICROS // limit)


class MemoryRateLimiter:
    # Holds only within one process; once a service scales out each instance
    # counts on its own, which is why Redis is the deployed choice.

    def __init__(
        self, *, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._tats: dict[str, int] = {}  # key -> TAT in microseconds of `clock`
        self._max_keys = max_keys
        self._clock = clock

    async def open(self) -> None:
        return None

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._tats.clear()

    async def hit(self, key: str, *, limit: int, window: int) -> RateLimitResult:
        interval = emission_interval(limit, window)
        capacity = interval * limit
        now = round(self._clock() * MICROS)
        tat = max(self._tats.get(key, now), now)
        used = tat + interval - now  # capacity in use if this hit counts
        if used > capacity:
            # Refused hits are not counted: waiting `reset_after` is always enough.
            return RateLimitResult(
                allowed=False, limit=limit, remaining=0, reset_after=(used - capacity) / MICROS
            )
        self._remember(key, tat + interval, now)
        return RateLimitResult(
            allowed=True,
            limit=limit,
            remaining=(capacity - used) // interval,
            reset_after=((used - 1) % interval + 1) / MICROS,  # until the next slot frees
        )

    def _remember(self, key: str, tat: int, now: int) -> None:
        if key not in self._tats and len(self._tats) >= self._max_keys:
            # A TAT in the past says nothing a missing key would not.
            self._tats = {k: v for k, v in self._tats.items() if v > now}
            if len(self._tats) >= self._max_keys:
                del self._tats[next(iter(self._tats))]
        self._tats[key] = tat
