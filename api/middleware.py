"""Pure ASGI middleware (BaseHTTPMiddleware costs on every request; docs/performance.md)."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable
from contextvars import ContextVar, Token
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

_WELL_FORMED = re.compile(rb"^[A-Za-z0-9._:\-]{1,128}$")


def _platform_request_id(scope: Scope) -> str | None:
    """API Gateway's own request id (Mangum passes the event as `aws.event`), so our logs,
    Powertools' correlation id and API Gateway's access log name a request alike."""
    event = scope.get("aws.event")
    if event is None:  # not under Mangum
        return None
    value = (event.get("requestContext") or {}).get("requestId")
    return value if isinstance(value, str) and _WELL_FORMED.match(value.encode()) else None


Header = tuple[bytes, bytes]
Decorate = Callable[[Scope, list[Header]], list[Header]]


def forwarded_client(scope: Scope, hops: int) -> Scope:
    """`scope` with the client and scheme the proxies in front report, trusting exactly `hops`
    of them. Each proxy appends the address it received the request from to X-Forwarded-For,
    so the client is the `hops`-th entry from the right; whatever is further left came from
    the client and proves nothing (Cloud Run's front end appends one entry; an external
    Application Load Balancer in front of it, two). Unchanged when the header has fewer
    entries or that one is no IP address."""
    forwarded: list[bytes] = []
    proto = b""
    for name, value in scope["headers"]:
        if name == b"x-forwarded-for":
            forwarded += value.split(b",")
        elif name == b"x-forwarded-proto":
            proto = value.rsplit(b",", 1)[-1].strip()  # the nearest proxy's
    changed: dict[str, Any] = {}
    if len(forwarded) >= hops:
        try:
            address = ipaddress.ip_address(forwarded[-hops].strip().decode("ascii"))
        except (ValueError, UnicodeDecodeError):
            pass
        else:
            changed["client"] = (str(address), 0)
    if proto in (b"http", b"https"):
        changed["scheme"] = proto.decode()
    return {**scope, **changed} if changed else scope


class RequestIdMiddleware:
    """Accepts a well-formed `X-Request-ID` from the client or makes one, exposes it to handlers
    (`request.state.request_id`) and logs, and returns it on the response.

    The edge of the app, so it does the other per-request work of that place in the same layer:
    `decorate` adds the headers every response carries (api/security_headers.py), with `trace`
    the request's trace context is put where Cloud Logging's formatter reads it, with
    `proxy_hops` the client is read from X-Forwarded-For as `forwarded_client` says, and a HEAD is
    served as the GET it asks about, without the body (RFC 9110 9.3.2; FastAPI routes GET to
    GET only, and HEAD to nothing)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        decorate: Decorate | None = None,
        trace: bool = False,
        proxy_hops: int = 0,
    ) -> None:
        self.app = app
        self.decorate = decorate
        self.proxy_hops = proxy_hops
        self.trace: Callable[[Scope], Token[Any]] | None = None
        if trace:
            # Imported here: that module imports this one, and only Cloud Run needs it.
            from api.cloud_logging import enter_request_trace

            self.trace = enter_request_trace

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = (
            self._from_headers(scope) or _platform_request_id(scope) or os.urandom(16).hex()
        )
        scope.setdefault("state", {})["request_id"] = request_id
        raw = request_id.encode()
        if self.proxy_hops:
            scope = forwarded_client(scope, self.proxy_hops)
        head = scope["method"] == "HEAD"
        if head:
            scope = {**scope, "method": "GET"}

        decorate = self.decorate

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                # Responses from inside never set it themselves (api/errors.py leaves it here).
                headers = [*message.get("headers", ()), (b"x-request-id", raw)]
                message["headers"] = headers if decorate is None else decorate(scope, headers)
            elif head and message["type"] == "http.response.body":
                message = {**message, "body": b""}  # the GET's headers, none of its body
            await send(message)

        token = request_id_var.set(request_id)
        trace = None if self.trace is None else self.trace(scope)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)
            if trace is not None:
                trace.var.reset(trace)

    @staticmethod
    def _from_headers(scope: Scope) -> str | None:
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                return value.decode("ascii") if _WELL_FORMED.match(value) else None
        return None
