"""OpenAPI descriptions of the problem+json answers routes share."""

from __future__ import annotations

from typing import Any

from api.errors import PROBLEM_JSON
from api.schemas import ProblemDetail

_SCHEMA = {"model": ProblemDetail, "content": {PROBLEM_JSON: {}}}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    descriptions = {
        400: "Malformed request (bad JSON, bad cursor)",
        404: "No such resource",
        409: "Conflicts with an existing resource",
        412: "If-Match names a stale version",
        415: "The body is not JSON",
        422: "Validation failed",
        503: "A backing service is unavailable; retry",
    }
    return {s: {"description": descriptions[s], **_SCHEMA} for s in statuses}
