"""Submitting a job: validate it, record it with its outbox entry, then send its message."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from adapters.ports import Store
from adapters.records import JobRecord, JobStatus
from api.ids import new_id
from api.jobs.outbox import Outbox
from api.tasks.registry import TaskRegistry


class UnknownTask(LookupError):
    """No task is registered under that name."""


class InvalidPayload(ValueError):
    """The payload does not match the task's model."""

    def __init__(self, error: ValidationError) -> None:
        super().__init__(str(error))
        self.error = error


class PayloadTooLarge(ValueError):
    """The payload, as JSON, is larger than the limit (MAX_JOB_PAYLOAD_BYTES)."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"the payload is {size} bytes as JSON; the limit is {limit}")
        self.size = size
        self.limit = limit


def new_job(
    *,
    registry: TaskRegistry,
    task: str,
    payload: Mapping[str, Any],
    now: datetime,
    due_at: datetime,
    owner: str | None = None,
    max_payload_bytes: int | None = None,
) -> JobRecord:
    """A queued job for `task`, its payload validated against the task's model; nothing is
    written. `owner` is the submitter's subject (None without authentication). A payload over
    `max_payload_bytes` (as the message carries it: compact JSON) is refused here, so it never
    meets the queue's own message limit."""
    definition = registry.get(task)
    if definition is None:
        raise UnknownTask(task)
    try:
        model = definition.payload_model.model_validate(payload)
    except ValidationError as exc:
        raise InvalidPayload(exc) from exc
    data = model.model_dump(mode="json")
    if max_payload_bytes is not None:
        size = len(json.dumps(data, separators=(",", ":")).encode())
        if size > max_payload_bytes:
            raise PayloadTooLarge(size, max_payload_bytes)
    return JobRecord(
        id=new_id(),
        task=task,
        payload=data,
        status=JobStatus.QUEUED,
        created_at=now,
        updated_at=now,
        owner=owner,
        due_at=due_at,
    )


async def submit_job(
    *,
    store: Store,
    outbox: Outbox,
    registry: TaskRegistry,
    task: str,
    payload: Mapping[str, Any],
    now: datetime,
    attributes: Mapping[str, str] | None = None,
    owner: str | None = None,
    max_payload_bytes: int | None = None,
) -> JobRecord:
    """Record the job (its own outbox entry), then send its message. Once the job is written it
    is accepted: a failed send is the sweeper's to repeat, not the client's."""
    job = new_job(
        registry=registry,
        task=task,
        payload=payload,
        now=now,
        due_at=outbox.first_due(now),
        owner=owner,
        max_payload_bytes=max_payload_bytes,
    )
    await store.create_job(job)
    await outbox.send(job, now=now, attributes=attributes)
    return job
