"""How tests reach real services, and what happens when one is missing."""

from __future__ import annotations

import os

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def missing(message: str) -> None:
    """Fail under CI=true (what the test needs is missing), skip on a developer's machine saying
    so. The one place tests skip: under CI=true nothing can."""
    if in_ci():
        pytest.fail(message + " (CI=true: everything the suite needs is required)")
    pytest.skip(message + " (CI=true makes this a failure)")


def service_missing(name: str, reason: str) -> None:
    missing(f"{name} is not reachable: {reason}; start it to run these tests")
