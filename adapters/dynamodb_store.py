"""DynamoDB store: one table, every rule a conditional write or a transaction (docs/dynamodb.md)."""

from __future__ import annotations

import asyncio
import functools
import json
import random
import re
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar, cast
from urllib.parse import urlsplit

from botocore.exceptions import BotoCoreError, ClientError

from adapters import aws_clients
from adapters.dynamodb_items import (
    DUE,
    USERS,
    Expression,
    due_until,
    job_item,
    job_of,
    key,
    number,
    string,
    timestamp,
    user_item,
    user_of,
    user_update,
)
from adapters.errors import (
    AlreadyExists,
    ConfigurationError,
    NotFound,
    Unavailable,
    VersionConflict,
)
from adapters.ports import UserChanges
from adapters.records import CLAIMABLE, JobRecord, JobStatus, Page, UserRecord

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef, TransactWriteItemTypeDef

    Item = dict[str, AttributeValueTypeDef]

T = TypeVar("T")
_TABLE_NAME = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")
_CONDITION_FAILED = "ConditionalCheckFailedException"
_CANCELLED = "TransactionCanceledException"
_REASON_FAILED = "ConditionalCheckFailed"  # the same, as a transaction's cancellation reason
# ValidationException means a bug (or an item over 400 KB): let it surface as it is.
_EXPECTED = frozenset({_CONDITION_FAILED, _CANCELLED, "ValidationException"})
# A transaction that met another in flight, or a user changed between our read and our
# transaction: retry (reading again), enough times for a handful of concurrent writers.
_TRANSACTION_TRIES = 8
_ABSENT = "attribute_not_exists(pk)"


def _reasons(exc: ClientError) -> list[str]:
    """The cancellation code of each item of a cancelled transaction, in request order."""
    return [r.get("Code", "None") for r in exc.response.get("CancellationReasons", [])]


