"""`http.server.request.duration` per route, for platforms whose metrics do not go through
OpenTelemetry (Lambda: EMF, handlers/lambda_observability.py). With TELEMETRY=otel on Cloud
Run, FastAPI records the same histogram itself, under the same name and attributes.

A pure ASGI layer (no BaseHTTPMiddleware): it reads the route template the router leaves in
the scope, never the raw path, so the number of series stays that of the routes."""

from __future__ import annotations

import time
from typing import Protocol

from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

UNMATCHED = "unmatched"  # a 404 or 405 outside every route: one series, not one per path


class RequestRecorder(Protocol):
    def request(self, *, route: str, method: str, status: int, seconds: float) -> None: ...


class RequestMetrics:
    def __init__(self, app: ASGIApp, *, recorder: RequestRecorder) -> None:
        self.app = app
        self.recorder = recorder

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
            self.recorder.request(
                route=route.path
                if isinstance(route, BaseRoute) and hasattr(route, "path")
                else UNMATCHED,
                method=scope["method"],
                status=status,
                seconds=time.perf_counter() - started,
            )
