"""The API server (uvicorn, the app as `create_app` builds it from the environment) that kills
itself with SIGKILL at one point of the outbox, for the crash tests:

    CRASH_POINT=before-send|after-send|after-mark CRASH_AT=K python -m tests.support.crash_server

The K-th message the outbox sends dies before it reaches the queue, right after it did, or
right after the job was marked sent. Nothing of the app is changed: only the queue and the
store the outbox holds are wrapped (tests/support/dying.py).
"""

from __future__ import annotations

import os
import signal

import uvicorn

from api.app import create_app
from api.runtime import Runtime
from tests.support.dying import DyingQueue, DyingStore, Trigger


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    app = create_app()
    runtime: Runtime = app.state.runtime
    trigger = Trigger(os.environ["CRASH_POINT"], int(os.environ["CRASH_AT"]), die)
    runtime.outbox.queue = DyingQueue(runtime.outbox.queue, trigger)  # type: ignore[assignment]
    runtime.outbox.store = DyingStore(runtime.outbox.store, trigger)  # type: ignore[assignment]
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ["PORT"]), log_level="warning")


if __name__ == "__main__":
    main()
