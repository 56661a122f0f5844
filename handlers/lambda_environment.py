"""One event loop and one set of open connections per Lambda execution environment.

Mangum alone runs the app's startup and shutdown around every invocation
(https://github.com/Kludex/mangum/issues/342), which reconnects on every request. Here the
lifespan is entered once at init, its loop is kept as the thread's event loop (Mangum and
Powertools' batch processor both run on `asyncio.get_event_loop()`), and it is left only on
SIGTERM or before a SnapStart snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from types import FrameType
from typing import TypeVar

T = TypeVar("T")
logger = logging.getLogger(__name__)


class ExecutionEnvironment:
    def __init__(self, resources: Callable[[], AbstractAsyncContextManager[object]]) -> None:
        self._resources = resources
        self._stack: AsyncExitStack | None = None
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.starts = 0  # how many times the resources were entered (tests read it)

    def start(self) -> None:
        if self._stack is not None:
            return
        stack = AsyncExitStack()
        self.loop.run_until_complete(stack.enter_async_context(self._resources()))
        self._stack = stack
        self.starts += 1

    def stop(self) -> None:
        if self._stack is None:
            return
        stack, self._stack = self._stack, None
        self.loop.run_until_complete(stack.aclose())

    def run(self, awaitable: Awaitable[T]) -> T:
        return self.loop.run_until_complete(awaitable)

    def install_shutdown_hooks(self) -> None:
        """Close connections on SIGTERM (sent when an extension is registered) and around
        SnapStart snapshots, where connections made before the snapshot would be stale."""

        def on_sigterm(signum: int, frame: FrameType | None) -> None:
            with contextlib.suppress(Exception):
                self.stop()
            sys.exit(0)

        signal.signal(signal.SIGTERM, on_sigterm)
        if os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") == "snap-start":
            from snapshot_restore_py import register_after_restore, register_before_snapshot

            register_before_snapshot(self.stop)
            register_after_restore(self.start)
