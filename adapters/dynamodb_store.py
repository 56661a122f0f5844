"""DynamoDB store: one table, every rule a conditional write or a transaction (docs/dynamodb.md)."""

from __future__ import annotations

import asyncio
import functools
import json
import random
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar, cast
from urllib.parse import urlsplit

from botocore.exceptions import BotoCoreError, ClientError

from adapters import aws_clients
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
    from collections.abc import Callable

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
_USERS = "USERS"
_ABSENT = "attribute_not_exists(pk)"


def _ts(value: datetime) -> str:
    # A fixed-width UTC form, so strings compare in time order inside condition expressions.
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def _s(value: str) -> AttributeValueTypeDef:
    return {"S": value}


def _n(value: int) -> AttributeValueTypeDef:
    return {"N": str(value)}


def _when(value: datetime | None) -> AttributeValueTypeDef | None:
    return None if value is None else _s(_ts(value))


def _key(kind: str, id_: str) -> Item:
    return {"pk": _s(f"{kind}#{id_}"), "sk": _s(kind)}


def _get(item: Item, name: str) -> str | None:
    value = item.get(name)
    return None if value is None else value.get("S", value.get("N"))


def _dt(item: Item, name: str) -> datetime | None:
    value = _get(item, name)
    return None if value is None else datetime.fromisoformat(value)


def _user_item(user: UserRecord) -> Item:
    values = {
        **_key("USER", user.id),
        "gsi1pk": _s(_USERS),
        "gsi1sk": _s(user.id),
        "id": _s(user.id),
        "email": _s(user.email),
        "name": _s(user.name),
        "created_at": _s(_ts(user.created_at)),
        "updated_at": _s(_ts(user.updated_at)),
        "version": _n(user.version),
        "welcomed_at": _when(user.welcomed_at),
    }
    return {k: v for k, v in values.items() if v is not None}


def _user(item: Item) -> UserRecord:
    return UserRecord(
        id=item["id"]["S"],
        email=item["email"]["S"],
        name=item["name"]["S"],
        created_at=datetime.fromisoformat(item["created_at"]["S"]),
        updated_at=datetime.fromisoformat(item["updated_at"]["S"]),
        version=int(item["version"]["N"]),
        welcomed_at=_dt(item, "welcomed_at"),
    )


def _job_item(job: JobRecord) -> Item:
    values = {
        **_key("JOB", job.id),
        "id": _s(job.id),
        "task": _s(job.task),
        "payload": _s(json.dumps(job.payload)),  # a JSON string: exact, no Decimal
        "status": _s(job.status.value),
        "created_at": _s(_ts(job.created_at)),
        "updated_at": _s(_ts(job.updated_at)),
        "attempts": _n(job.attempts),
        "started_at": _when(job.started_at),
        "finished_at": _when(job.finished_at),
        "lease_until": _when(job.lease_until),
        "result": None if job.result is None else _s(json.dumps(job.result)),
        "error": None if job.error is None else _s(job.error),
    }
    return {k: v for k, v in values.items() if v is not None}


def _job(item: Item) -> JobRecord:
    result = _get(item, "result")
    return JobRecord(
        id=item["id"]["S"],
        task=item["task"]["S"],
        payload=json.loads(item["payload"]["S"]),
        status=JobStatus(item["status"]["S"]),
        created_at=datetime.fromisoformat(item["created_at"]["S"]),
        updated_at=datetime.fromisoformat(item["updated_at"]["S"]),
        attempts=int(item["attempts"]["N"]),
        started_at=_dt(item, "started_at"),
        finished_at=_dt(item, "finished_at"),
        lease_until=_dt(item, "lease_until"),
        result=None if result is None else json.loads(result),
        error=_get(item, "error"),
    )


class _Expression:
    """Placeholders for every name and value, so reserved words (name, status) need no care."""

    def __init__(self, **values: AttributeValueTypeDef) -> None:
        self.names: dict[str, str] = {}
        self.values: dict[str, AttributeValueTypeDef] = {f":{k}": v for k, v in values.items()}
        self._set: list[str] = []
        self._remove: list[str] = []

    def name(self, attr: str) -> str:
        self.names[f"#{attr}"] = attr
        return f"#{attr}"

    def set(self, attr: str, value: AttributeValueTypeDef | None) -> None:
        if value is None:
            self._remove.append(self.name(attr))
        else:
            self.values[f":set_{attr}"] = value
            self._set.append(f"{self.name(attr)} = :set_{attr}")

    def add(self, attr: str, amount: int) -> None:
        self.values[f":add_{attr}"] = _n(amount)
        self._set.append(f"{self.name(attr)} = {self.name(attr)} + :add_{attr}")

    @property
    def update(self) -> str:
        parts = [f"SET {', '.join(self._set)}"] if self._set else []
        return " ".join(parts + ([f"REMOVE {', '.join(self._remove)}"] if self._remove else []))


