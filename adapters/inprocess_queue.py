"""In-process queue: jobs run in the background of the same process (local development)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from adapters.ports import Disposition, MessageHandler
from adapters.records import JobMessage

logger = logging.getLogger(__name__)


class InProcessQueue:
    """Delivers each message to the handler, retrying with backoff like a real queue would, and
    keeps the messages that ran out of attempts in `dead_letters`. Its messages live in this
    process only: the outbox's sweeper sends them again after a restart (docs/jobs.md).

    A job already waiting here is not queued a second time: the sweeper re-sends a job that has
    waited long, and under a backlog that would only lengthen the line."""

    def __init__(
        self, *, max_attempts: int = 3, workers: int = 4, retry_delay: float = 0.5
    ) -> None:
        self.max_attempts = max_attempts
        self.retry_delay = retry_delay
        self.dead_letters: list[JobMessage] = []
        self._workers = workers
        self._pending: asyncio.Queue[tuple[JobMessage, int]] | None = None
        self._waiting: set[str] = set()  # job ids in `_pending`
        self._tasks: list[asyncio.Task[None]] = []
        self._timers: set[asyncio.TimerHandle] = set()

    @property
    def _queue(self) -> asyncio.Queue[tuple[JobMessage, int]]:
        # Made on first use so it binds to the loop that runs the app.
        if self._pending is None:
            self._pending = asyncio.Queue()
        return self._pending

    async def open(self) -> None:
        return None

    async def ping(self) -> None:
        return None

    async def send(self, message: JobMessage) -> None:
        self._put(message, 1)

    def _put(self, message: JobMessage, attempt: int) -> None:
        if message.job_id in self._waiting:
            return
        self._waiting.add(message.job_id)
        self._queue.put_nowait((message, attempt))

    def start_consuming(self, handler: MessageHandler) -> None:
        if self._tasks:
            return
        self._tasks = [
            asyncio.create_task(self._work(handler), name=f"inprocess-queue-{i}")
            for i in range(self._workers)
        ]

    async def join(self) -> None:
        """Wait until every message sent so far has been handled (tests and shutdown use it)."""
        while True:
            await self._queue.join()
            if not self._timers:
                return
            await asyncio.sleep(self.retry_delay / 2)

    async def close(self, *, drain_timeout: float = 5.0) -> None:
        if self._tasks:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.join(), drain_timeout)
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _work(self, handler: MessageHandler) -> None:
        queue = self._queue
        while True:
            message, attempt = await queue.get()
            self._waiting.discard(message.job_id)
            try:
                disposition = await handler(message)
            except Exception:
                logger.exception("job %s: handler raised", message.job_id)
                disposition = Disposition.RETRY
            finally:
                queue.task_done()
            if disposition is Disposition.RETRY:
                self._retry(message, attempt)

    def _retry(self, message: JobMessage, attempt: int) -> None:
        if attempt >= self.max_attempts:
            logger.error("job %s: dead-lettered after %d attempts", message.job_id, attempt)
            self.dead_letters.append(message)
            return
        delay = self.retry_delay * 2 ** (attempt - 1)

        def requeue() -> None:
            self._timers.discard(timer)
            self._put(message, attempt + 1)

        timer = asyncio.get_running_loop().call_later(delay, requeue)
        self._timers.add(timer)
