"""The DynamoDB store for the store contract suite: a fresh table on the session's moto server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from adapters.dynamodb_store import DynamoDBStore
from adapters.ports import Store
from tests.support.moto_server import aws_environment, create_table, delete_table, running_server


@asynccontextmanager
async def dynamodb_store(tmp_path: Path) -> AsyncIterator[Store]:
    with aws_environment(running_server()):
        table = create_table()
        store = DynamoDBStore.from_url(f"dynamodb://{table}", timeout=5.0)
        await store.open()
        try:
            yield store
        finally:
            await store.close()
            delete_table(table)
