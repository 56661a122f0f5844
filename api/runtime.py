"""Everything one process needs, built once from settings: adapters, task registry, job runner.
HTTP (FastAPI lifespan) and the queue workers share it; it imports no web framework."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from adapters.bootstrap import AdapterOptions, Adapters, build_adapters
from adapters.ports import LocalConsumer
from api.caching import FailOpenCache
from api.jobs.runner import JobRunner
from api.settings import Settings
from api.tasks.registry import TaskRegistry

logger = logging.getLogger(__name__)

# Failing these makes the service unready; the cache and rate limiter fail open instead.
ESSENTIAL = frozenset({"store", "queue"})


@dataclass(slots=True)
class Runtime:
    settings: Settings
    adapters: Adapters
    registry: TaskRegistry
    runner: JobRunner

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
        return cls(settings=settings, adapters=adapters, registry=registry, runner=runner)

    async def start(self) -> None:
        await self.adapters.open()
        if isinstance(self.adapters.queue, LocalConsumer):
            self.adapters.queue.start_consuming(self.runner.handle)

    async def stop(self) -> None:
        await self.adapters.close()

    async def readiness(self) -> tuple[bool, dict[str, str]]:
        """(ready, state per adapter). Only the store and the queue can make the service unready."""
        checks = await self.adapters.check(self.settings.readiness_timeout)
        ready = all(state == "ok" for name, state in checks.items() if name in ESSENTIAL)
        return ready, checks
