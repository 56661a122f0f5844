"""Request media types: bodies must be JSON."""

from __future__ import annotations

from fastapi import Request

from api.errors import Problem, problem_type


async def require_json(request: Request) -> None:
    """415 for a body sent as anything but JSON (`application/json` or `application/*+json`)."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    ):
        return
    raise Problem(
        415,
        "Send the body as application/json.",
        type=problem_type("media-type"),
        headers={"Accept-Patch": "application/json, application/merge-patch+json"}
        if request.method == "PATCH"
        else None,
    )
