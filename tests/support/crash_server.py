"""The API server (uvicorn, the app as `create_app` builds it from the environment) that kills
itself with SIGKILL at one point of the outbox, for the crash tests:

    CRASH_POINT=before-send|after-send|after-mark CRASH_AT=K python -m tests.support.crash_server

The K-th message the outbox sends dies before it reaches the queue, right after it did, or
right after the job was marked sent. Nothing of the app is changed: only the queue and the
store the outbox holds are wrapped, here, in the test's own process.
"""

from __future__ import annotations

import os
import signal
from datetime import datetime
from typing import Any

import uvicorn

from adapters.ports import Queue, Store
from adapters.records import JobMessage
from api.app import create_app
from api.runtime import Runtime

POINTS = ("before-send", "after-send", "after-mark")


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class Trigger:
    def __init__(self, point: str, at: int) -> None:
        if point not in POINTS:
            raise SystemExit(f"CRASH_POINT must be one of {', '.join(POINTS)}")
        self.point, self.at, self.sends = point, at, 0

    def armed(self, point: str) -> bool:
        return self.point == point and self.sends == self.at


class DyingQueue:
    def __init__(self, inner: Queue, trigger: Trigger) -> None:
        self.inner, self.trigger = inner, trigger

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def send(self, message: JobMessage) -> None:
        self.trigger.sends += 1
        if self.trigger.armed("before-send"):
            die()
        await self.inner.send(message)
        if self.trigger.armed("after-send"):
            die()


class DyingStore:
    def __init__(self, inner: Store, trigger: Trigger) -> None:
        self.inner, self.trigger = inner, trigger

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def reschedule(self, job_id: str, *, expected: datetime, due_at: datetime) -> bool:
        done = await self.inner.reschedule(job_id, expected=expected, due_at=due_at)
        if self.trigger.armed("after-mark"):
            die()
        return done


def main() -> None:
    app = create_app()
    runtime: Runtime = app.state.runtime
    trigger = Trigger(os.environ["CRASH_POINT"], int(os.environ["CRASH_AT"]))
    runtime.outbox.queue = DyingQueue(runtime.outbox.queue, trigger)  # type: ignore[assignment]
    runtime.outbox.store = DyingStore(runtime.outbox.store, trigger)  # type: ignore[assignment]
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ["PORT"]), log_level="warning")


if __name__ == "__main__":
    main()
