"""One async factory per store implementation, used by the store contract suite."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

from adapters.memory_store import MemoryStore
from adapters.ports import Store
from adapters.sqlite_store import SqliteStore
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
