"""`lambdarun local start-worker`: Lambda's SQS event source mapping, locally. It polls the queue
a function's SQS event names, hands batches to the function as Lambda builds them, and deletes
what the function finished: with ReportBatchItemFailures every record not in
`batchItemFailures`, nothing when the function failed or answered something invalid. What is not
deleted comes back after the queue's visibility timeout, and SQS dead-letters it after
maxReceiveCount: that part is the queue's own.

When SQS cannot be reached while polling (refused, reset, timed out, a 5xx or throttling), the
poller waits and tries again with a growing delay, as Lambda's mapping keeps polling through an
outage; a delete that fails only means SQS delivers those messages again, which the runner
acknowledges without running them twice."""

from __future__ import annotations

import base64
import contextlib
import json
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, cast

from lambdarun_cli.local_emulator import Emulator
from lambdarun_cli.local_invoke import InProcess, Stack
from lambdarun_cli.local_polling import Backoff, Signals, Stopping, transient
from lambdarun_cli.local_template import Function, SqsEvent
from lambdarun_cli.local_up import LocalError, aws_client

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

# Lambda's synchronous invocation payload limit, which bounds a batch gathered in a window.
_PAYLOAD_LIMIT = 6 * 1024 * 1024
_IDLE_SLEEP = 0.1  # between empty short polls (--wait-time-seconds 0)
Invoke = Callable[[dict[str, Any]], tuple[Any, str | None]]


class InitFailed(LocalError):
    """The function's module raised while being imported."""


@dataclass(slots=True)
class Totals:
    batches: int = 0
    messages: int = 0
    deleted: int = 0
    kept: int = 0
    first: float | None = None  # when the first batch arrived (monotonic)
    last: float | None = None  # when the last one was settled

    def rate(self) -> str:
        if self.first is None or self.last is None or self.last <= self.first:
            return ""
        seconds = self.last - self.first
        return (
            f" in {seconds:.2f} s ({self.messages / seconds:.1f} messages/s from the first batch)"
        )


class EventSourceMapping:
    """One poller, one batch at a time (Lambda runs up to the event's MaximumConcurrency)."""

    def __init__(
        self,
        sqs: SQSClient,
        *,
        queue_url: str,
        queue_arn: str,
        region: str,
        event: SqsEvent,
        wait_seconds: int,
        log: TextIO,
    ) -> None:
        self.sqs, self.queue_url, self.queue_arn, self.region = sqs, queue_url, queue_arn, region
        self.event = event
        self.wait_seconds = wait_seconds
        self.log = log
        self.totals = Totals()

    def _receive(self, most: int, wait: int) -> list[MessageTypeDef]:
        answer = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=most,
            WaitTimeSeconds=wait,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        return answer.get("Messages", [])

    def receive_batch(self, signals: Signals) -> list[MessageTypeDef]:
        """Up to BatchSize messages: the first poll waits for any; then, within the batching
        window, more polls until the batch is full (or near Lambda's payload limit)."""
        with signals.interruptible():
            batch = self._receive(min(10, self.event.batch_size), self.wait_seconds)
            if not batch and self.wait_seconds == 0:
                time.sleep(_IDLE_SLEEP)
        if not batch or self.event.batching_window <= 0:
            return batch
        deadline = time.monotonic() + self.event.batching_window
        size = sum(len(m.get("Body", "")) for m in batch)
        while len(batch) < self.event.batch_size and size < _PAYLOAD_LIMIT // 2:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or signals.requested:
                break
            try:
                more = self._receive(min(10, self.event.batch_size - len(batch)), 0)
            except Exception as exc:
                if not transient(exc):
                    raise
                break  # deliver what was gathered; the next poll meets the outage
            batch += more
            size += sum(len(m.get("Body", "")) for m in more)
            if not more:
                time.sleep(min(0.05, remaining))
        return batch

    def event_of(self, messages: list[MessageTypeDef]) -> dict[str, Any]:
        return {"Records": [self._record(m) for m in messages]}

    def _record(self, message: MessageTypeDef) -> dict[str, Any]:
        record: dict[str, Any] = {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message.get("Body", ""),
            "attributes": dict(message.get("Attributes", {})),
            "messageAttributes": {
                name: _attribute(value)
                for name, value in message.get("MessageAttributes", {}).items()
            },
            "md5OfBody": message.get("MD5OfBody", ""),
        }
        if message.get("MD5OfMessageAttributes"):
            record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
        record.update(eventSource="aws:sqs", eventSourceARN=self.queue_arn, awsRegion=self.region)
        return record

    def settle(self, messages: list[MessageTypeDef], response: Any, error: str | None) -> None:
        """Delete what the invocation finished; report the rest, which SQS redelivers."""
        ids = [m["MessageId"] for m in messages]
        if error is not None:
            keep, why = set(ids), f"the function failed: {error}"
        elif not self.event.report_failures:
            keep, why = set(), ""
        else:
            failed = reported_failures(response, set(ids))
            if failed is None:
                keep, why = set(ids), f"invalid batch response {json.dumps(response)[:200]}"
            else:
                keep, why = failed, "batchItemFailures"
        done = [m for m in messages if m["MessageId"] not in keep]
        undeleted = sum(self._delete(done[start : start + 10]) for start in range(0, len(done), 10))
        totals = self.totals
        totals.batches += 1
        totals.messages += len(messages)
        totals.deleted += len(done) - undeleted
        totals.kept += len(keep) + undeleted
        note = f", {len(keep)} left for redelivery ({why})" if keep else ""
        if undeleted:
            note += f", {undeleted} not deleted (SQS delivers them again)"
        print(
            f"lambdarun: batch {totals.batches}: {len(messages)} messages, "
            f"{len(done) - undeleted} deleted{note}",
            file=self.log,
            flush=True,
        )

    def _delete(self, chunk: list[MessageTypeDef]) -> int:
        """Delete up to ten finished messages; how many are still on the queue."""
        entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)]
        try:
            answer = self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)  # type: ignore[arg-type]
        except Exception as exc:
            if not transient(exc):
                raise
            print(f"lambdarun: delete failed: {exc}", file=self.log)
            return len(chunk)
        for failure in answer.get("Failed", []):
            print(f"lambdarun: delete failed: {failure}", file=self.log)
        return len(answer.get("Failed", []))

    def drained(self) -> bool:
        """Nothing visible, in flight or delayed: every message was deleted or dead-lettered."""
        names = [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ]
        answer = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=names)  # type: ignore[arg-type]
        return all(answer["Attributes"].get(n, "0") == "0" for n in names)  # type: ignore[call-overload]


