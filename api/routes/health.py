"""Liveness and readiness, registered on the app itself rather than through a router.

Since FastAPI 0.137, `include_router` keeps the router as a node that every request resolves
again (it matches the router, then the route inside it): measured here at ~10 us of a ~40 us
request for a route behind one router. The probes are what the platform calls most (a
startup probe at every cold start, liveness checks after), and the cheapest requests, so that
fixed cost weighs most on them. See docs/cloudrun.md."""

from __future__ import annotations

from enum import Enum
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from api.deps import RuntimeDep
from api.errors import PROBLEM_JSON, Problem, problem_type

TAGS: list[str | Enum] = ["health"]


async def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def readyz(runtime: RuntimeDep) -> Any:
    ready, checks = await runtime.readiness()
    if not ready:
        failing = sorted(name for name, state in checks.items() if state != "ok")
        raise Problem(
            503,
            f"Not ready: {', '.join(failing)} failing.",
            type=problem_type("not-ready"),
            headers={"Retry-After": "5"},
            checks=checks,
        )
    degraded = any(state != "ok" for state in checks.values())
    return JSONResponse({"status": "degraded" if degraded else "ok", "checks": checks})


def install(app: FastAPI) -> None:
    app.add_api_route(
        "/healthz", healthz, summary="Liveness: the process answers (no I/O)", tags=TAGS
    )
    app.add_api_route(
        "/readyz",
        readyz,
        summary="Readiness: every adapter answers",
        tags=TAGS,
        responses={
            503: {"description": "A required adapter is down", "content": {PROBLEM_JSON: {}}}
        },
    )
