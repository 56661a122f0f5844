"""A cache that fails open: when the cache service is down, callers carry on without it."""

from __future__ import annotations

import logging

from adapters.errors import Unavailable
from adapters.ports import Cache

logger = logging.getLogger(__name__)


class FailOpenCache:
    """Wraps a Cache: reads miss and writes are skipped while it raises `Unavailable`, so
    requests are served from the store; `ping()` still reports the fault to /readyz."""

    def __init__(self, inner: Cache) -> None:
        self.inner = inner

    async def open(self) -> None:
        try:
            await self.inner.open()
        except Unavailable as exc:
            logger.warning("cache unavailable at start-up, continuing without it: %s", exc)

    async def ping(self) -> None:
        await self.inner.ping()

    async def close(self) -> None:
        await self.inner.close()

    async def get(self, key: str) -> bytes | None:
        try:
            return await self.inner.get(key)
        except Unavailable as exc:
            logger.warning("cache read skipped: %s", exc)
            return None

    async def set(self, key: str, value: bytes, *, ttl: int) -> None:
        try:
            await self.inner.set(key, value, ttl=ttl)
        except Unavailable as exc:
            logger.warning("cache write skipped: %s", exc)

    async def delete(self, key: str) -> None:
        try:
            await self.inner.delete(key)
        except Unavailable as exc:
            logger.warning("cache invalidation skipped (entry expires by TTL): %s", exc)
