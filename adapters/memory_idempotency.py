"""In-memory idempotency records, beside the memory store: one process only, like that store."""

from __future__ import annotations

from datetime import datetime

from adapters.records import IdempotencyRecord, StoredResponse, idempotency_live


class MemoryIdempotencyStore:
    # No await between a check and its write: on one event loop each method is atomic.

    def __init__(self) -> None:
        self._records: dict[str, IdempotencyRecord] = {}

    async def claim(self, record: IdempotencyRecord, *, now: datetime) -> IdempotencyRecord | None:
        current = self._records.get(record.key)
        if current is not None and idempotency_live(current, now):
            return current
        self._records[record.key] = record
        return None

    async def complete(
        self, key: str, *, token: str, response: StoredResponse, expires_at: datetime
    ) -> bool:
        current = self._records.get(key)
        if current is None or current.token != token or current.response is not None:
            return False
        self._records[key] = IdempotencyRecord(
            key=key,
            fingerprint=current.fingerprint,
            token=token,
            expires_at=expires_at,
            locked_until=current.locked_until,
            response=response,
        )
        return True

    async def release(self, key: str, *, token: str) -> None:
        current = self._records.get(key)
        if current is not None and current.token == token and current.response is None:
            del self._records[key]

    async def purge(self, *, now: datetime, limit: int) -> int:
        expired = [key for key, r in self._records.items() if r.expires_at <= now][:limit]
        for key in expired:
            del self._records[key]
        return len(expired)
