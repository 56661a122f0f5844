"""Redis rate limiter: GCRA in one Lua script, so every instance shares one count per key."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from adapters.memory_rate_limiter import MICROS, emission_interval
from adapters.ports import RateLimitResult
from adapters.redis_client import DEFAULT_MAX_CONNECTIONS, RedisResource

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

# One round trip, atomic. The key holds the theoretical arrival time (TAT) in microseconds
# and expires when it reaches the present, when it would say nothing a missing key does not.
# Times come from Redis's own clock (TIME) so every instance agrees; ARGV[3] overrides it
# for tests. Numbers stay below 2^53, so Lua's doubles hold them exactly.
GCRA_SCRIPT = """
local limit = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local capacity = interval * limit
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local used = tat + interval - now
if used > capacity then
  return {0, 0, used - capacity}
end
redis.call('SET', KEYS[1], string.format('%.0f', tat + interval), 'PX', math.ceil(used / 1000))
return {1, math.floor((capacity - used) / interval), (used - 1) % interval + 1}
"""


class RedisRateLimiter(RedisResource):
    component = "rate_limiter"

    def __init__(
        self,
        url: str,
        *,
        timeout: float,
        prefix: str = "lambdarun:",
        client: Redis | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        clock: Callable[[], float] | None = None,
    ) -> None:
        """`clock` (seconds) replaces Redis's clock; only tests need it."""
        super().__init__(
            url, timeout=timeout, prefix=prefix, client=client, max_connections=max_connections
        )
        self._clock = clock
        self._script: AsyncScript | None = None

    @classmethod
    def from_url(cls, url: str, *, timeout: float, prefix: str = "lambdarun:") -> RedisRateLimiter:
        """`redis://[user:password@]host[:port][/db]`, or `rediss://…` for TLS."""
        return cls(url, timeout=timeout, prefix=prefix)

    async def hit(self, key: str, *, limit: int, window: int) -> RateLimitResult:
        interval = emission_interval(limit, window)
        now = "" if self._clock is None else str(round(self._clock() * MICROS))
        args = (limit, interval, now)

        async def run(client: Redis) -> list[int]:
            if self._script is None:
                # EVALSHA, falling back to SCRIPT LOAD when the server has not seen it
                # (first use, or after a restart emptied its script cache).
                self._script = client.register_script(GCRA_SCRIPT)
            reply: list[int] = await self._script([self.prefix + key], args, client)
            return reply

        allowed, remaining, reset_micros = await self._run(run)
        return RateLimitResult(
            allowed=bool(allowed),
            limit=limit,
            remaining=int(remaining),
            reset_after=int(reset_micros) / MICROS,
        )
