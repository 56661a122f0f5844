"""The registry's schedules run in this process: what EventBridge Scheduler and Cloud Scheduler
do in the cloud, for `make dev` and any process that works its own in-process queue.

The sweeper runs at start-up and every `sweep_every` seconds: the in-process queue's messages
die with its process, so a restarted `make dev` finishes what a killed one accepted (its jobs
are in the store) within one sweep. Every other schedule runs at its own times, a rate counted
from start-up. A run that fails is logged and the schedule goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from adapters.errors import Unavailable
from api.tasks.registry import SWEEP, Schedule

logger = logging.getLogger(__name__)

Run = Callable[[str], Awaitable[object]]


class LocalScheduler:
    def __init__(
        self,
        schedules: list[Schedule],
        run: Run,
        *,
        sweep_every: float,
        clock: Callable[[], datetime],
    ) -> None:
        self._schedules = schedules
        self._run = run
        self._sweep_every = sweep_every
        self._clock = clock
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        if self._tasks:
            return
        self._tasks = [
            asyncio.create_task(self._loop(schedule), name=f"schedule-{schedule.name}")
            for schedule in self._schedules
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _loop(self, schedule: Schedule) -> None:
        sweeper = schedule.name == SWEEP
        if sweeper:
            await self._once(schedule.name)
        while True:
            if sweeper:
                delay = self._sweep_every
            else:
                now = self._clock()
                delay = (schedule.expression.next_after(now) - now).total_seconds()
            await asyncio.sleep(max(delay, 0))
            await self._once(schedule.name)

    async def _once(self, name: str) -> None:
        try:
            await self._run(name)
        except Unavailable as exc:  # an outage, said once a run, without a traceback
            logger.warning("scheduled task %s: %s; it runs again at its next time", name, exc)
        except Exception:
            logger.exception("scheduled task %s failed; it runs again at its next time", name)
