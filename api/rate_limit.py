"""Rate limiting per client, as pure ASGI middleware, with IETF RateLimit headers and 429s."""

from __future__ import annotations

import logging
import math

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adapters.errors import Unavailable
from adapters.ports import RateLimitResult
from api.errors import Problem, problem_response, problem_type
from api.failopen import Breaker
from api.runtime import Runtime

logger = logging.getLogger(__name__)

EXEMPT = frozenset({"/healthz", "/readyz"})  # probes must never be refused


def client_key(scope: Scope) -> str:
    """Who is asking: the authenticated subject when there is one, else the client address as
    the platform reports it (API Gateway's sourceIp via Mangum; on Cloud Run the entry its
    front end appended to X-Forwarded-For, which the edge layer puts in `client`:
    api/middleware.py, PROXY_HOPS)."""
    subject = scope.get("state", {}).get("subject")
    if subject:
        return f"sub:{subject}"
    client = scope.get("client")
    return f"ip:{client[0]}" if client else "ip:unknown"


def _headers(result: RateLimitResult, window: int) -> list[tuple[bytes, bytes]]:
    # draft-ietf-httpapi-ratelimit-headers: the limit, what is left, seconds until it resets.
    return [
        (b"ratelimit-limit", str(result.limit).encode()),
        (b"ratelimit-remaining", str(result.remaining).encode()),
        (b"ratelimit-reset", str(math.ceil(result.reset_after)).encode()),
        (b"ratelimit-policy", f"{result.limit};w={window}".encode()),
    ]


class RateLimitMiddleware:
    """Counts every request except the probes against `RATE_LIMIT` per client. If the limiter's
    service is down, requests are let through (fail open: an outage of Redis must not become
    an outage of the API) and it is not asked again for a few seconds."""

    def __init__(self, app: ASGIApp, *, runtime: Runtime, breaker: Breaker | None = None) -> None:
        self.app = app
        self.runtime = runtime
        self.rule = runtime.settings.rate_limit_parsed
        self.breaker = breaker or Breaker()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.rule is None or scope["type"] != "http" or scope["path"] in EXEMPT:
            await self.app(scope, receive, send)
            return
        limit, window = self.rule
        result = await self._hit(client_key(scope), limit, window)
        if result is None:
            await self.app(scope, receive, send)
            return
        extra = _headers(result, window)
        if not result.allowed:
            retry_after = str(max(1, math.ceil(result.reset_after)))
            problem = Problem(
                429,
                f"More than {limit} requests in {window} s; retry after {retry_after} s.",
                type=problem_type("rate-limited"),
                headers={"Retry-After": retry_after, **{k.decode(): v.decode() for k, v in extra}},
            )
            await problem_response(problem, Request(scope))(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _hit(self, key: str, limit: int, window: int) -> RateLimitResult | None:
        if self.breaker.is_open:
            return None
        try:
            return await self.runtime.adapters.rate_limiter.hit(key, limit=limit, window=window)
        except Unavailable as exc:
            logger.warning("rate limiter unavailable, letting requests through: %s", exc)
            self.breaker.trip()
            return None
