"""The wire format of a job message, shared by every queue and worker: JSON
`{job_id, task, payload, version}`; trace context travels as message attributes."""

from __future__ import annotations

import json
from typing import Any

from adapters.records import JobMessage

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


def decode_body(body: str | bytes, attributes: dict[str, str] | None = None) -> JobMessage:
    try:
        data: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PoisonMessage(f"body is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise PoisonMessage("body is not a JSON object")
    version = data.get("version")
    if version != MESSAGE_VERSION:
        raise PoisonMessage(f"unknown message version {version!r}")
    job_id, task, payload = data.get("job_id"), data.get("task"), data.get("payload")
    if not isinstance(job_id, str) or not isinstance(task, str) or not isinstance(payload, dict):
        raise PoisonMessage("job_id and task must be strings and payload an object")
    return JobMessage(
        job_id=job_id, task=task, payload=payload, version=version, attributes=attributes or {}
    )
