"""A cache that fails open: when the cache service is down, callers carry on without it."""

from __future__ import annotations

import logging

from adapters.errors import Unavailable
from adapters.ports import Cache
from api.failopen import Breaker

logger = logging.getLogger(__name__)


class FailOpenCache:
    """Wraps a Cache: while it raises `Unavailable`, reads miss and writes are skipped, so
    requests are served from the store; for a few seconds after a failure it is not even
    tried. `ping()` still asks the real cache, so /readyz reports it as degraded."""

    def __init__(self, inner: Cache, breaker: Breaker | None = None) -> None:
        self.inner = inner
        self.breaker = breaker or Breaker()

    async def open(self) -> None:
        try:
            await self.inner.open()
        except Unavailable as exc:
            logger.warning("cache unavailable at start-up, continuing without it: %s", exc)

    async def ping(self) -> None:
        await self.inner.ping()
        self.breaker.reset()

    async def close(self) -> None:
        await self.inner.close()

    async def get(self, key: str) -> bytes | None:
        if self.breaker.is_open:
            return None
        try:
            return await self.inner.get(key)
        except Unavailable as exc:
            self._failed("read skipped", exc)
            return None

    async def set(self, key: str, value: bytes, *, ttl: int) -> None:
        if self.breaker.is_open:
            return
        try:
            await self.inner.set(key, value, ttl=ttl)
        except Unavailable as exc:
            self._failed("write skipped", exc)

    async def delete(self, key: str) -> None:
        # Invalidation is tried even while the breaker is open: a stale entry outliving a
        # change is worse than one slow call.
        try:
            await self.inner.delete(key)
        except Unavailable as exc:
            self._failed("invalidation skipped (the entry expires by its TTL)", exc)

    def _failed(self, what: str, exc: Unavailable) -> None:
        logger.warning("cache %s: %s", what, exc)
        self.breaker.trip()
