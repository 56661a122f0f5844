"""A cache that keeps nothing (`CACHE_URL=none://`): every read goes to the store."""

from __future__ import annotations


class NullCache:
    async def open(self) -> None:
        return None

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def get(self, key: str) -> bytes | None:
        return None

    async def set(self, key: str, value: bytes, *, ttl: int) -> None:
        return None

    async def delete(self, key: str) -> None:
        return None