def reported_failures(response: Any, ids: set[str]) -> set[str] | None:
    """The message ids a partial batch response names; None when Lambda would count the whole
    batch as failed (not an object, a missing, empty or unknown itemIdentifier)."""
    if response is None or response == {}:
        return set()
    if not isinstance(response, dict):
        return None
    failures = response.get("batchItemFailures")
    if failures is None:
        return set()
    if not isinstance(failures, list):
        return None
    found: set[str] = set()
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if not isinstance(identifier, str) or identifier not in ids:
            return None
        found.add(identifier)
    return found


def _attribute(value: Any) -> dict[str, Any]:
    converted: dict[str, Any] = {}
    if "StringValue" in value:
        converted["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        converted["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode()
    converted.update(stringListValues=[], binaryListValues=[], dataType=value["DataType"])
    return converted


def choose(stack: Stack, function_id: str | None) -> Function:
    template = stack.template
    if function_id is None:
        with_sqs = [f for f in template.function_ids() if template.function(f).sqs_events]
        if len(with_sqs) != 1:
            found = ", ".join(with_sqs) or "none"
            raise LocalError(f"name the function to run (functions with an SQS event: {found})")
        function_id = with_sqs[0]
    return template.function(function_id)


def queue_of(
    stack: Stack, function: Function, queue_url: str | None, sqs: SQSClient
) -> tuple[str, str, SqsEvent, int]:
    """(queue URL, queue ARN, the event's settings, visibility timeout) from the function's SQS
    event and the local stack, or from --queue-url (then the event's settings, or Lambda's
    defaults)."""
    event = function.sqs_events[0] if function.sqs_events else None
    if queue_url is None:
        if event is None:
            raise LocalError(f"{function.logical_id} has no SQS event: pass --queue-url")
        if not event.queue_arn:
            raise LocalError(
                f"{function.logical_id}'s queue has no local value: set AWS_ENDPOINT_URL "
                "and run `lambdarun local up`, or pass --queue-url"
            )
        records = stack.state.resources.values() if stack.state else []
        urls = [r["QueueUrl"] for r in records if r.get("Arn") == event.queue_arn]
        if urls:
            queue_url = urls[0]
        else:
            *_, account, name = event.queue_arn.split(":")
            queue_url = sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)[
                "QueueUrl"
            ]
    answer = sqs.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["QueueArn", "VisibilityTimeout"]
    )["Attributes"]
    settings = event or SqsEvent("--queue-url", "", 10, 0, False, True, None)
    visibility = int(answer.get("VisibilityTimeout", "30"))
    return queue_url, answer["QueueArn"], settings, visibility


