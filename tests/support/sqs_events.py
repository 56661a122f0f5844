"""SQS events as Lambda's event source mapping delivers them, built around job messages."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from adapters.messages import encode_body
from adapters.records import JobMessage
from tests.support.lambda_events import sample

QUEUE_ARN = "arn:aws:sqs:eu-west-1:123456789012:lambdarun-test-JobsQueue"


def record(
    body: str, *, attributes: dict[str, str] | None = None, receive_count: int = 1
) -> dict[str, Any]:
    template = sample("sqs_job.json")["Records"][0]
    return {
        **template,
        "messageId": str(uuid.uuid4()),
        "receiptHandle": uuid.uuid4().hex,
        "body": body,
        "md5OfBody": hashlib.md5(body.encode()).hexdigest(),  # noqa: S324 - SQS's own checksum
        "attributes": {**template["attributes"], "ApproximateReceiveCount": str(receive_count)},
        "messageAttributes": {
            name: {
                "stringValue": value,
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": "String",
            }
            for name, value in (attributes or {}).items()
        },
        "eventSourceARN": QUEUE_ARN,
    }


def job_record(message: JobMessage, **kwargs: Any) -> dict[str, Any]:
    return record(encode_body(message), attributes=message.attributes, **kwargs)


def event(*records: dict[str, Any]) -> dict[str, Any]:
    return {"Records": list(records)}


def failures(response: dict[str, Any]) -> set[str]:
    return {item["itemIdentifier"] for item in response["batchItemFailures"]}


def dumps(value: object) -> str:
    return json.dumps(value)
