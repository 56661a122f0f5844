"""How tests reach real services, and what happens when one is missing."""

from __future__ import annotations

import os

import pytest


def service_missing(name: str, reason: str) -> None:
    """Fail under CI=true (a needed service is missing), skip on a developer's machine saying so."""
    message = f"{name} is not reachable: {reason}"
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(message + " (CI=true: services are required)")
    pytest.skip(message + " (start it to run these tests; CI=true makes this a failure)")
