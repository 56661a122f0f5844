"""In-memory rate limiter: a fixed window per key, for one process."""

from __future__ import annotations

import time

from adapters.ports import RateLimitResult


class MemoryRateLimiter:
    # Holds only within one process; once a service scales out each instance
    # counts on its own, which is why Redis is the deployed choice.

    def __init__(self, *, max_keys: int = 100_000) -> None:
        self._windows: dict[str, tuple[float, int]] = {}
        self._max_keys = max_keys

    async def open(self) -> None:
        return None

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._windows.clear()

    async def hit(self, key: str, *, limit: int, window: int) -> RateLimitResult:
        now = time.monotonic()
        start, count = self._windows.get(key, (now, 0))
        if now - start >= window:
            start, count = now, 0
        count += 1
        if len(self._windows) >= self._max_keys and key not in self._windows:
            self._forget_expired(now, window)
        self._windows[key] = (start, count)
        reset_after = max(0.0, start + window - now)
        return RateLimitResult(
            allowed=count <= limit,
            limit=limit,
            remaining=max(0, limit - count),
            reset_after=reset_after,
        )

    def _forget_expired(self, now: float, window: int) -> None:
        self._windows = {k: v for k, v in self._windows.items() if now - v[0] < window}
