"""Failing open without paying the timeout on every request."""

from __future__ import annotations

import time
from collections.abc import Callable


class Breaker:
    """After a failure, callers skip the service for `cooldown` seconds instead of each waiting
    out its timeout; the first call after the cooldown tries it again."""

    def __init__(self, cooldown: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.cooldown = cooldown
        self._clock = clock
        self._until = 0.0

    @property
    def is_open(self) -> bool:
        return self._clock() < self._until

    def trip(self) -> None:
        self._until = self._clock() + self.cooldown

    def reset(self) -> None:
        self._until = 0.0
