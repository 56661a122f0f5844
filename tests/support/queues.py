"""A queue for tests that keeps what it is sent, and refuses once told to."""

from __future__ import annotations

from adapters.errors import Unavailable
from adapters.records import JobMessage


class RecordingQueue:
    """Keeps every message in `sent`; after `refuse_after` of them, refuses as a queue that is
    down does (`Unavailable`)."""

    def __init__(self, *, refuse_after: int | None = None) -> None:
        self.sent: list[JobMessage] = []
        self.refuse_after = refuse_after

    async def open(self) -> None: ...
    async def ping(self) -> None: ...
    async def close(self) -> None: ...

    async def send(self, message: JobMessage) -> None:
        if self.refuse_after is not None and len(self.sent) >= self.refuse_after:
            raise Unavailable("queue", "connection refused")
        self.sent.append(message)