def run(
    stack: Stack,
    function: Function,
    env: dict[str, str],
    *,
    queue_url: str | None,
    emulator: Path | None,
    wait_seconds: int,
    max_batches: int | None,
    until_empty: bool,
    log: TextIO,
) -> int:
    """Poll and deliver until stopped (a signal, --max-batches, --until-empty)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        sqs = cast("SQSClient", aws_client("sqs", endpoint=stack.endpoint))
        url, arn, event, visibility = queue_of(stack, function, queue_url, sqs)
    except (BotoCoreError, ClientError) as exc:
        raise LocalError(f"the queue: {exc}") from exc
    mapping = EventSourceMapping(
        sqs,
        queue_url=url,
        queue_arn=arn,
        region=sqs.meta.region_name,
        event=event,
        wait_seconds=wait_seconds,
        log=log,
    )
    concurrency = (
        f"; Lambda would run up to {event.max_concurrency}" if event.max_concurrency else ""
    )
    print(
        f"lambdarun: {function.logical_id} <- {url} (event {event.name}: batch {event.batch_size}, "
        f"window {event.batching_window} s, "
        f"{'ReportBatchItemFailures' if event.report_failures else 'whole-batch results'}; "
        f"one batch at a time{concurrency})",
        file=log,
        flush=True,
    )
    if visibility < function.timeout:
        print(
            f"lambdarun: note: the queue's visibility timeout ({visibility} s) is shorter than "
            f"the function's timeout ({function.timeout} s); Lambda refuses such a mapping, and "
            "a message can come back while its batch is still being gathered or run",
            file=log,
        )
    if event.filtered:
        print("lambdarun: note: FilterCriteria is not applied locally", file=log)
    if not event.enabled:
        print(f"lambdarun: note: the template disables event {event.name}", file=log)
    with _runner(function, env, stack, emulator, log) as invoke:
        signals = Signals(log)
        previous = {s: signal.signal(s, signals) for s in (signal.SIGINT, signal.SIGTERM)}
        print("lambdarun: polling (Ctrl-C stops)", file=log, flush=True)
        try:
            _poll(mapping, invoke, signals, function.timeout, max_batches, until_empty)
        except Stopping:
            pass
        except (BotoCoreError, ClientError) as exc:
            raise LocalError(f"the queue: {exc}") from exc
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)
    t = mapping.totals
    print(
        f"lambdarun: stopped after {t.batches} batches, {t.messages} messages: "
        f"{t.deleted} deleted, {t.kept} left for redelivery{t.rate()}",
        file=log,
    )
    return 0


def _poll(
    mapping: EventSourceMapping,
    invoke: Invoke,
    signals: Signals,
    timeout: int,
    max_batches: int | None,
    until_empty: bool,
) -> None:
    backoff = Backoff(mapping.log)
    while not signals.requested:
        try:
            messages = mapping.receive_batch(signals)
            if not messages and until_empty and mapping.drained():
                return
        except Exception as exc:
            if not transient(exc):
                raise
            delay = backoff.failed(exc)
            with signals.interruptible():
                time.sleep(delay)
            continue
        backoff.recovered()
        if not messages:
            continue
        started = time.monotonic()
        if mapping.totals.first is None:
            mapping.totals.first = started
        response, error = invoke(mapping.event_of(messages))
        if error is None and time.monotonic() - started > timeout:
            # Lambda would have stopped the function; nothing it did counts.
            error = f"Task timed out after {timeout} seconds"
        mapping.settle(messages, response, error)
        mapping.totals.last = time.monotonic()
        if max_batches is not None and mapping.totals.batches >= max_batches:
            return


@contextlib.contextmanager
def _runner(
    function: Function, env: dict[str, str], stack: Stack, emulator: Path | None, log: TextIO
) -> Iterator[Invoke]:
    """Invocations through the emulator (a persistent execution environment) or in process."""
    if emulator is not None:
        with Emulator(emulator, function, env, log) as rie:

            def through_emulator(event: dict[str, Any]) -> tuple[Any, str | None]:
                result = rie.invoke(json.dumps(event).encode())
                try:
                    return json.loads(result.payload), result.error
                except ValueError:
                    return None, result.error or "the response is not JSON"

            yield through_emulator
        return
    runner = InProcess(function, env, stack, log)
    try:
        runner.start()  # init once, as an execution environment does; its errors stop the worker
    except Exception as exc:
        raise InitFailed(f"{function.logical_id} failed to initialise: {exc!r}") from exc
    try:
        yield runner.invoke
    finally:
        runner.stop()


def command(args: Any) -> int:
    """`lambdarun local start-worker`."""
    import os
    import sys

    from lambdarun_cli.local_emulator import find_emulator
    from lambdarun_cli.local_invoke import (
        describe,
        function_environment,
        read_env_vars,
        stack_from_args,
    )
    from lambdarun_cli.local_template import TemplateError

    log = sys.stderr
    try:
        env_vars = read_env_vars(Path(args.env_vars) if args.env_vars else None)
        stack = stack_from_args(args, log)
        function = choose(stack, args.function)
        describe(function, stack, log)
        emulator = None
        if args.emulator:
            emulator, why = find_emulator()
            if emulator is None:
                print(f"lambdarun: running the handler in this process ({why})", file=log)
        env = function_environment(function, stack, env_vars, os.environ)
        return run(
            stack,
            function,
            env,
            queue_url=args.queue_url,
            emulator=emulator,
            wait_seconds=args.wait_time_seconds,
            max_batches=args.max_batches,
            until_empty=args.until_empty,
            log=log,
        )
    except (LocalError, TemplateError) as exc:
        print(f"lambdarun local start-worker: {exc}", file=log)
        return 1 if isinstance(exc, InitFailed) else 2