class DynamoDBStore:
    """The Store port on one DynamoDB table; `client` defaults to the process's shared one."""

    def __init__(
        self, table: str, *, timeout: float = 2.0, client: DynamoDBClient | None = None
    ) -> None:
        self.table = table
        self.timeout = timeout
        self._given = client
        self._client = client

    @classmethod
    def from_url(
        cls, url: str, *, timeout: float = 2.0, client: DynamoDBClient | None = None
    ) -> DynamoDBStore:
        """`dynamodb://TABLE`; region, endpoint and credentials come from the SDK's own settings."""
        parts = urlsplit(url)
        table = parts.netloc or parts.path.strip("/")
        if parts.scheme != "dynamodb" or not _TABLE_NAME.match(table):
            raise ConfigurationError(f"DATABASE_URL: expected dynamodb://TABLE, got {url!r}")
        return cls(table, timeout=timeout, client=client)

    async def open(self) -> None:
        _ = self._db

    async def close(self) -> None:
        self._client = self._given  # the shared client stays, for the next invocation

    async def ping(self) -> None:
        db = self._db
        try:
            await self._call(lambda: db.get_item(TableName=self.table, Key=key("PING", "ping")))
        except ClientError as exc:
            raise Unavailable("store", f"store: {exc}") from exc

    @property
    def _db(self) -> DynamoDBClient:
        if self._client is None:
            try:
                self._client = aws_clients.dynamodb(timeout=self.timeout)
            except BotoCoreError as exc:  # no region configured, for one
                raise Unavailable("store", f"store: cannot make a DynamoDB client: {exc}") from exc
        return self._client

    async def _call(self, request: Callable[[], T]) -> T:
        return await aws_clients.call("store", request, expected=_EXPECTED)

    async def _transact(self, items: list[TransactWriteItemTypeDef]) -> ClientError | None:
        """Run a transaction; None if it committed, the error if a condition failed (see
        `_reasons`). Retries a conflict with another transaction in flight."""
        db = self._db
        for attempt in range(_TRANSACTION_TRIES):
            try:
                await self._call(lambda: db.transact_write_items(TransactItems=items))
            except ClientError as exc:
                if aws_clients.error_code(exc) != _CANCELLED:
                    raise
                reasons = set(_reasons(exc)) - {"None"}
                if _REASON_FAILED in reasons:  # decisive, whatever else was reported
                    return exc
                if reasons != {"TransactionConflict"}:
                    raise Unavailable("store", f"store: transaction cancelled {reasons}") from exc
                # Full jitter, as AWS's retry guidance has it; at most 1.3 s in all.
                await asyncio.sleep(random.uniform(0, 0.005 * 2**attempt))  # noqa: S311 - not crypto
            else:
                return None
        raise Unavailable("store", "store: transactions kept conflicting; try again")

    async def create_user(self, user: UserRecord, *, jobs: Sequence[JobRecord] = ()) -> UserRecord:
        email: Item = {**key("EMAIL", user.email), "user_id": string(user.id)}
        # One transaction: the user, its email's claim and its jobs (each its own outbox entry).
        failed = await self._transact(
            [
                _put_new(self.table, user_item(user)),
                _put_new(self.table, email),
                *(_put_new(self.table, job_item(job)) for job in jobs),
            ]
        )
        if failed is None:
            return user
        which = _reasons(failed).index(_REASON_FAILED)  # the first failed item, in request order
        if which == 1:
            raise AlreadyExists("email is already registered", field="email") from failed
        raise AlreadyExists("id is already taken", field="id") from failed

    async def get_user(self, user_id: str) -> UserRecord | None:
        db, item_key = self._db, key("USER", user_id)
        answer = await self._call(
            lambda: db.get_item(TableName=self.table, Key=item_key, ConsistentRead=True)
        )
        item = answer.get("Item")
        return None if item is None else user_of(item)

    async def list_users(self, *, limit: int, after: str | None = None) -> Page[UserRecord]:
        # A Query on gsi1 (gsi1pk=USERS, gsi1sk=id): ids are UUIDv7, so sort order is creation
        # order. Index reads are eventually consistent, unlike get_user.
        query: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": "gsi1",
            "KeyConditionExpression": "gsi1pk = :users",
            "ExpressionAttributeValues": {":users": string(USERS)},
        }
        if after:
            query["KeyConditionExpression"] += " AND gsi1sk > :after"
            query["ExpressionAttributeValues"][":after"] = string(after)
        items: list[Item] = []
        while len(items) <= limit:  # one more than asked says whether a next page exists
            answer = await self._call(
                functools.partial(self._db.query, **query, Limit=limit + 1 - len(items))
            )
            items += answer["Items"]
            if "LastEvaluatedKey" not in answer:  # a 1 MB page can stop short of Limit
                break
            query["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
        users = [user_of(item) for item in items[:limit]]
        more = len(items) > limit and users
        return Page(items=users, next_token=users[-1].id if more else None)

    async def update_user(
        self,
        user_id: str,
        changes: UserChanges,
        *,
        at: datetime,
        expected_version: int | None = None,
    ) -> UserRecord:
        if "email" not in changes:
            return await self._update_user(user_id, changes, at, expected_version)
        # An email change moves the EMAIL# item too, so it needs the current email: read, then
        # write all three items on condition that the version read is still the current one.
        for _ in range(_TRANSACTION_TRIES):
            current = await self.get_user(user_id)
            if current is None:
                raise NotFound(f"user {user_id}")
            if expected_version not in (None, current.version):
                raise VersionConflict(f"user {user_id} is at version {current.version}")
            updated = await self._change_email(current, changes, at)
            if updated is not None:
                return updated
            # It changed or went since the read: reading again tells which.
        raise Unavailable("store", f"store: user {user_id} kept changing; try again")

    async def _update_user(
        self, user_id: str, changes: UserChanges, at: datetime, expected_version: int | None
    ) -> UserRecord:
        db, e = self._db, user_update(changes, at)
        condition = "attribute_exists(pk)"
        if expected_version is not None:
            condition += f" AND {e.name('version')} = :expected"
            e.values[":expected"] = number(expected_version)
        try:
            answer = await self._call(
                lambda: db.update_item(
                    TableName=self.table,
                    Key=key("USER", user_id),
                    UpdateExpression=e.update,
                    ConditionExpression=condition,
                    ExpressionAttributeNames=e.names,
                    ExpressionAttributeValues=e.values,
                    ReturnValues="ALL_NEW",
                    # The old item comes back with the failure: tells a missing user from a
                    # stale version without a second read.
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
            )
        except ClientError as exc:
            if aws_clients.error_code(exc) != _CONDITION_FAILED:
                raise
            if cast("dict[str, Any]", exc.response).get("Item") is None:
                raise NotFound(f"user {user_id}") from exc
            message = f"user {user_id} changed since version {expected_version}"
            raise VersionConflict(message) from exc
        return user_of(answer["Attributes"])

    async def _change_email(
        self, current: UserRecord, changes: UserChanges, at: datetime
    ) -> UserRecord | None:
        """The updated user, or None if it changed (or went) since `current` was read."""
        if changes["email"] == current.email:
            try:
                return await self._update_user(current.id, changes, at, current.version)
            except VersionConflict:
                return None
        e = user_update(changes, at)
        e.values[":read"] = number(current.version)
        new_email: Item = {**key("EMAIL", changes["email"]), "user_id": string(current.id)}
        failed = await self._transact(
            [
                {
                    "Update": {
                        "TableName": self.table,
                        "Key": key("USER", current.id),
                        "UpdateExpression": e.update,
                        "ConditionExpression": f"{e.name('version')} = :read",
                        "ExpressionAttributeNames": e.names,
                        "ExpressionAttributeValues": e.values,
                    }
                },
                _release_email(self.table, current),
                _put_new(self.table, new_email),
            ]
        )
        if failed is None:
            return current.replace(**changes, version=current.version + 1, updated_at=at)
        if _reasons(failed)[0] != _REASON_FAILED and _reasons(failed)[2] == _REASON_FAILED:
            raise AlreadyExists("email is already registered", field="email") from failed
        return None

    async def delete_user(self, user_id: str) -> None:
        for _ in range(_TRANSACTION_TRIES):
            current = await self.get_user(user_id)
            if current is None:
                raise NotFound(f"user {user_id}")
            delete_user: TransactWriteItemTypeDef = {
                "Delete": {
                    "TableName": self.table,
                    "Key": key("USER", user_id),
                    "ConditionExpression": "#version = :read",
                    "ExpressionAttributeNames": {"#version": "version"},
                    "ExpressionAttributeValues": {":read": number(current.version)},
                }
            }
            if await self._transact([delete_user, _release_email(self.table, current)]) is None:
                return
        raise Unavailable("store", f"store: user {user_id} kept changing; try again")

    async def create_job(self, job: JobRecord) -> JobRecord:
        db, item = self._db, job_item(job)
        try:
            await self._call(
                lambda: db.put_item(TableName=self.table, Item=item, ConditionExpression=_ABSENT)
            )
        except ClientError as exc:
            if aws_clients.error_code(exc) != _CONDITION_FAILED:
                raise
            raise AlreadyExists(f"job {job.id} exists", field="id") from exc
        return job

    async def get_job(self, job_id: str) -> JobRecord | None:
        db, item_key = self._db, key("JOB", job_id)
        answer = await self._call(
            lambda: db.get_item(TableName=self.table, Key=item_key, ConsistentRead=True)
        )
        item = answer.get("Item")
        return None if item is None else job_of(item)

    async def claim_job(
        self, job_id: str, *, now: datetime, lease_until: datetime
    ) -> JobRecord | None:
        e = Expression(now=string(timestamp(now)), **{s.value: string(s.value) for s in CLAIMABLE})
        e.values[":running"] = string(JobStatus.RUNNING.value)
        e.set("status", string(JobStatus.RUNNING.value))
        e.add("attempts", 1)
        for attr in ("started_at", "updated_at"):
            e.set(attr, string(timestamp(now)))
        e.set("lease_until", string(timestamp(lease_until)))
        e.set_due(job_id, lease_until)
        e.set("error", None)
        status, lease = e.name("status"), e.name("lease_until")
        claimable = ", ".join(sorted(f":{s.value}" for s in CLAIMABLE))
        # Exactly records.can_claim.
        condition = (
            f"attribute_exists(pk) AND ({status} IN ({claimable})"
            f" OR ({status} = :running AND {lease} < :now))"
        )
        return await self._update_job(job_id, e, condition)

    async def finish_job(
        self,
        job_id: str,
        *,
        attempt: int,
        status: JobStatus,
        at: datetime,
        result: dict[str, object] | None = None,
        error: str | None = None,
    ) -> JobRecord | None:
        e = Expression(running=string(JobStatus.RUNNING.value), attempt=number(attempt))
        e.set("status", string(status.value))
        for attr in ("finished_at", "updated_at"):
            e.set(attr, string(timestamp(at)))
        e.set("lease_until", None)
        e.set_due(job_id, None)
        e.set("result", None if result is None else string(json.dumps(result)))
        e.set("error", None if error is None else string(error))
        condition = f"{e.name('status')} = :running AND {e.name('attempts')} = :attempt"
        return await self._update_job(job_id, e, condition)

    async def renew_lease(self, job_id: str, *, attempt: int, lease_until: datetime) -> bool:
        e = Expression(running=string(JobStatus.RUNNING.value), attempt=number(attempt))
        e.set("lease_until", string(timestamp(lease_until)))
        e.set_due(job_id, lease_until)
        condition = f"{e.name('status')} = :running AND {e.name('attempts')} = :attempt"
        return await self._update_job(job_id, e, condition) is not None

    async def reschedule(self, job_id: str, *, expected: datetime, due_at: datetime) -> bool:
        e = Expression(expected=string(timestamp(expected)))
        e.set_due(job_id, due_at)
        condition = f"{e.name('due_at')} = :expected"
        return await self._update_job(job_id, e, condition) is not None

    async def due_jobs(self, *, now: datetime, limit: int) -> list[JobRecord]:
        # A Query on the sparse gsi1 partition of due jobs, in due order (dynamodb_items.DUE).
        # Index reads are eventually consistent: a job may show here just after it stopped
        # being due, which the sender's conditional reschedule catches.
        query: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": "gsi1",
            "KeyConditionExpression": "gsi1pk = :due AND gsi1sk <= :until",
            "ExpressionAttributeValues": {":due": string(DUE), ":until": string(due_until(now))},
        }
        items: list[Item] = []
        while len(items) < limit:
            answer = await self._call(
                functools.partial(self._db.query, **query, Limit=limit - len(items))
            )
            items += answer["Items"]
            if "LastEvaluatedKey" not in answer:
                break
            query["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
        return [job_of(item) for item in items]

    async def _update_job(self, job_id: str, e: Expression, condition: str) -> JobRecord | None:
        db = self._db
        try:
            answer = await self._call(
                lambda: db.update_item(
                    TableName=self.table,
                    Key=key("JOB", job_id),
                    UpdateExpression=e.update,
                    ConditionExpression=condition,
                    ExpressionAttributeNames=e.names,
                    ExpressionAttributeValues=e.values,
                    ReturnValues="ALL_NEW",
                )
            )
        except ClientError as exc:
            if aws_clients.error_code(exc) != _CONDITION_FAILED:
                raise
            return None
        return job_of(answer["Attributes"])


def _put_new(table: str, item: Item) -> TransactWriteItemTypeDef:
    return {"Put": {"TableName": table, "Item": item, "ConditionExpression": _ABSENT}}


def _release_email(table: str, user: UserRecord) -> TransactWriteItemTypeDef:
    """Delete the user's EMAIL# item: absent already is fine, owned by another user is not."""
    return {
        "Delete": {
            "TableName": table,
            "Key": key("EMAIL", user.email),
            "ConditionExpression": "attribute_not_exists(pk) OR user_id = :owner",
            "ExpressionAttributeValues": {":owner": string(user.id)},
        }
    }
