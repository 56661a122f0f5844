"""The queue contract: what is sent arrives once, its body decoded equal, its attributes kept."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest

from adapters.inprocess_queue import InProcessQueue
from adapters.messages import decode_body
from adapters.ports import Disposition, Queue
from adapters.pubsub_queue import PubSubQueue
from adapters.records import JobMessage
from adapters.sqs_queue import SqsQueue
from api.ids import new_id
from tests.support.moto_server import aws_env, create_queue, moto_server, sqs_client
from tests.support.pubsub import QUEUE_URL, running_fake_pubsub

__all__ = ["aws_env", "moto_server"]  # fixtures the SQS variant asks for by name

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@dataclass(slots=True)
class Delivery:
    """A queue, and how a consumer of it gets what was sent (the consumer side is the runtime's)."""

    queue: Queue
    received: Callable[[int], Awaitable[list[JobMessage]]]


async def inprocess_delivery(request: pytest.FixtureRequest) -> AsyncIterator[Delivery]:
    queue = InProcessQueue(retry_delay=0.01)
    got: list[JobMessage] = []

    async def handler(message: JobMessage) -> Disposition:
        got.append(message)
        return Disposition.ACK

    async def received(count: int) -> list[JobMessage]:
        await asyncio.wait_for(queue.join(), 5)
        return list(got)

    await queue.open()
    queue.start_consuming(handler)
    try:
        yield Delivery(queue, received)
    finally:
        await queue.close()


async def sqs_delivery(request: pytest.FixtureRequest) -> AsyncIterator[Delivery]:
    request.getfixturevalue("aws_env")
    url = create_queue()

    async def received(count: int) -> list[JobMessage]:
        # Receive and delete as Lambda's event source mapping would, until `count` have come
        # and one more poll finds nothing.
        got: list[JobMessage] = []
        deadline = time.monotonic() + 10
        with sqs_client() as sqs:
            while time.monotonic() < deadline:
                answer = sqs.receive_message(
                    QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
                )
                messages = answer.get("Messages", [])
                if not messages and len(got) >= count:
                    break
                for message in messages:
                    attributes = {
                        name: value["StringValue"]
                        for name, value in message.get("MessageAttributes", {}).items()
                    }
                    got.append(decode_body(message["Body"], attributes))
                    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return got

    queue = SqsQueue(url, timeout=5.0)
    await queue.open()
    try:
        yield Delivery(queue, received)
    finally:
        await queue.close()


async def pubsub_delivery(request: pytest.FixtureRequest) -> AsyncIterator[Delivery]:
    with running_fake_pubsub() as fake:

        async def received(count: int) -> list[JobMessage]:
            published = await asyncio.to_thread(fake.wait_for, count)
            # Pub/Sub carries the job id as an attribute too, for subscription filters.
            return [
                decode_body(p.data, {k: v for k, v in p.attributes.items() if k != "job_id"})
                for p in published
            ]

        queue = PubSubQueue(QUEUE_URL, timeout=5.0, environ={"PUBSUB_EMULATOR_HOST": fake.host})
        await queue.open()
        try:
            yield Delivery(queue, received)
        finally:
            await queue.close()


DELIVERIES = {"inprocess": inprocess_delivery, "sqs": sqs_delivery, "pubsub": pubsub_delivery}


@pytest.fixture(params=sorted(DELIVERIES))
async def delivery(request: pytest.FixtureRequest) -> AsyncIterator[Delivery]:
    async for opened in DELIVERIES[request.param](request):
        yield opened


def a_message(**attributes: str) -> JobMessage:
    payload = {"user_id": new_id(), "nested": {"n": [1, 2.5, None, "é", True]}}
    return JobMessage(job_id=new_id(), task="users.welcome", payload=payload, attributes=attributes)


async def test_a_message_arrives_equal_with_its_trace_context(delivery: Delivery) -> None:
    sent = a_message(traceparent=TRACEPARENT, tracestate="rojo=00f067aa0ba902b7")
    await delivery.queue.send(sent)
    assert await delivery.received(1) == [sent]


async def test_a_message_without_attributes_arrives_equal(delivery: Delivery) -> None:
    sent = a_message()
    await delivery.queue.send(sent)
    assert await delivery.received(1) == [sent]


async def test_every_message_arrives_once(delivery: Delivery) -> None:
    sent = [a_message(traceparent=TRACEPARENT) for _ in range(5)]
    await asyncio.gather(*(delivery.queue.send(message) for message in sent))
    received = await delivery.received(len(sent))
    assert sorted(received, key=lambda m: m.job_id) == sorted(sent, key=lambda m: m.job_id)


async def test_a_queue_can_be_opened_again_and_pinged(delivery: Delivery) -> None:
    await delivery.queue.open()
    await delivery.queue.ping()
    await delivery.queue.close()
    await delivery.queue.open()
    await delivery.queue.ping()
