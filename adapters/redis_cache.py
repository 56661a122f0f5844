"""Redis cache (redis.asyncio): shared by all instances; errors and timeouts raise `Unavailable`."""

from __future__ import annotations

from adapters.errors import ConfigurationError
from adapters.redis_client import RedisResource


class RedisCache(RedisResource):
    component = "cache"

    @classmethod
    def from_url(cls, url: str, *, timeout: float, prefix: str = "lambdarun:") -> RedisCache:
        """`redis://[user:password@]host[:port][/db]`, or `rediss://…` for TLS."""
        return cls(url, timeout=timeout, prefix=prefix)

    async def get(self, key: str) -> bytes | None:
        value = await self._run(lambda client: client.get(self.prefix + key))
        if isinstance(value, str):
            raise ConfigurationError("cache: the Redis client passed in decodes responses")
        return value

    async def set(self, key: str, value: bytes, *, ttl: int) -> None:
        if ttl <= 0:
            # Already expired: keep nothing, as the memory cache does (Redis refuses EX 0).
            await self.delete(key)
            return
        await self._run(lambda client: client.set(self.prefix + key, value, ex=ttl))

    async def delete(self, key: str) -> None:
        await self._run(lambda client: client.delete(self.prefix + key))
