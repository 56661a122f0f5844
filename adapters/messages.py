"""The wire format of what a worker is handed, shared by every queue and worker: a job message,
JSON `{job_id, task, payload, version}` (trace context travels as message attributes), or a
schedule tick, JSON `{schedule, version}` with an optional ISO `time` (docs/jobs.md)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from adapters.records import JobMessage, ScheduleTick

MESSAGE_VERSION = 1


class PoisonMessage(ValueError):
    """A message no worker can ever run: not JSON, wrong shape, or an unknown version."""


def encode_body(message: JobMessage) -> str:
    return json.dumps(
        {
            "job_id": message.job_id,
            "task": message.task,
            "payload": message.payload,
            "version": message.version,
        },
        separators=(",", ":"),
    )


def encode_tick(schedule: str) -> str:
    """A schedule tick as Cloud Scheduler publishes it (EventBridge Scheduler adds `time`)."""
    return json.dumps({"schedule": schedule, "version": MESSAGE_VERSION}, separators=(",", ":"))


def decode_body(
    body: str | bytes, attributes: dict[str, str] | None = None
) -> JobMessage | ScheduleTick:
    """A job message or a schedule tick; `PoisonMessage` for anything else."""
    try:
        data: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PoisonMessage(f"body is not JSON: {exc}") from exc
    return decode_object(data, attributes)


def decode_object(data: Any, attributes: dict[str, str] | None = None) -> JobMessage | ScheduleTick:
    """`decode_body` for JSON already parsed (a Lambda event is)."""
    if not isinstance(data, dict):
        raise PoisonMessage("body is not a JSON object")
    version = data.get("version")
    if version != MESSAGE_VERSION:
        raise PoisonMessage(f"unknown message version {version!r}")
    if "schedule" in data:
        return _tick(data)
    job_id, task, payload = data.get("job_id"), data.get("task"), data.get("payload")
    if not isinstance(job_id, str) or not isinstance(task, str) or not isinstance(payload, dict):
        raise PoisonMessage("job_id and task must be strings and payload an object")
    return JobMessage(
        job_id=job_id, task=task, payload=payload, version=version, attributes=attributes or {}
    )


def _tick(data: dict[str, Any]) -> ScheduleTick:
    schedule, time = data.get("schedule"), data.get("time")
    if not isinstance(schedule, str) or not schedule:
        raise PoisonMessage("schedule must be a task's name")
    if time is None:
        return ScheduleTick(schedule)
    try:
        scheduled = datetime.fromisoformat(time) if isinstance(time, str) else None
    except ValueError:
        scheduled = None
    if scheduled is None or scheduled.tzinfo is None:
        raise PoisonMessage(f"time must be an ISO 8601 time with its offset, not {time!r}")
    return ScheduleTick(schedule, scheduled)