def _user_update(changes: UserChanges, at: datetime) -> _Expression:
    e = _Expression()
    for attr in ("email", "name"):
        if attr in changes:
            e.set(attr, _s(changes[attr]))
    if "welcomed_at" in changes:
        e.set("welcomed_at", _when(changes["welcomed_at"]))
    e.set("updated_at", _s(_ts(at)))
    e.add("version", 1)
    return e


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
            await self._call(lambda: db.get_item(TableName=self.table, Key=_key("PING", "ping")))
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

    async def create_user(self, user: UserRecord) -> UserRecord:
        email: Item = {**_key("EMAIL", user.email), "user_id": _s(user.id)}
        failed = await self._transact(
            [
                _put_new(self.table, _user_item(user)),
                _put_new(self.table, email),
            ]
        )
        if failed is None:
            return user
        if _reasons(failed)[0] == _REASON_FAILED:
            raise AlreadyExists(f"user {user.id} exists", field="id") from failed
        raise AlreadyExists("email is already registered", field="email") from failed

    async def get_user(self, user_id: str) -> UserRecord | None:
        db, key = self._db, _key("USER", user_id)
        answer = await self._call(
            lambda: db.get_item(TableName=self.table, Key=key, ConsistentRead=True)
        )
        item = answer.get("Item")
        return None if item is None else _user(item)

    async def list_users(self, *, limit: int, after: str | None = None) -> Page[UserRecord]:
        # A Query on gsi1 (gsi1pk=USERS, gsi1sk=id): ids are UUIDv7, so sort order is creation
        # order. Index reads are eventually consistent, unlike get_user.
        query: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": "gsi1",
            "KeyConditionExpression": "gsi1pk = :users",
            "ExpressionAttributeValues": {":users": _s(_USERS)},
        }
        if after:
            query["KeyConditionExpression"] += " AND gsi1sk > :after"
            query["ExpressionAttributeValues"][":after"] = _s(after)
        items: list[Item] = []
        while len(items) <= limit:  # one more than asked says whether a next page exists
            answer = await self._call(
                functools.partial(self._db.query, **query, Limit=limit + 1 - len(items))
            )
            items += answer["Items"]
            if "LastEvaluatedKey" not in answer:  # a 1 MB page can stop short of Limit
                break
            query["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
        users = [_user(item) for item in items[:limit]]
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
        db, e = self._db, _user_update(changes, at)
        condition = "attribute_exists(pk)"
        if expected_version is not None:
            condition += f" AND {e.name('version')} = :expected"
            e.values[":expected"] = _n(expected_version)
        try:
            answer = await self._call(
                lambda: db.update_item(
                    TableName=self.table,
                    Key=_key("USER", user_id),
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
        return _user(answer["Attributes"])

    async def _change_email(
        self, current: UserRecord, changes: UserChanges, at: datetime
    ) -> UserRecord | None:
        """The updated user, or None if it changed (or went) since `current` was read."""
        if changes["email"] == current.email:
            try:
                return await self._update_user(current.id, changes, at, current.version)
            except VersionConflict:
                return None
        e = _user_update(changes, at)
        e.values[":read"] = _n(current.version)
        new_email: Item = {**_key("EMAIL", changes["email"]), "user_id": _s(current.id)}
        failed = await self._transact(
            [
                {
                    "Update": {
                        "TableName": self.table,
                        "Key": _key("USER", current.id),
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
                    "Key": _key("USER", user_id),
                    "ConditionExpression": "#version = :read",
                    "ExpressionAttributeNames": {"#version": "version"},
                    "ExpressionAttributeValues": {":read": _n(current.version)},
                }
            }
            if await self._transact([delete_user, _release_email(self.table, current)]) is None:
                return
        raise Unavailable("store", f"store: user {user_id} kept changing; try again")

    async def create_job(self, job: JobRecord) -> JobRecord:
        db, item = self._db, _job_item(job)
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
        db, key = self._db, _key("JOB", job_id)
        answer = await self._call(
            lambda: db.get_item(TableName=self.table, Key=key, ConsistentRead=True)
        )
        item = answer.get("Item")
        return None if item is None else _job(item)

    async def claim_job(
        self, job_id: str, *, now: datetime, lease_until: datetime
    ) -> JobRecord | None:
        e = _Expression(now=_s(_ts(now)), **{s.value: _s(s.value) for s in CLAIMABLE})
        e.values[":running"] = _s(JobStatus.RUNNING.value)
        e.set("status", _s(JobStatus.RUNNING.value))
        e.add("attempts", 1)
        for attr in ("started_at", "updated_at"):
            e.set(attr, _s(_ts(now)))
        e.set("lease_until", _s(_ts(lease_until)))
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
        e = _Expression(running=_s(JobStatus.RUNNING.value), attempt=_n(attempt))
        e.set("status", _s(status.value))
        for attr in ("finished_at", "updated_at"):
            e.set(attr, _s(_ts(at)))
        e.set("lease_until", None)
        e.set("result", None if result is None else _s(json.dumps(result)))
        e.set("error", None if error is None else _s(error))
        condition = f"{e.name('status')} = :running AND {e.name('attempts')} = :attempt"
        return await self._update_job(job_id, e, condition)

    async def _update_job(self, job_id: str, e: _Expression, condition: str) -> JobRecord | None:
        db = self._db
        try:
            answer = await self._call(
                lambda: db.update_item(
                    TableName=self.table,
                    Key=_key("JOB", job_id),
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
        return _job(answer["Attributes"])

    async def delete_job(self, job_id: str) -> None:
        db, key = self._db, _key("JOB", job_id)
        await self._call(lambda: db.delete_item(TableName=self.table, Key=key))


def _put_new(table: str, item: Item) -> TransactWriteItemTypeDef:
    return {"Put": {"TableName": table, "Item": item, "ConditionExpression": _ABSENT}}


def _release_email(table: str, user: UserRecord) -> TransactWriteItemTypeDef:
    """Delete the user's EMAIL# item: absent already is fine, owned by another user is not."""
    return {
        "Delete": {
            "TableName": table,
            "Key": _key("EMAIL", user.email),
            "ConditionExpression": "attribute_not_exists(pk) OR user_id = :owner",
            "ExpressionAttributeValues": {":owner": _s(user.id)},
        }
    }
