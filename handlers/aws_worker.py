"""AWS Lambda worker: SQS batches and EventBridge Scheduler ticks.

An SQS record is one job message for the shared job runner. Records run concurrently; failures
are reported one by one (`batchItemFailures`) so SQS redelivers only those, and dead-letters
them after the queue's maxReceiveCount. A schedule event (template.yaml's ScheduleV2 events,
`{"schedule": NAME, "version": 1, "time": ...}`) runs that scheduled task, the outbox's sweeper
among them; a failure raises, so Lambda's asynchronous retries run it again."""

from __future__ import annotations

import gc

gc.disable()  # see handlers/aws_http.py

from collections.abc import AsyncIterator  # noqa: E402
from contextlib import asynccontextmanager  # noqa: E402
from typing import Any  # noqa: E402

from aws_lambda_powertools import Logger, Metrics  # noqa: E402
from aws_lambda_powertools.metrics import MetricUnit  # noqa: E402
from aws_lambda_powertools.utilities.batch import (  # noqa: E402
    AsyncBatchProcessor,
    EventType,
    async_process_partial_response,
)
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse  # noqa: E402
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord  # noqa: E402
from aws_lambda_powertools.utilities.typing import LambdaContext  # noqa: E402

from adapters.messages import PoisonMessage, decode_body, decode_object  # noqa: E402
from adapters.ports import Disposition  # noqa: E402
from adapters.records import ScheduleTick  # noqa: E402
from api.runtime import Runtime  # noqa: E402
from api.settings import load_settings  # noqa: E402
from handlers.lambda_environment import ExecutionEnvironment  # noqa: E402
from handlers.lambda_observability import (  # noqa: E402
    EmfMetrics,
    flush_telemetry,
    make_logger,
    make_metrics,
)
from handlers.lambda_secrets import resolve_secrets  # noqa: E402


class JobNotDone(Exception):
    """The job asked to be delivered again (it failed, or another worker holds it)."""


class UnsupportedEvent(TypeError):
    """The function was invoked with neither an SQS batch nor a schedule tick."""


logger: Logger = make_logger()
metrics: Metrics = make_metrics()
resolve_secrets()  # see handlers/aws_http.py
runtime = Runtime.build(load_settings())
runtime.job_metrics.append(EmfMetrics(metrics))


@asynccontextmanager
async def running() -> AsyncIterator[Runtime]:
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


environment = ExecutionEnvironment(running)
environment.start()
environment.install_shutdown_hooks()
# Every record is reported on its own, even when all of them fail: the redelivery and
# dead-lettering of each is then the queue's business, not a function error.
processor = AsyncBatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)

gc.freeze()
gc.enable()


async def run_record(record: SQSRecord) -> None:
    attributes = {
        name: value.string_value
        for name, value in record.message_attributes.items()
        if value.string_value is not None
    }
    try:
        message = decode_body(record.body, attributes)
        if isinstance(message, ScheduleTick):
            raise PoisonMessage("a schedule tick belongs to the function's schedule, not its queue")
    except PoisonMessage:
        # Reported as a failure like any other: SQS retries it, then dead-letters it.
        metrics.add_metric(name="PoisonMessages", unit=MetricUnit.Count, value=1)
        raise
    disposition = await runtime.deliver(message)
    metrics.add_metric(name=f"Jobs{disposition.value.title()}", unit=MetricUnit.Count, value=1)
    if disposition is Disposition.RETRY:
        raise JobNotDone(message.job_id)


def run_schedule(event: dict[str, Any]) -> dict[str, Any]:
    try:
        tick = decode_object(event)
    except PoisonMessage as exc:
        raise UnsupportedEvent(f"not a schedule event: {exc}") from exc
    if not isinstance(tick, ScheduleTick):
        raise UnsupportedEvent("a job message belongs on the queue, not in an invocation")
    if environment.run(runtime.deliver(tick)) is Disposition.RETRY:
        raise JobNotDone(f"scheduled task {tick.schedule} could not run; Lambda retries it")
    metrics.add_metric(name="ScheduledRuns", unit=MetricUnit.Count, value=1)
    return {"schedule": tick.schedule, "done": True}


@metrics.log_metrics
@logger.inject_lambda_context
def handler(
    event: dict[str, Any], context: LambdaContext
) -> PartialItemFailureResponse | dict[str, Any]:
    try:
        return dispatch(event, context)
    finally:
        flush_telemetry()


def dispatch(
    event: dict[str, Any], context: LambdaContext
) -> PartialItemFailureResponse | dict[str, Any]:
    if isinstance(event, dict) and "schedule" in event:
        metrics.add_metric(name="ScheduleTicks", unit=MetricUnit.Count, value=1)
        return run_schedule(event)
    if not isinstance(event, dict) or not isinstance(event.get("Records"), list):
        metrics.add_metric(name="UnsupportedEvents", unit=MetricUnit.Count, value=1)
        keys = ", ".join(sorted(event)[:10]) if isinstance(event, dict) else type(event).__name__
        raise UnsupportedEvent(f"expected an SQS batch or a schedule event; got keys: {keys}")
    metrics.add_metric(name="Records", unit=MetricUnit.Count, value=len(event["Records"]))
    return async_process_partial_response(
        event=event, record_handler=run_record, processor=processor, context=context
    )
