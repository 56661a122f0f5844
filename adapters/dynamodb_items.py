"""DynamoDB item encoding for the store: records to attribute maps and back, update expressions."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING

from adapters.ports import UserChanges
from adapters.records import JobRecord, JobStatus, UserRecord, sortable_time

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

    Item = dict[str, AttributeValueTypeDef]

USERS = "USERS"  # the gsi1 partition that lists users in creation order
# The gsi1 partition of due jobs, sorted by due time: only a job with a due time has gsi1 keys,
# so the index holds the outbox and nothing else of the jobs (a sparse index). Every due job
# shares the partition key: one index partition takes ~1,000 writes/s, far above what a
# scale-to-zero deployment sends; shard the key (DUE#0..n) before outgrowing that.
DUE = "DUE"


timestamp = sortable_time


def string(value: str) -> AttributeValueTypeDef:
    return {"S": value}


def number(value: int) -> AttributeValueTypeDef:
    return {"N": str(value)}


def when(value: datetime | None) -> AttributeValueTypeDef | None:
    return None if value is None else string(timestamp(value))


def key(kind: str, id_: str) -> Item:
    return {"pk": string(f"{kind}#{id_}"), "sk": string(kind)}


def read(item: Item, name: str) -> str | None:
    value = item.get(name)
    return None if value is None else value.get("S", value.get("N"))


def read_time(item: Item, name: str) -> datetime | None:
    value = read(item, name)
    return None if value is None else datetime.fromisoformat(value)


def user_item(user: UserRecord) -> Item:
    values = {
        **key("USER", user.id),
        "gsi1pk": string(USERS),
        "gsi1sk": string(user.id),
        "id": string(user.id),
        "email": string(user.email),
        "name": string(user.name),
        "created_at": string(timestamp(user.created_at)),
        "updated_at": string(timestamp(user.updated_at)),
        "version": number(user.version),
        "welcomed_at": when(user.welcomed_at),
    }
    return {k: v for k, v in values.items() if v is not None}


def user_of(item: Item) -> UserRecord:
    return UserRecord(
        id=item["id"]["S"],
        email=item["email"]["S"],
        name=item["name"]["S"],
        created_at=datetime.fromisoformat(item["created_at"]["S"]),
        updated_at=datetime.fromisoformat(item["updated_at"]["S"]),
        version=int(item["version"]["N"]),
        welcomed_at=read_time(item, "welcomed_at"),
    )


def job_item(job: JobRecord) -> Item:
    values = {
        **key("JOB", job.id),
        "id": string(job.id),
        "task": string(job.task),
        "payload": string(json.dumps(job.payload)),  # a JSON string: exact, no Decimal
        "status": string(job.status.value),
        "created_at": string(timestamp(job.created_at)),
        "updated_at": string(timestamp(job.updated_at)),
        "attempts": number(job.attempts),
        "started_at": when(job.started_at),
        "finished_at": when(job.finished_at),
        "lease_until": when(job.lease_until),
        "result": None if job.result is None else string(json.dumps(job.result)),
        "error": None if job.error is None else string(job.error),
        "owner": None if job.owner is None else string(job.owner),
        **due_attributes(job.id, job.due_at),
    }
    return {k: v for k, v in values.items() if v is not None}


def due_key(job_id: str, due_at: datetime) -> str:
    """gsi1sk of a due job: its due time first, so the partition is in due order."""
    return f"{timestamp(due_at)}#{job_id}"


def due_until(now: datetime) -> str:
    """The largest gsi1sk due at `now`: '~' sorts after every character of an id."""
    return f"{timestamp(now)}#~"


def due_attributes(job_id: str, due_at: datetime | None) -> dict[str, AttributeValueTypeDef | None]:
    """due_at and the gsi1 keys that put the job in the due index, or None for each to remove
    them."""
    if due_at is None:
        return {"due_at": None, "gsi1pk": None, "gsi1sk": None}
    return {
        "due_at": string(timestamp(due_at)),
        "gsi1pk": string(DUE),
        "gsi1sk": string(due_key(job_id, due_at)),
    }


def job_of(item: Item) -> JobRecord:
    result = read(item, "result")
    return JobRecord(
        id=item["id"]["S"],
        task=item["task"]["S"],
        payload=json.loads(item["payload"]["S"]),
        status=JobStatus(item["status"]["S"]),
        created_at=datetime.fromisoformat(item["created_at"]["S"]),
        updated_at=datetime.fromisoformat(item["updated_at"]["S"]),
        attempts=int(item["attempts"]["N"]),
        started_at=read_time(item, "started_at"),
        finished_at=read_time(item, "finished_at"),
        lease_until=read_time(item, "lease_until"),
        result=None if result is None else json.loads(result),
        error=read(item, "error"),
        owner=read(item, "owner"),
        due_at=read_time(item, "due_at"),
    )


class Expression:
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
        self.values[f":add_{attr}"] = number(amount)
        self._set.append(f"{self.name(attr)} = {self.name(attr)} + :add_{attr}")

    def set_due(self, job_id: str, due_at: datetime | None) -> None:
        for attr, value in due_attributes(job_id, due_at).items():
            self.set(attr, value)

    @property
    def update(self) -> str:
        parts = [f"SET {', '.join(self._set)}"] if self._set else []
        return " ".join(parts + ([f"REMOVE {', '.join(self._remove)}"] if self._remove else []))


def user_update(changes: UserChanges, at: datetime) -> Expression:
    e = Expression()
    for attr in ("email", "name"):
        if attr in changes:
            e.set(attr, string(changes[attr]))
    if "welcomed_at" in changes:
        e.set("welcomed_at", when(changes["welcomed_at"]))
    e.set("updated_at", string(timestamp(at)))
    e.add("version", 1)
    return e
