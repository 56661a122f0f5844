"""Identifiers: UUIDv7 (RFC 9562), so ids sort in creation order and listings need no extra key."""

from __future__ import annotations

import os
import re
import threading
import time
import uuid

# Written here because the standard library gains uuid7 only in Python 3.14;
# remove this module when 3.14 is the oldest supported runtime.
_lock = threading.Lock()
_last_ms = 0
_counter = 0

ID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
_ID = re.compile(ID_PATTERN)


def new_id() -> str:
    """A UUIDv7 string; ids made in one process are strictly increasing (a 12-bit counter
    orders those made in the same millisecond, as RFC 9562 section 6.2 method 1 allows)."""
    global _last_ms, _counter  # noqa: PLW0603 - module state is the point: one sequence per process
    with _lock:
        now_ms = time.time_ns() // 1_000_000
        if now_ms > _last_ms:
            _last_ms, _counter = now_ms, int.from_bytes(os.urandom(2), "big") & 0x1FF
        else:
            _counter += 1
            if _counter > 0xFFF:  # counter spent: borrow the next millisecond
                _last_ms, _counter = _last_ms + 1, 0
        ms, counter = _last_ms, _counter
    rand = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms << 80) | (0x7 << 76) | (counter << 64) | (0b10 << 62) | rand
    return str(uuid.UUID(int=value))


def is_id(value: str) -> bool:
    return _ID.match(value) is not None
