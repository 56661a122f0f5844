"""Idempotency records in the SQLite store's database: a companion of `SqliteStore` that uses
its connection and helpers, so the records live (and go) with the store."""

from __future__ import annotations

import sqlite3
from datetime import datetime

from adapters.errors import Unavailable
from adapters.records import IdempotencyRecord, StoredResponse
from adapters.records import sortable_time as ts
from adapters.sqlite_store import SqliteStore

# `records.idempotency_live` as the WHERE of an upsert: the insert wins when the key is free,
# the update only when the record there no longer holds it; otherwise nothing is written and
# nothing returned. One statement, so atomic (SQLite serialises writers on the file).
_CLAIM = (
    "INSERT INTO idempotency (key, fingerprint, token, expires_at, locked_until)"
    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET fingerprint = excluded.fingerprint,"
    " token = excluded.token, expires_at = excluded.expires_at,"
    " locked_until = excluded.locked_until, status = NULL, headers = NULL, body = NULL"
    " WHERE idempotency.expires_at <= ?"
    " OR (idempotency.status IS NULL AND idempotency.locked_until <= ?)"
    " RETURNING token"
)
_TRIES = 3


def _record(row: sqlite3.Row) -> IdempotencyRecord:
    response = None
    if row["status"] is not None:
        response = StoredResponse.stored(row["status"], row["headers"], row["body"])
    return IdempotencyRecord(
        key=row["key"],
        fingerprint=row["fingerprint"],
        token=row["token"],
        expires_at=datetime.fromisoformat(row["expires_at"]),
        locked_until=datetime.fromisoformat(row["locked_until"]),
        response=response,
    )


class SqliteIdempotencyStore:
    """The table is created with the store's schema (adapters/sqlite_store.py)."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store

    async def claim(self, record: IdempotencyRecord, *, now: datetime) -> IdempotencyRecord | None:
        for _ in range(_TRIES):
            won = await self.store._fetchone(
                _CLAIM,
                record.key,
                record.fingerprint,
                record.token,
                ts(record.expires_at),
                ts(record.locked_until),
                ts(now),
                ts(now),
            )
            if won is not None:
                return None
            row = await self.store._fetchone("SELECT * FROM idempotency WHERE key = ?", record.key)
            if row is not None:
                return _record(row)
            # Released between the two statements: the key is free again.
        raise Unavailable("store", "idempotency key kept changing hands; try again")

    async def complete(
        self, key: str, *, token: str, response: StoredResponse, expires_at: datetime
    ) -> bool:
        row = await self.store._fetchone(
            "UPDATE idempotency SET status = ?, headers = ?, body = ?, expires_at = ?"
            " WHERE key = ? AND token = ? AND status IS NULL RETURNING key",
            response.status,
            response.headers_json(),
            response.body,
            ts(expires_at),
            key,
            token,
        )
        return row is not None

    async def release(self, key: str, *, token: str) -> None:
        await self.store._fetchone(
            "DELETE FROM idempotency WHERE key = ? AND token = ? AND status IS NULL", key, token
        )

    async def purge(self, *, now: datetime, limit: int) -> int:
        rows = await self.store._fetchall(
            "DELETE FROM idempotency WHERE key IN"
            " (SELECT key FROM idempotency WHERE expires_at <= ? LIMIT ?) RETURNING key",
            ts(now),
            limit,
        )
        return len(rows)
