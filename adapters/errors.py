"""Errors the adapters raise: SDK errors are translated into these at the boundary."""

from __future__ import annotations


class AdapterError(Exception):
    """Base of every error an adapter raises on purpose."""


class NotFound(AdapterError):
    """The record does not exist."""


class AlreadyExists(AdapterError):
    """A uniqueness rule was broken (an email already taken, an id reused)."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class VersionConflict(AdapterError):
    """An optimistic-concurrency check failed: the record changed since it was read."""


class Unavailable(AdapterError):
    """A backing service could not be reached; the request may be retried later."""

    def __init__(self, component: str, message: str | None = None) -> None:
        super().__init__(message or f"{component} is unavailable")
        self.component = component


class ConfigurationError(AdapterError):
    """A setting names an adapter that does not exist or cannot be built."""
