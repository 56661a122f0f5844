"""The queue and the store as a dying process sees them: it dies at one point of the outbox's
send of its K-th message (before the send, right after it, right after marking it sent).

How it dies is the caller's: SIGKILL in a real server (tests/support/crash_server.py), an
exception that unwinds everything in one process (tests/contract/test_outbox_recovery.py)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from adapters.ports import Queue, Store
from adapters.records import JobMessage

POINTS = ("before-send", "after-send", "after-mark")


class Trigger:
    """Dies at `point` of the `at`-th send (counting from 1)."""

    def __init__(self, point: str, at: int, die: Callable[[], None]) -> None:
        if point not in POINTS:
            raise ValueError(f"the point must be one of {', '.join(POINTS)}, not {point!r}")
        self.point, self.at, self.die, self.sends = point, at, die, 0

    def reached(self, point: str) -> None:
        if self.point == point and self.sends == self.at:
            self.die()


class DyingQueue:
    def __init__(self, inner: Queue, trigger: Trigger) -> None:
        self.inner, self.trigger = inner, trigger

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def send(self, message: JobMessage) -> None:
        self.trigger.sends += 1
        self.trigger.reached("before-send")
        await self.inner.send(message)
        self.trigger.reached("after-send")


class DyingStore:
    def __init__(self, inner: Store, trigger: Trigger) -> None:
        self.inner, self.trigger = inner, trigger

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def reschedule(self, job_id: str, *, expected: datetime, due_at: datetime) -> bool:
        done = await self.inner.reschedule(job_id, expected=expected, due_at=due_at)
        self.trigger.reached("after-mark")
        return done
