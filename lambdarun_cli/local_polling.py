"""What keeps `local start-worker` polling and what stops it: an SQS outage is waited out with
a growing delay, as Lambda's event source mapping keeps polling through one; SIGINT/SIGTERM
let a batch in progress finish (a second one stops at once)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import FrameType
from typing import TextIO

# Waits between polls while SQS is unreachable: doubling from the first to the last.
BACKOFF_FIRST, BACKOFF_LAST = 0.2, 10.0


class Stopping(BaseException):
    """SIGINT or SIGTERM while idle (or a second one at any time): stop polling now."""


class Backoff:
    """The delay before the next poll while SQS is unreachable, and the outage's log lines: one
    when it starts, one when it ends (not one per failed poll)."""

    def __init__(self, log: TextIO) -> None:
        self.log = log
        self.delay = 0.0
        self.failures = 0

    def failed(self, error: Exception) -> float:
        self.failures += 1
        self.delay = min(BACKOFF_LAST, self.delay * 2 or BACKOFF_FIRST)
        if self.failures == 1:
            print(
                f"lambdarun: the queue is unreachable ({error}); polling again with backoff "
                f"up to {BACKOFF_LAST:g} s",
                file=self.log,
                flush=True,
            )
        return self.delay

    def recovered(self) -> None:
        if self.failures:
            print(
                f"lambdarun: the queue is reachable again after {self.failures} failed polls",
                file=self.log,
                flush=True,
            )
        self.delay, self.failures = 0.0, 0


def transient(error: Exception) -> bool:
    """True for what passes: no connection, a timeout, a 5xx or throttling. A missing queue or
    refused credentials stop the worker instead (Lambda disables such a mapping)."""
    from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

    if isinstance(error, ConnectionError | HTTPClientError):
        return True
    if isinstance(error, ClientError):
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        code = error.response.get("Error", {}).get("Code", "")
        return status >= 500 or "Throttl" in code or code == "RequestThrottled"
    return False


class Signals:
    """The first SIGINT/SIGTERM lets a batch in progress finish and be acknowledged; an idle
    poll is abandoned at once. A second signal stops at once whatever is going on: what the
    function had is not deleted and comes back after the visibility timeout."""

    def __init__(self, log: TextIO) -> None:
        self.log = log
        self.requested = False
        self.idle = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.requested or self.idle:
            self.requested = True
            raise Stopping
        self.requested = True
        print("lambdarun: stopping after this batch (again to stop now)", file=self.log)

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        if self.requested:
            raise Stopping
        self.idle = True
        try:
            yield
        finally:
            self.idle = False
