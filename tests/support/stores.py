"""One async factory per store implementation, used by the store contract suite, and the
records those tests write."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

from adapters.memory_store import MemoryStore
from adapters.ports import Store
from adapters.records import JobRecord, JobStatus, UserRecord
from adapters.sqlite_store import SqliteStore
from api.ids import new_id
from tests.support.dynamodb import dynamodb_store
from tests.support.postgres import postgres_store

StoreFactory = Callable[[Path], AbstractAsyncContextManager[Store]]


@asynccontextmanager
async def memory_store(tmp_path: Path) -> AsyncIterator[Store]:
    store = MemoryStore()
    await store.open()
    yield store
    await store.close()


@asynccontextmanager
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    store = SqliteStore(str(tmp_path / "contract.db"))
    await store.open()
    try:
        yield store
    finally:
        await store.close()


STORE_FACTORIES: dict[str, StoreFactory] = {
    "memory": memory_store,
    "sqlite": sqlite_store,
    "postgres": postgres_store,
    "dynamodb": dynamodb_store,
}


NOW = datetime(2026, 11, 30, 12, 0, 0, 123456, tzinfo=UTC)


def a_user(email: str | None = None, **fields: object) -> UserRecord:
    user_id = new_id()
    values: dict[str, object] = {
        "id": user_id,
        "email": email or f"{user_id[-12:]}@example.com",
        "name": "Ada Lovelace",
        "created_at": NOW,
        "updated_at": NOW,
        **fields,
    }
    return UserRecord(**values)  # type: ignore[arg-type]


def a_job(**fields: object) -> JobRecord:
    values: dict[str, object] = {
        "id": new_id(),
        "task": "users.welcome",
        "payload": {"user_id": "u1", "nested": {"n": [1, 2.5, None, "é"]}},
        "status": JobStatus.QUEUED,
        "created_at": NOW,
        "updated_at": NOW,
        **fields,
    }
    return JobRecord(**values)  # type: ignore[arg-type]
