"""The DynamoDB store against moto in server mode: what the store contract cannot see."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

from adapters import aws_clients
from adapters.dynamodb_store import DynamoDBStore
from adapters.errors import ConfigurationError, NotFound, Unavailable, VersionConflict
from adapters.records import JobRecord, JobStatus, UserRecord
from api.ids import new_id
from tests.support.moto_server import (
    MotoServer,
    aws_env,
    create_table,
    delete_table,
    dynamodb_client,
    moto_server,
)
from tests.support.net import refused_port

__all__ = ["aws_env", "moto_server"]  # fixtures, used by name

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 30, 12, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture
def table(aws_env: pytest.MonkeyPatch) -> Iterator[str]:
    name = create_table()
    yield name
    delete_table(name)


@pytest.fixture
async def store(table: str) -> AsyncIterator[DynamoDBStore]:
    opened = DynamoDBStore.from_url(f"dynamodb://{table}")
    await opened.open()
    yield opened
    await opened.close()


def a_user(**fields: Any) -> UserRecord:
    user_id = new_id()
    values = {"email": f"{user_id[-12:]}@example.com", "name": "Ada", **fields}
    return UserRecord(id=user_id, created_at=NOW, updated_at=NOW, **values)


def operations(recorded: list[dict[str, Any]], table: str) -> list[tuple[str, dict[str, Any]]]:
    """(operation, request body) of each DynamoDB request the server received for `table`."""
    found = []
    for entry in recorded:
        target = entry["headers"].get("X-Amz-Target", "")
        body = entry["body"]
        if entry.get("body_encoded"):
            body = base64.b64decode(body).decode()
        request = json.loads(body or "{}")
        if target.startswith("DynamoDB_") and table in json.dumps(request):
            found.append((target.rpartition(".")[2], request))
    return found


async def test_listing_queries_the_index_and_never_scans(
    store: DynamoDBStore, moto_server: MotoServer
) -> None:
    for _ in range(5):
        await store.create_user(a_user())
    with moto_server.recording() as recorded:
        token: str | None = None
        while True:
            page = await store.list_users(limit=2, after=token)
            token = page.next_token
            if token is None:
                break
    requests = operations(recorded, store.table)
    assert [name for name, _ in requests] == ["Query"] * 3
    assert all(request["IndexName"] == "gsi1" for _, request in requests)


async def test_a_stale_or_missing_user_costs_one_conditional_update(
    store: DynamoDBStore, moto_server: MotoServer
) -> None:
    user = await store.create_user(a_user())
    await store.update_user(user.id, {"name": "First"}, at=NOW, expected_version=1)
    with moto_server.recording() as recorded:
        with pytest.raises(VersionConflict):
            await store.update_user(user.id, {"name": "Second"}, at=NOW, expected_version=1)
        with pytest.raises(NotFound):
            await store.update_user(new_id(), {"name": "Nobody"}, at=NOW, expected_version=1)
    # No read before or after: the failed write itself says which it was.
    assert [name for name, _ in operations(recorded, store.table)] == ["UpdateItem"] * 2


async def test_a_claim_is_one_conditional_update(
    store: DynamoDBStore, moto_server: MotoServer
) -> None:
    job = JobRecord(
        id=new_id(), task="t", payload={}, status=JobStatus.QUEUED, created_at=NOW, updated_at=NOW
    )
    await store.create_job(job)
    with moto_server.recording() as recorded:
        claimed = await store.claim_job(job.id, now=NOW, lease_until=NOW + timedelta(minutes=1))
    assert claimed is not None
    assert [name for name, _ in operations(recorded, store.table)] == ["UpdateItem"]


async def test_items_follow_the_documented_layout(store: DynamoDBStore) -> None:
    user = await store.create_user(a_user(email="ada@example.com"))
    client = dynamodb_client()

    def item(pk: str, sk: str) -> dict[str, Any]:
        answer = client.get_item(TableName=store.table, Key={"pk": {"S": pk}, "sk": {"S": sk}})
        return dict(answer["Item"])

    stored = item(f"USER#{user.id}", "USER")
    assert (stored["gsi1pk"], stored["gsi1sk"]) == ({"S": "USERS"}, {"S": user.id})
    assert stored["created_at"] == {"S": "2026-11-30T12:00:00.123456+00:00"}
    assert item("EMAIL#ada@example.com", "EMAIL")["user_id"] == {"S": user.id}


async def test_a_refused_connection_is_unavailable(aws_env: pytest.MonkeyPatch) -> None:
    with refused_port() as port:
        # The SDK's own per-service setting wins over AWS_ENDPOINT_URL (moto's).
        aws_env.setenv("AWS_ENDPOINT_URL_DYNAMODB", f"http://127.0.0.1:{port}")
        store = DynamoDBStore.from_url("dynamodb://lambdarun-nowhere", timeout=1.0)
        await store.open()
        for call in (
            store.ping(),
            store.get_user(new_id()),
            store.create_user(a_user()),
            store.list_users(limit=5),
        ):
            with pytest.raises(Unavailable) as raised:
                await call
            assert raised.value.component == "store"
            assert isinstance(raised.value.__cause__, EndpointConnectionError)


async def test_a_missing_table_is_unavailable(aws_env: pytest.MonkeyPatch) -> None:
    store = DynamoDBStore.from_url("dynamodb://lambdarun-no-such-table")
    await store.open()
    with pytest.raises(Unavailable, match="ResourceNotFoundException"):
        await store.ping()
    with pytest.raises(Unavailable):
        await store.get_job(new_id())


def test_clients_are_shared_and_time_out_as_told(aws_env: pytest.MonkeyPatch) -> None:
    first = aws_clients.dynamodb(timeout=1.5)
    assert aws_clients.dynamodb(timeout=1.5) is first
    config: Any = first.meta.config  # the stubs leave out the options' attributes
    assert (config.connect_timeout, config.read_timeout) == (1.5, 1.5)


def test_importing_makes_no_client() -> None:
    # With no region and no credentials anywhere, making a DynamoDB client would fail: so an
    # import that succeeds made none; the first open() is where it fails, as Unavailable.
    probe = (
        "import asyncio, adapters.dynamodb_store as d, adapters.sqs_queue\n"
        "from adapters.errors import Unavailable\n"
        "try:\n"
        "    asyncio.run(d.DynamoDBStore('lambdarun-table').open())\n"
        "except Unavailable as exc:\n"
        "    print('open:', exc)\n"
    )
    env = {"PATH": "/usr/bin:/bin", "AWS_CONFIG_FILE": "/nonexistent", "HOME": "/nonexistent"}
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.startswith("open: store: cannot make a DynamoDB client"), result.stdout


@pytest.mark.parametrize(
    ("url", "table"),
    [("dynamodb://lambdarun-dev", "lambdarun-dev"), ("dynamodb:///My_Table.v2", "My_Table.v2")],
)
def test_the_url_names_the_table(url: str, table: str) -> None:
    assert DynamoDBStore.from_url(url).table == table


@pytest.mark.parametrize("url", ["dynamodb://", "dynamodb://ab", "dynamodb://a b c", "sqlite:///x"])
def test_a_bad_url_names_the_setting(url: str) -> None:
    with pytest.raises(ConfigurationError, match="DATABASE_URL"):
        DynamoDBStore.from_url(url)
