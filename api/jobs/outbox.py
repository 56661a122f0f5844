"""The sending side of the transactional outbox (docs/jobs.md).

A job is written in the same atomic write as whatever asked for it, with `due_at` set: that row
is the outbox entry. Nothing is lost between that commit and the queue:

- the request sends the message at once and moves `due_at` on by `resend_after` (the fast path;
  if the send fails the request still succeeds, the job is safe in the store);
- `sweep` sends the message of every job whose `due_at` has passed: never sent (the process
  died, the queue refused), sent but never started (an in-process queue died with its process,
  a message was dead-lettered before it ran), or running on a lease that ran out (its worker
  died). A claim moves `due_at` to the lease's end, a finish clears it.

A message may therefore be sent twice (a send whose mark was lost, two sweepers at once); the
runner acknowledges a duplicate of a finished job and never runs a job twice at once, so every
send is safe to repeat.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from adapters.errors import Unavailable
from adapters.ports import Queue, Store
from adapters.records import JobMessage, JobRecord
from api.jobs.observe import JobTracing, NoTracing, stamped

logger = logging.getLogger(__name__)

# Sends in flight at once during a sweep: enough to clear a backlog of hundreds within one
# Lambda invocation, few enough not to flood a queue that is just coming back.
SWEEP_CONCURRENCY = 16


@dataclass(frozen=True, slots=True)
class SweepReport:
    """What one sweep did: jobs it found due, messages sent, sends the queue refused."""

    due: int
    sent: int
    failed: int

    def as_dict(self) -> dict[str, int]:
        return {"due": self.due, "sent": self.sent, "failed": self.failed}


def message_of(job: JobRecord, attributes: Mapping[str, str] | None = None) -> JobMessage:
    return JobMessage(
        job_id=job.id, task=job.task, payload=job.payload, attributes=dict(attributes or {})
    )


class Outbox:
    def __init__(
        self,
        *,
        store: Store,
        queue: Queue,
        grace: timedelta,
        resend_after: timedelta,
        batch: int = 500,
        tracing: JobTracing | None = None,
    ) -> None:
        self.store = store
        self.queue = queue
        self.grace = grace
        self.resend_after = resend_after
        self.batch = batch
        self.tracing: JobTracing = tracing or NoTracing()

    async def _send(self, message: JobMessage) -> None:
        """One send, in a span of its own when tracing is on; the message carries the trace
        context (the request's, or the sweep's for a re-send) and its send time."""
        with self.tracing.sending(message) as traced:
            await self.queue.send(stamped(traced))

    def first_due(self, now: datetime) -> datetime:
        """The due time a new job is written with: its request has `grace` to send it."""
        return now + self.grace

    async def send(
        self, job: JobRecord, *, now: datetime, attributes: Mapping[str, str] | None = None
    ) -> bool:
        """The request's fast path, right after the commit: send the message, then mark it sent.
        Any failure is logged and left to the sweeper: the job is already safe in the store, so
        the request's answer stands. False when the message may not have gone."""
        if job.due_at is None:
            raise ValueError(f"job {job.id} has no due time: it was not written as an outbox entry")
        try:
            await self._send(message_of(job, attributes))
        except Exception as exc:  # the sweeper sends it; nothing the client must hear about
            logger.warning("job %s: not sent now (%s); the sweeper will send it", job.id, exc)
            return False
        try:
            await self.store.reschedule(job.id, expected=job.due_at, due_at=now + self.resend_after)
        except Exception as exc:
            # Sent but not marked: the sweeper sends it once more and the runner drops the copy.
            logger.warning("job %s: sent, but not marked sent (%s)", job.id, exc)
        return True

    async def sweep(self, *, now: datetime) -> SweepReport:
        """Send the message of up to `batch` due jobs, earliest first. Stops sending once the
        queue refuses one: the rest stay due for the next run."""
        jobs = await self.store.due_jobs(now=now, limit=self.batch)
        if not jobs:
            return SweepReport(due=0, sent=0, failed=0)
        gate = asyncio.Semaphore(SWEEP_CONCURRENCY)
        refused: list[Unavailable] = []

        async def one(job: JobRecord) -> bool:
            async with gate:
                if refused:
                    return False
                try:
                    await self._send(message_of(job))
                except Unavailable as exc:
                    refused.append(exc)
                    return False
            assert job.due_at is not None  # noqa: S101 - due_jobs returns due jobs only
            # A claim or another sweeper may have moved it on since: then this mark is moot.
            await self.store.reschedule(job.id, expected=job.due_at, due_at=now + self.resend_after)
            return True

        sent = sum(await asyncio.gather(*(one(job) for job in jobs)))
        if refused:
            logger.warning(
                "sweep: the queue refused a send (%s); %d of %d due jobs wait for the next run",
                refused[0],
                len(jobs) - sent,
                len(jobs),
            )
        report = SweepReport(due=len(jobs), sent=sent, failed=len(refused))
        logger.info("sweep: %s", report.as_dict())
        return report
