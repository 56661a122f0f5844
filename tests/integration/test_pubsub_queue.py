"""The Pub/Sub queue against a real local HTTP endpoint speaking Pub/Sub's REST API (the fake in
tests/support/pubsub.py): what it publishes, how it authenticates, how failures surface."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest

from adapters.bootstrap import AdapterOptions, build_queue
from adapters.errors import ConfigurationError, Unavailable
from adapters.messages import decode_body, encode_body
from adapters.pubsub_queue import PubSubQueue
from adapters.records import JobMessage
from tests.support.pubsub import (
    QUEUE_URL,
    TOKEN,
    TOPIC,
    FakePubSub,
    Fault,
    fake_pubsub,
    running_fake_pubsub,
)

__all__ = ["fake_pubsub"]  # the fixture, used by name

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def job(job_id: str = "01J0000000000000000000000A", **attributes: str) -> JobMessage:
    return JobMessage(
        job_id=job_id, task="users.welcome", payload={"user_id": "u1"}, attributes=attributes
    )


def emulated(fake: FakePubSub, *, timeout: float = 2.0) -> PubSubQueue:
    return PubSubQueue(QUEUE_URL, timeout=timeout, environ={"PUBSUB_EMULATOR_HOST": fake.host})


def authenticated(fake: FakePubSub) -> PubSubQueue:
    """Pointed at the fake as if it were Google: a token from the (fake) metadata server."""
    return PubSubQueue(QUEUE_URL, endpoint=fake.endpoint, metadata_host=fake.host, environ={})


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A local port nothing listens on (bound, never listening: connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


async def test_publishes_the_encoded_message_with_its_attributes(fake_pubsub: FakePubSub) -> None:
    queue = emulated(fake_pubsub)
    message = job(traceparent=TRACEPARENT, empty="")
    try:
        await queue.send(message)
    finally:
        await queue.close()
    [published] = fake_pubsub.wait_for(1)
    assert published.topic == TOPIC
    assert published.data.decode() == encode_body(message)
    assert published.attributes == {"traceparent": TRACEPARENT, "job_id": message.job_id}
    assert decode_body(published.data, published.attributes) == JobMessage(
        job_id=message.job_id,
        task=message.task,
        payload=message.payload,
        attributes={"traceparent": TRACEPARENT, "job_id": message.job_id},
    )
    method, path, headers = fake_pubsub.requests[-1]
    assert (method, path) == ("POST", f"/v1/{TOPIC}:publish")
    assert "Authorization" not in headers  # the emulator takes no credentials


async def test_the_emulator_is_found_from_the_environment(
    fake_pubsub: FakePubSub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", fake_pubsub.host)
    queue = PubSubQueue(QUEUE_URL)
    assert queue.endpoint == f"http://{fake_pubsub.host}"
    try:
        await queue.send(job())
        await queue.ping()
    finally:
        await queue.close()
    assert len(fake_pubsub.published) == 1


async def test_open_connects_to_nothing_and_one_client_serves_every_send(
    fake_pubsub: FakePubSub,
) -> None:
    queue = emulated(fake_pubsub)
    await queue.open()
    assert fake_pubsub.requests == []
    try:
        for number in range(3):
            await queue.send(job(f"01J000000000000000000000{number:02d}"))
    finally:
        await queue.close()
    assert len(fake_pubsub.wait_for(3)) == 3
    # Sent again after close: a new client is made (the process goes on, e.g. a new lifespan).
    try:
        await queue.send(job())
    finally:
        await queue.close()
    assert len(fake_pubsub.wait_for(4)) == 4


async def test_on_google_it_authenticates_with_the_metadata_servers_token() -> None:
    with running_fake_pubsub(require_token=True) as fake:
        queue = authenticated(fake)
        try:
            await queue.send(job())
            await queue.send(job())
            await queue.ping()  # testIamPermissions: a publisher may not read the topic
        finally:
            await queue.close()
        assert len(fake.wait_for(2)) == 2
        assert fake.tokens_issued == 1  # kept until it is about to expire
        publish = [h for m, p, h in fake.requests if p.endswith(":publish")]
        assert all(h["Authorization"] == f"Bearer {TOKEN}" for h in publish)


async def test_a_token_about_to_expire_is_renewed() -> None:
    with running_fake_pubsub(require_token=True, token_lifetime=30) as fake:
        queue = authenticated(fake)
        try:
            await queue.send(job())
            await queue.send(job())
        finally:
            await queue.close()
        assert fake.tokens_issued == 2


async def test_a_refused_token_is_fetched_again_once() -> None:
    with running_fake_pubsub(require_token=True) as fake:
        fake.fail_next(Fault(401))
        queue = authenticated(fake)
        try:
            await queue.send(job())
        finally:
            await queue.close()
        assert len(fake.wait_for(1)) == 1
        assert fake.tokens_issued == 2


async def test_throttling_and_5xx_are_retried(fake_pubsub: FakePubSub) -> None:
    fake_pubsub.fail_next(Fault(503), Fault(429))
    queue = emulated(fake_pubsub)
    try:
        await queue.send(job())
    finally:
        await queue.close()
    assert len(fake_pubsub.wait_for(1)) == 1


async def test_5xx_after_the_retries_is_unavailable(fake_pubsub: FakePubSub) -> None:
    fake_pubsub.fail_next(Fault(500), Fault(502), Fault(503))
    queue = emulated(fake_pubsub)
    try:
        with pytest.raises(Unavailable) as caught:
            await queue.send(job())
    finally:
        await queue.close()
    assert caught.value.component == "queue"
    assert isinstance(caught.value.__cause__, httpx.HTTPStatusError)
    assert fake_pubsub.published == []


async def test_a_missing_topic_is_unavailable_without_retrying(fake_pubsub: FakePubSub) -> None:
    queue = PubSubQueue(
        "pubsub://projects/lambdarun-test/topics/missing",
        environ={"PUBSUB_EMULATOR_HOST": fake_pubsub.host},
    )
    try:
        with pytest.raises(Unavailable, match="404"):
            await queue.send(job())
        with pytest.raises(Unavailable):
            await queue.ping()
    finally:
        await queue.close()
    assert [p for _, p, _ in fake_pubsub.requests].count(
        "/v1/projects/lambdarun-test/topics/missing:publish"
    ) == 1


async def test_connection_refused_is_unavailable(closed_port: int) -> None:
    queue = PubSubQueue(QUEUE_URL, environ={"PUBSUB_EMULATOR_HOST": f"127.0.0.1:{closed_port}"})
    try:
        with pytest.raises(Unavailable) as caught:
            await queue.send(job())
        with pytest.raises(Unavailable):
            await queue.ping()
    finally:
        await queue.close()
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


async def test_a_silent_endpoint_times_out_as_unavailable(fake_pubsub: FakePubSub) -> None:
    fake_pubsub.fail_next(*[Fault(status=0, delay=0.5)] * 3)
    queue = emulated(fake_pubsub, timeout=0.2)
    try:
        with pytest.raises(Unavailable) as caught:
            await queue.send(job())
    finally:
        await queue.close()
    assert isinstance(caught.value.__cause__, httpx.TimeoutException)


async def test_no_metadata_server_is_unavailable(closed_port: int) -> None:
    queue = PubSubQueue(
        QUEUE_URL,
        endpoint=f"http://127.0.0.1:{closed_port}",
        metadata_host=f"127.0.0.1:{closed_port}",
        environ={},
    )
    try:
        with pytest.raises(Unavailable, match="metadata server"):
            await queue.send(job())
    finally:
        await queue.close()


async def test_without_publish_permission_it_is_not_ready() -> None:
    with running_fake_pubsub(require_token=True) as fake:
        queue = PubSubQueue(
            "pubsub://projects/lambdarun-test/topics/other",
            endpoint=fake.endpoint,
            metadata_host=fake.host,
            environ={},
        )
        fake.topics.add("projects/lambdarun-test/topics/other")
        fake.fail_next(Fault(200))  # answers {"error": ...}: no "permissions" granted
        try:
            with pytest.raises(Unavailable, match="no permission"):
                await queue.ping()
        finally:
            await queue.close()


@pytest.mark.parametrize(
    "url",
    [
        "pubsub://projects/p/topics/",
        "pubsub://projects/p/subscriptions/s",
        "pubsub://topics/t",
        "pubsub://projects/p/topics/1starts-with-a-digit",
    ],
)
def test_a_malformed_queue_url_names_the_setting(url: str) -> None:
    with pytest.raises(ConfigurationError, match="QUEUE_URL"):
        PubSubQueue(url)


def test_queue_url_selects_the_pubsub_adapter() -> None:
    queue = build_queue(QUEUE_URL, AdapterOptions(io_timeout=1.5))
    assert isinstance(queue, PubSubQueue)
    assert (queue.topic, queue.timeout) == (TOPIC, 1.5)
