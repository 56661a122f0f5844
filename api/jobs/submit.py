"""Submitting a job: record it, then send its message; undo the record if the send fails."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from adapters.ports import Queue, Store
from adapters.records import JobMessage, JobRecord, JobStatus
from api.ids import new_id
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


async def submit_job(
    *,
    store: Store,
    queue: Queue,
    registry: TaskRegistry,
    task: str,
    payload: Mapping[str, Any],
    now: datetime,
    attributes: Mapping[str, str] | None = None,
    owner: str | None = None,
    max_payload_bytes: int | None = None,
) -> JobRecord:
    """`owner` is the submitter's subject (None without authentication). A payload over
    `max_payload_bytes` (as the message carries it: compact JSON) is refused before anything
    is recorded or sent, so it never meets the queue's own message limit."""
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
    job = JobRecord(
        id=new_id(),
        task=task,
        payload=data,
        status=JobStatus.QUEUED,
        created_at=now,
        updated_at=now,
        owner=owner,
    )
    await store.create_job(job)
    message = JobMessage(
        job_id=job.id, task=job.task, payload=job.payload, attributes=dict(attributes or {})
    )
    try:
        await queue.send(message)
    except BaseException:
        # No job may be left "queued" that no message will ever run.
        await store.delete_job(job.id)
        raise
    return job
