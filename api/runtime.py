"""Everything one process needs, built once from settings: adapters, task registry, job runner,
outbox. HTTP (FastAPI lifespan) and the queue workers share it; it imports no web framework."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from adapters.bootstrap import AdapterOptions, Adapters, build_adapters
from adapters.errors import Unavailable
from adapters.ports import Disposition, LocalConsumer
from adapters.records import JobMessage, ScheduleTick
from api.caching import FailOpenCache
from api.jobs.local_scheduler import LocalScheduler
from api.jobs.observe import JobMetrics, JobRun, JobTracing, NoTracing, lag_of
from api.jobs.outbox import Outbox
from api.jobs.runner import JobRunner, utcnow
from api.settings import Settings
from api.tasks.registry import ScheduleContext, TaskRegistry, TaskResult

logger = logging.getLogger(__name__)

# Failing these makes the service unready; the cache and rate limiter fail open instead.
ESSENTIAL = frozenset({"store", "queue"})


class UnknownSchedule(LookupError):
    """A scheduler asked for a scheduled task this build does not have."""


@dataclass(slots=True)
class Runtime:
    settings: Settings
    adapters: Adapters
    registry: TaskRegistry
    runner: JobRunner
    outbox: Outbox
    tracing: JobTracing = field(default_factory=NoTracing)
    # Every run is recorded to each: OTel metrics (TELEMETRY=otel), EMF (the Lambda worker).
    job_metrics: list[JobMetrics] = field(default_factory=list)
    local_scheduler: LocalScheduler | None = field(default=None, init=False)

    @classmethod
    def build(cls, settings: Settings, registry: TaskRegistry | None = None) -> Runtime:
        if registry is None:
            from api.tasks import tasks

            registry = tasks
        options = AdapterOptions(
            job_max_attempts=settings.job_max_attempts,
            db_pool_max=settings.db_pool_max,
            io_timeout=settings.io_timeout,
        )
        # With no RATE_LIMIT the limiter is never asked: don't open a Redis pool for it.
        rate_limit_url = settings.rate_limit_url if settings.rate_limit else "memory://"
        assert rate_limit_url is not None  # noqa: S101 - filled in by the settings
        adapters = build_adapters(
            database_url=settings.database_url,
            queue_url=settings.queue_url,
            cache_url=settings.cache_url,
            rate_limit_url=rate_limit_url,
            options=options,
        )
        adapters.cache = FailOpenCache(adapters.cache)
        runner = JobRunner(
            store=adapters.store,
            cache=adapters.cache,
            registry=registry,
            lease=timedelta(seconds=settings.job_lease_seconds),
        )
        tracing: JobTracing = NoTracing()
        job_metrics: list[JobMetrics] = []
        if settings.telemetry == "otel":
            # The OpenTelemetry SDK is imported only here: off, it costs nothing.
            from api import telemetry

            telemetry.install_providers()
            tracing = telemetry.JobSpans()
            job_metrics.append(telemetry.JobMeters())
        grace, resend = settings.outbox_times
        outbox = Outbox(
            store=adapters.store,
            queue=adapters.queue,
            grace=timedelta(seconds=grace),
            resend_after=timedelta(seconds=resend),
            batch=settings.sweep_batch,
            tracing=tracing,
        )
        return cls(
            settings=settings,
            adapters=adapters,
            registry=registry,
            runner=runner,
            outbox=outbox,
            tracing=tracing,
            job_metrics=job_metrics,
        )

    async def start(self) -> None:
        await self.adapters.open()
        if isinstance(self.adapters.queue, LocalConsumer):
            # This process is its own worker, so it is its own scheduler too.
            self.adapters.queue.start_consuming(self.run_job)
            self.local_scheduler = LocalScheduler(
                self.registry.schedules(),
                self.run_schedule,
                sweep_every=self.settings.local_sweep_seconds,
                clock=utcnow,
            )
            self.local_scheduler.start()

    async def stop(self) -> None:
        if self.local_scheduler is not None:
            await self.local_scheduler.stop()
            self.local_scheduler = None
        await self.adapters.close()

    async def run_schedule(self, name: str, *, scheduled_for: datetime | None = None) -> TaskResult:
        """Run the scheduled task `name` once, now; `UnknownSchedule` if there is none."""
        schedule = self.registry.scheduled(name)
        if schedule is None:
            raise UnknownSchedule(name)
        now = utcnow()
        context = ScheduleContext(
            store=self.adapters.store,
            cache=self.adapters.cache,
            outbox=self.outbox,
            now=now,
            scheduled_for=scheduled_for or now,
        )
        with self.tracing.scheduled(name):
            return await schedule.run(context)

    async def deliver(self, item: JobMessage | ScheduleTick) -> Disposition:
        """What every worker does with what its queue or scheduler hands it: run the job, or
        the scheduled task, and say whether the delivery is done. An unknown schedule raises
        `UnknownSchedule`: no redelivery can fix it."""
        if isinstance(item, JobMessage):
            return await self.run_job(item)
        try:
            result = await self.run_schedule(item.schedule, scheduled_for=item.scheduled_time)
        except Unavailable as exc:
            logger.warning("scheduled task %s: %s; will retry", item.schedule, exc)
            return Disposition.RETRY
        logger.info("scheduled task %s: %s", item.schedule, result)
        return Disposition.ACK

    async def run_job(self, message: JobMessage) -> Disposition:
        """Run one job message in its span (a child of the sender's), and record the run."""
        lag = lag_of(message)
        started = time.perf_counter()
        with self.tracing.running(message) as ended:
            outcome = await self.runner.run(message)
            ended(outcome)
            seconds = time.perf_counter() - started
            # Inside the span: on a traced run the line carries the job's trace and span ids.
            logger.info(
                "job %s (%s): %s in %.0f ms", message.job_id, message.task, outcome, seconds * 1000
            )
        if self.job_metrics:
            run = JobRun(message.task, outcome, seconds, lag)
            for metrics in self.job_metrics:
                metrics.record(run)
        return outcome.disposition

    async def readiness(self) -> tuple[bool, dict[str, str]]:
        """(ready, state per adapter). Only the store and the queue can make the service unready."""
        checks = await self.adapters.check(self.settings.readiness_timeout)
        ready = all(state == "ok" for name, state in checks.items() if name in ESSENTIAL)
        return ready, checks
