"""The job runner every worker calls (in-process, SQS, Pub/Sub): claim, run, record."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from pydantic import ValidationError

from adapters.errors import Unavailable
from adapters.ports import Cache, Disposition, Store
from adapters.records import JobMessage, JobStatus
from api.jobs.observe import Outcome
from api.tasks.registry import TaskContext, TaskRegistry

logger = logging.getLogger(__name__)
T = TypeVar("T")


def utcnow() -> datetime:
    return datetime.now(UTC)


class JobRunner:
    def __init__(
        self,
        *,
        store: Store,
        cache: Cache,
        registry: TaskRegistry,
        lease: timedelta,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.cache = cache
        self.registry = registry
        self.lease = lease
        self.clock = clock

    async def handle(self, message: JobMessage) -> Disposition:
        """Run the job a message names, at most once to success. ACK means nothing is left to do;
        RETRY means the queue should deliver the message again (and dead-letter it in the end)."""
        return (await self.run(message)).disposition

    async def run(self, message: JobMessage) -> Outcome:
        """As `handle`, saying how the delivery ended (for spans and metrics)."""
        try:
            return await self._handle(message)
        except Unavailable as exc:
            logger.warning("job %s: %s; will retry", message.job_id, exc)
            return Outcome.RETRY

    async def _handle(self, message: JobMessage) -> Outcome:
        now = self.clock()
        job = await self.store.claim_job(message.job_id, now=now, lease_until=now + self.lease)
        if job is None:
            return await self._not_claimed(message.job_id)
        task = self.registry.get(job.task)
        if task is None:
            # Likely a deploy in progress: a newer API sent a task this worker lacks.
            return await self._fail(job.id, job.attempts, f"unknown task {job.task!r}")
        try:
            payload = task.payload_model.model_validate(job.payload)
        except ValidationError as exc:
            return await self._fail(job.id, job.attempts, f"payload no longer valid: {exc}")
        context = TaskContext(
            store=self.store, cache=self.cache, job_id=job.id, attempt=job.attempts, now=now
        )
        try:
            result = await self._leased(job.id, job.attempts, task.run(payload, context))
        except Exception as exc:
            logger.exception("job %s (%s) attempt %d failed", job.id, job.task, job.attempts)
            return await self._fail(job.id, job.attempts, f"{type(exc).__name__}: {exc}")
        done = await self.store.finish_job(
            job.id, attempt=job.attempts, status=JobStatus.SUCCEEDED, at=self.clock(), result=result
        )
        if done is None:
            logger.warning("job %s: lease lost before it finished; another attempt owns it", job.id)
        return Outcome.DONE

    async def _leased(self, job_id: str, attempt: int, work: Awaitable[T]) -> T:
        """Await `work` while renewing the claim's lease every third of it, so a long task keeps
        its job and a dead worker's job is free again within one lease."""
        keeper = asyncio.create_task(self._keep_lease(job_id, attempt), name=f"lease-{job_id}")
        try:
            return await work
        finally:
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)

    async def _keep_lease(self, job_id: str, attempt: int) -> None:
        every = self.lease.total_seconds() / 3
        while True:
            await asyncio.sleep(every)
            try:
                held = await self.store.renew_lease(
                    job_id, attempt=attempt, lease_until=self.clock() + self.lease
                )
            except Unavailable as exc:  # two more tries before the lease runs out
                logger.warning("job %s: lease not renewed: %s", job_id, exc)
                continue
            if not held:
                logger.warning("job %s: lease lost while running; another attempt may run", job_id)
                return

    async def _not_claimed(self, job_id: str) -> Outcome:
        current = await self.store.get_job(job_id)
        if current is None:
            # Never written here (a message from elsewhere), or deleted since: nothing to run.
            logger.warning("job %s: no such job; message dropped", job_id)
            return Outcome.SKIPPED
        if current.status is JobStatus.SUCCEEDED:
            logger.info("job %s: duplicate delivery of a finished job; acknowledged", job_id)
            return Outcome.SKIPPED
        # Running under another worker's lease: ask for redelivery in case that worker dies.
        return Outcome.RETRY

    async def _fail(self, job_id: str, attempt: int, error: str) -> Outcome:
        await self.store.finish_job(
            job_id, attempt=attempt, status=JobStatus.FAILED, at=self.clock(), error=error[:2000]
        )
        return Outcome.FAILED
