"""`http.server.request.duration` per route, for platforms whose metrics do not go through
OpenTelemetry (Lambda: EMF, handlers/lambda_observability.py). With TELEMETRY=otel on Cloud
Run, FastAPI records the same histogram itself, under the same name and attributes.

A pure ASGI layer (no BaseHTTPMiddleware): it reads the route the router leaves in the scope
and records its template, never the raw path, so the number of series stays that of the routes.
FastAPI keeps an included router's routes unprefixed (the prefix lives in private state), so
the app hands over the full template of each prefixed route."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Protocol

from starlette.types import ASGIApp, Message, Receive, Scope, Send

UNMATCHED = "unmatched"  # a 404 or 405 outside every route: one series, not one per path


class RequestRecorder(Protocol):
    def request(self, *, route: str, method: str, status: int, seconds: float) -> None: ...


class RequestMetrics:
    def __init__(
        self, app: ASGIApp, *, recorder: RequestRecorder, templates: Mapping[int, str]
    ) -> None:
        self.app = app
        self.recorder = recorder
        self.templates = templates  # id(route) -> its path with the router's prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # an exception before the response started is a 500 to the client

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            template = self.templates.get(id(route)) or str(getattr(route, "path", UNMATCHED))
            self.recorder.request(
                route=template,
                method=scope["method"],
                status=status,
                seconds=time.perf_counter() - started,
            )
