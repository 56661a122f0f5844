"""Idempotency records in the DynamoDB store's table: a companion of `DynamoDBStore` that uses its
client. Item `IDEM#<key>` / `IDEM`; `expires_at` is the table's TTL attribute (epoch seconds),
so DynamoDB deletes expired records itself, and every condition also checks it (TTL deletion
runs late, up to days)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from botocore.exceptions import ClientError

from adapters import aws_clients
from adapters.dynamodb_items import key, number, string
from adapters.dynamodb_store import DynamoDBStore
from adapters.records import IdempotencyRecord, StoredResponse

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

    Item = dict[str, AttributeValueTypeDef]

_KIND = "IDEM"
_CONDITION_FAILED = "ConditionalCheckFailedException"
# `records.idempotency_live`, negated: the put succeeds only where no live record is.
_FREE = (
    "attribute_not_exists(pk) OR expires_at <= :now"
    " OR (attribute_not_exists(#status) AND locked_until <= :now)"
)
_NAMES = {"#status": "status", "#token": "token"}


def _epoch(value: datetime) -> AttributeValueTypeDef:
    return {"N": f"{value.timestamp():.6f}"}


def _when(item: Item, name: str) -> datetime:
    return datetime.fromtimestamp(float(item[name]["N"]), UTC)


def _record(item: Item) -> IdempotencyRecord:
    response = None
    if "status" in item:
        body = item["body"]["B"] if "body" in item else b""
        response = StoredResponse.stored(int(item["status"]["N"]), item["headers"]["S"], body)
    return IdempotencyRecord(
        key=item["pk"]["S"].removeprefix(f"{_KIND}#"),
        fingerprint=item["fingerprint"]["S"],
        token=item["token"]["S"],
        expires_at=_when(item, "expires_at"),
        locked_until=_when(item, "locked_until"),
        response=response,
    )


class DynamoDBIdempotencyStore:
    """Each method is one conditional request; a failed condition returns the old item, so a
    refused claim needs no second read."""

    def __init__(self, store: DynamoDBStore) -> None:
        self.store = store

    async def claim(self, record: IdempotencyRecord, *, now: datetime) -> IdempotencyRecord | None:
        db, table = self.store._db, self.store.table
        item: Item = {
            **key(_KIND, record.key),
            "fingerprint": string(record.fingerprint),
            "token": string(record.token),
            # Whole seconds, rounded up, as TTL wants them.
            "expires_at": number(math.ceil(record.expires_at.timestamp())),
            "locked_until": _epoch(record.locked_until),
        }
        try:
            await self.store._call(
                lambda: db.put_item(
                    TableName=table,
                    Item=item,
                    ConditionExpression=_FREE,
                    ExpressionAttributeNames={"#status": "status"},
                    ExpressionAttributeValues={":now": _epoch(now)},
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
            )
        except ClientError as exc:
            if aws_clients.error_code(exc) != _CONDITION_FAILED:
                raise
            return _record(cast("dict[str, Any]", exc.response)["Item"])
        return None

    async def complete(
        self, key_: str, *, token: str, response: StoredResponse, expires_at: datetime
    ) -> bool:
        db, table = self.store._db, self.store.table
        try:
            await self.store._call(
                lambda: db.update_item(
                    TableName=table,
                    Key=key(_KIND, key_),
                    UpdateExpression="SET #status = :status, headers = :headers, body = :body,"
                    " expires_at = :expires",
                    ConditionExpression="#token = :token AND attribute_not_exists(#status)",
                    ExpressionAttributeNames=_NAMES,
                    ExpressionAttributeValues={
                        ":status": number(response.status),
                        ":headers": string(response.headers_json()),
                        ":body": {"B": response.body},
                        ":expires": number(math.ceil(expires_at.timestamp())),
                        ":token": string(token),
                    },
                )
            )
        except ClientError as exc:
            if aws_clients.error_code(exc) != _CONDITION_FAILED:
                raise
            return False
        return True

    async def release(self, key_: str, *, token: str) -> None:
        db, table = self.store._db, self.store.table
        try:
            await self.store._call(
                lambda: db.delete_item(
                    TableName=table,
                    Key=key(_KIND, key_),
                    ConditionExpression="#token = :token AND attribute_not_exists(#status)",
                    ExpressionAttributeNames=_NAMES,
                    ExpressionAttributeValues={":token": string(token)},
                )
            )
        except ClientError as exc:
            if aws_clients.error_code(exc) != _CONDITION_FAILED:
                raise

    async def purge(self, *, now: datetime, limit: int) -> int:
        return 0  # the table's TTL does it
