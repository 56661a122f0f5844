"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import RuntimeDep
from api.errors import PROBLEM_JSON, Problem, problem_type

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process answers (no I/O)")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: every adapter answers",
    responses={503: {"description": "A required adapter is down", "content": {PROBLEM_JSON: {}}}},
)
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
