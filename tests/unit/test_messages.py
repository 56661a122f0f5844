from __future__ import annotations

import pytest

from adapters.messages import PoisonMessage, decode_body, encode_body
from adapters.records import JobMessage


def test_a_message_round_trips() -> None:
    message = JobMessage(job_id="j", task="t", payload={"a": [1, "é"]})
    decoded = decode_body(encode_body(message), {"traceparent": "00-x"})
    assert decoded == JobMessage(
        job_id="j", task="t", payload={"a": [1, "é"]}, attributes={"traceparent": "00-x"}
    )


@pytest.mark.parametrize(
    "body",
    [
        b"\xff",
        "not json",
        "[]",
        '{"job_id": "j", "task": "t", "payload": {}}',
        '{"job_id": "j", "task": "t", "payload": {}, "version": 2}',
        '{"job_id": 1, "task": "t", "payload": {}, "version": 1}',
        '{"job_id": "j", "task": "t", "payload": [], "version": 1}',
    ],
)
def test_poison_is_recognised(body: str | bytes) -> None:
    with pytest.raises(PoisonMessage):
        decode_body(body)
