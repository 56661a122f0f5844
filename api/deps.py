"""Dependencies for routes as `Annotated` aliases. All `async def`: a sync dependency would start
FastAPI's thread pool on the first request, ~8 ms of a cold start (docs/performance.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request

from adapters.ports import Cache, Store
from api.auth import Principal, require
from api.jobs.outbox import Outbox
from api.jobs.runner import utcnow
from api.runtime import Runtime
from api.settings import Settings
from api.tasks.registry import TaskRegistry


async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_settings(runtime: RuntimeDep) -> Settings:
    return runtime.settings


async def get_store(runtime: RuntimeDep) -> Store:
    return runtime.adapters.store


async def get_outbox(runtime: RuntimeDep) -> Outbox:
    return runtime.outbox


async def get_cache(runtime: RuntimeDep) -> Cache:
    return runtime.adapters.cache


async def get_registry(runtime: RuntimeDep) -> TaskRegistry:
    return runtime.registry


async def get_now() -> datetime:
    return utcnow()


async def get_trace_attributes(request: Request) -> dict[str, str]:
    """The caller's W3C trace context, carried onto job messages."""
    traceparent = request.headers.get("traceparent")
    return {"traceparent": traceparent} if traceparent and len(traceparent) <= 128 else {}


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[Store, Depends(get_store)]
OutboxDep = Annotated[Outbox, Depends(get_outbox)]
CacheDep = Annotated[Cache, Depends(get_cache)]
RegistryDep = Annotated[TaskRegistry, Depends(get_registry)]
NowDep = Annotated[datetime, Depends(get_now)]
TraceDep = Annotated[dict[str, str], Depends(get_trace_attributes)]
# The caller's principal: a valid token is required (401), None when AUTH=off.
CallerDep = Annotated[Principal | None, require()]
