"""What the job path tells observers: a span around each send and each run, and one record per
run (task, outcome, duration, queue lag). Ports only; nothing here imports OpenTelemetry or a
cloud SDK. `TELEMETRY=otel` plugs in api/telemetry.py, the Lambda worker adds EMF metrics
(handlers/lambda_observability.py); with neither, the no-op below costs a function call."""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, replace
from typing import Protocol

from adapters.ports import Disposition
from adapters.records import JobMessage

# A message attribute every send sets: the wall clock (epoch milliseconds) when it was sent,
# so every worker measures queue lag the same way, whichever queue carried it.
SENT_AT = "sent_at"


class Outcome(enum.StrEnum):
    """How one delivery of a job message ended (a metric dimension, a span attribute)."""

    DONE = "done"  # the task ran and succeeded
    FAILED = "failed"  # the task ran and failed (or cannot run): the queue retries it
    RETRY = "retry"  # not run now: another worker holds it, or a dependency is down
    SKIPPED = "skipped"  # nothing to do: a duplicate of a finished job, or no such job

    @property
    def disposition(self) -> Disposition:
        return Disposition.ACK if self in {Outcome.DONE, Outcome.SKIPPED} else Disposition.RETRY


@dataclass(frozen=True, slots=True)
class JobRun:
    """One delivery, as metrics see it."""

    task: str
    outcome: Outcome
    seconds: float
    lag: float | None  # seconds from the send to the start; None if the sender set no time


class JobMetrics(Protocol):
    def record(self, run: JobRun) -> None: ...


class JobTracing(Protocol):
    def sending(self, message: JobMessage) -> AbstractContextManager[JobMessage]:
        """Around one send: yields the message to send, carrying the trace context."""
        ...

    def running(self, message: JobMessage) -> AbstractContextManager[Callable[[Outcome], None]]:
        """Around one run: yields a function that is told the outcome."""
        ...

    def scheduled(self, name: str) -> AbstractContextManager[None]:
        """Around one run of a scheduled task (the sweeper's re-sends become its children)."""
        ...


class NoTracing:
    @contextmanager
    def sending(self, message: JobMessage) -> Iterator[JobMessage]:
        yield message

    @contextmanager
    def running(self, message: JobMessage) -> Iterator[Callable[[Outcome], None]]:
        yield _ignore

    @contextmanager
    def scheduled(self, name: str) -> Iterator[None]:
        yield


def _ignore(outcome: Outcome) -> None:
    return None


def stamped(message: JobMessage, *, now: float | None = None) -> JobMessage:
    """The message with its send time, for the worker's queue lag."""
    sent = time.time() if now is None else now
    return replace(message, attributes={**message.attributes, SENT_AT: str(int(sent * 1000))})


def lag_of(message: JobMessage, *, now: float | None = None) -> float | None:
    """Seconds since the message was sent (never negative: clocks differ a little); None when
    the sender did not say."""
    raw = message.attributes.get(SENT_AT, "")
    if not raw.isdigit():
        return None
    return max(0.0, (time.time() if now is None else now) - int(raw) / 1000)
