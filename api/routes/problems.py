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
        409: "Conflicts with an existing resource, or its Idempotency-Key is still in progress",
        412: "If-Match names a stale version",
        413: "The body (or a job's payload) is larger than the limit",
        414: "The path and query string are longer than the limit",
        415: "The body is not JSON",
        422: "Validation failed, or the Idempotency-Key was used with another request",
        431: "The request headers are larger than the limit",
        503: "A backing service is unavailable; retry",
    }
    return {s: {"description": descriptions[s], **_SCHEMA} for s in statuses}
