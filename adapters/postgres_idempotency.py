"""Idempotency records in the PostgreSQL store's database (migration 0002): a companion of
`PostgresStore` that uses its pool, so no second pool and no second set of connections."""

from __future__ import annotations

from datetime import datetime

import asyncpg  # type: ignore[import-untyped, unused-ignore]

from adapters.errors import Unavailable
from adapters.postgres_store import PostgresStore
from adapters.records import IdempotencyRecord, StoredResponse

# `records.idempotency_live` as the WHERE of an upsert. Concurrent claims of one key wait on
# the row lock and each re-checks the WHERE on the row the winner wrote: one returns a row.
_CLAIM = (
    "INSERT INTO idempotency (key, fingerprint, token, expires_at, locked_until)"
    " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (key) DO UPDATE SET"
    " fingerprint = excluded.fingerprint, token = excluded.token,"
    " expires_at = excluded.expires_at, locked_until = excluded.locked_until,"
    " status = NULL, headers = NULL, body = NULL"
    " WHERE idempotency.expires_at <= $6"
    " OR (idempotency.status IS NULL AND idempotency.locked_until <= $6)"
    " RETURNING token"
)
_TRIES = 3


def _record(row: asyncpg.Record) -> IdempotencyRecord:
    response = None
    if row["status"] is not None:
        response = StoredResponse.stored(row["status"], row["headers"], bytes(row["body"]))
    return IdempotencyRecord(
        key=row["key"],
        fingerprint=row["fingerprint"],
        token=row["token"],
        expires_at=row["expires_at"],
        locked_until=row["locked_until"],
        response=response,
    )


class PostgresIdempotencyStore:
    def __init__(self, store: PostgresStore) -> None:
        self.store = store

    async def claim(self, record: IdempotencyRecord, *, now: datetime) -> IdempotencyRecord | None:
        for _ in range(_TRIES):
            async with self.store._connection() as conn:
                won = await conn.fetchrow(
                    _CLAIM,
                    record.key,
                    record.fingerprint,
                    record.token,
                    record.expires_at,
                    record.locked_until,
                    now,
                )
                if won is not None:
                    return None
                row = await conn.fetchrow("SELECT * FROM idempotency WHERE key = $1", record.key)
            if row is not None:
                return _record(row)
            # Released between the two statements: the key is free again.
        raise Unavailable("store", "idempotency key kept changing hands; try again")

    async def complete(
        self, key: str, *, token: str, response: StoredResponse, expires_at: datetime
    ) -> bool:
        row = await self.store._fetchrow(
            "UPDATE idempotency SET status = $3, headers = $4, body = $5, expires_at = $6"
            " WHERE key = $1 AND token = $2 AND status IS NULL RETURNING key",
            key,
            token,
            response.status,
            response.headers_json(),
            response.body,
            expires_at,
        )
        return row is not None

    async def release(self, key: str, *, token: str) -> None:
        await self.store._fetchrow(
            "DELETE FROM idempotency WHERE key = $1 AND token = $2 AND status IS NULL", key, token
        )

    async def purge(self, *, now: datetime, limit: int) -> int:
        async with self.store._connection() as conn:
            rows = await conn.fetch(
                "DELETE FROM idempotency WHERE key IN (SELECT key FROM idempotency"
                " WHERE expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING key",
                now,
                limit,
            )
        return len(rows)
