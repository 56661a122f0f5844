"""The SQS queue against moto in server mode: FIFO, attributes, and failures at send."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

from adapters.errors import ConfigurationError, Unavailable
from adapters.messages import encode_body
from adapters.records import JobMessage
from adapters.sqs_queue import SqsQueue
from api.ids import new_id
from tests.support.moto_server import (
    ACCOUNT,
    aws_env,
    create_queue,
    moto_server,
    sqs_client,
)
from tests.support.net import refused_port

__all__ = ["aws_env", "moto_server"]  # fixtures, used by name

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def a_message(job_id: str | None = None, **attributes: str) -> JobMessage:
    return JobMessage(
        job_id=job_id or new_id(), task="users.welcome", payload={"n": 1}, attributes=attributes
    )


def receive_all(url: str) -> list[dict[str, Any]]:
    """Every message now on the queue, with its attributes, deleted as a consumer would."""
    got: list[dict[str, Any]] = []
    with sqs_client() as sqs:
        while True:
            answer = sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=10,
                MessageAttributeNames=["All"],
                MessageSystemAttributeNames=["MessageGroupId", "MessageDeduplicationId"],
            )
            messages = answer.get("Messages", [])
            if not messages:
                return got
            for message in messages:
                got.append(dict(message))
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


async def test_a_fifo_queue_drops_a_resent_job(aws_env: pytest.MonkeyPatch) -> None:
    queue = SqsQueue(create_queue(fifo=True))
    first, other = a_message(), a_message()
    await queue.send(first)
    await queue.send(first)  # a retried submission of the same job
    await queue.send(other)
    received = receive_all(queue.url)
    assert [m["Body"] for m in received] == [encode_body(first), encode_body(other)]
    assert [m["Attributes"]["MessageGroupId"] for m in received] == [first.job_id, other.job_id]
    assert [m["Attributes"]["MessageDeduplicationId"] for m in received] == [
        first.job_id,
        other.job_id,
    ]


async def test_message_attributes_travel_as_string_attributes(aws_env: pytest.MonkeyPatch) -> None:
    queue = SqsQueue(create_queue())
    sent = a_message(traceparent=TRACEPARENT, empty="")
    await queue.send(sent)
    [received] = receive_all(queue.url)
    assert received["Body"] == encode_body(sent)
    # SQS refuses an empty attribute value, so the queue leaves it out rather than fail.
    assert received["MessageAttributes"] == {
        "traceparent": {"DataType": "String", "StringValue": TRACEPARENT}
    }


async def test_an_unreachable_endpoint_is_unavailable_at_send(aws_env: pytest.MonkeyPatch) -> None:
    with refused_port() as port:
        queue = SqsQueue(f"http://127.0.0.1:{port}/{ACCOUNT}/jobs", timeout=1.0)
        await queue.open()
        for call in (queue.send(a_message()), queue.ping()):
            with pytest.raises(Unavailable) as raised:
                await call
            assert raised.value.component == "queue"
            assert isinstance(raised.value.__cause__, EndpointConnectionError)


async def test_a_missing_queue_is_unavailable(aws_env: pytest.MonkeyPatch) -> None:
    url = create_queue().rpartition("/")[0] + "/lambdarun-no-such-queue"
    queue = SqsQueue(url)
    with pytest.raises(Unavailable, match="queue"):
        await queue.send(a_message())
    with pytest.raises(Unavailable):
        await queue.ping()


@pytest.mark.parametrize(
    ("url", "region", "endpoint", "fifo"),
    [
        ("https://sqs.eu-west-1.amazonaws.com/123456789012/jobs", "eu-west-1", None, False),
        ("https://sqs.us-east-2.amazonaws.com/123456789012/jobs.fifo", "us-east-2", None, True),
        ("https://ap-south-1.queue.amazonaws.com/123456789012/jobs", "ap-south-1", None, False),
        ("http://127.0.0.1:5000/123456789012/jobs", None, "http://127.0.0.1:5000", False),
    ],
)
def test_the_queue_url_gives_region_and_endpoint(
    url: str, region: str | None, endpoint: str | None, fifo: bool
) -> None:
    queue = SqsQueue(url)
    assert (queue.region_name, queue.endpoint_url, queue.fifo) == (region, endpoint, fifo)


@pytest.mark.parametrize(
    "url", ["sqs://jobs", "https://sqs.eu-west-1.amazonaws.com/jobs", "inprocess://"]
)
def test_a_bad_queue_url_names_the_setting(url: str) -> None:
    with pytest.raises(ConfigurationError, match="QUEUE_URL"):
        SqsQueue(url)
