"""SQS queue: sends job messages; Lambda's event source mapping does the consuming."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from botocore.exceptions import BotoCoreError

from adapters import aws_clients
from adapters.errors import ConfigurationError, Unavailable
from adapters.messages import encode_body

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageAttributeValueTypeDef

    from adapters.records import JobMessage

# https://sqs.<region>.amazonaws.com/<account>/<name> (and the legacy <region>.queue host).
_AWS_HOST = re.compile(
    r"^(?:sqs\.(?P<a>[a-z0-9-]+)|(?P<b>[a-z0-9-]+)\.queue)\.amazonaws\.com(?:\.cn)?$"
)


class SqsQueue:
    """The Queue port on one SQS queue, standard or FIFO; `client` defaults to the shared one."""

    def __init__(self, url: str, *, timeout: float = 2.0, client: SQSClient | None = None) -> None:
        parts = urlsplit(url)
        path = parts.path.strip("/").split("/")
        if parts.scheme not in ("http", "https") or not parts.hostname or len(path) != 2:
            raise ConfigurationError(f"QUEUE_URL: expected an SQS queue URL, got {url!r}")
        self.url = url
        self.timeout = timeout
        self.fifo = path[1].endswith(".fifo")
        aws = _AWS_HOST.match(parts.hostname)
        # The queue's own region; otherwise (moto, LocalStack, ElasticMQ) the SDK's setting.
        self.region_name = (aws["a"] or aws["b"]) if aws else None
        # A URL outside AWS names its endpoint; inside AWS the SDK decides
        # (AWS_ENDPOINT_URL_SQS for a VPC endpoint, say).
        self.endpoint_url = None if aws else f"{parts.scheme}://{parts.netloc}"
        self._given = client
        self._client = client

    async def open(self) -> None:
        _ = self._sqs

    async def close(self) -> None:
        self._client = self._given  # the shared client stays, for the next invocation

    async def ping(self) -> None:
        sqs = self._sqs
        await aws_clients.call(
            "queue",
            lambda: sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"]),
        )

    async def send(self, message: JobMessage) -> None:
        sqs, body = self._sqs, encode_body(message)
        attributes: dict[str, MessageAttributeValueTypeDef] = {
            name: {"DataType": "String", "StringValue": value}
            for name, value in message.attributes.items()
            if value  # SQS refuses empty values
        }
        if self.fifo:
            # Jobs are independent: one group each keeps them parallel, and the job id as the
            # deduplication id drops a resend within SQS's five-minute window.
            await aws_clients.call(
                "queue",
                lambda: sqs.send_message(
                    QueueUrl=self.url,
                    MessageBody=body,
                    MessageAttributes=attributes,
                    MessageGroupId=message.job_id,
                    MessageDeduplicationId=message.job_id,
                ),
            )
        else:
            await aws_clients.call(
                "queue",
                lambda: sqs.send_message(
                    QueueUrl=self.url, MessageBody=body, MessageAttributes=attributes
                ),
            )

    @property
    def _sqs(self) -> SQSClient:
        if self._client is None:
            try:
                self._client = aws_clients.sqs(
                    timeout=self.timeout,
                    region_name=self.region_name,
                    endpoint_url=self.endpoint_url,
                )
            except BotoCoreError as exc:  # no region configured, for one
                raise Unavailable("queue", f"queue: cannot make an SQS client: {exc}") from exc
        return self._client
