"""Security headers on every response, as one pure ASGI middleware with precomputed header lists,
and CORS from settings (Starlette's CORSMiddleware, added only when origins are configured)."""

from __future__ import annotations

import inspect
from typing import Any

from fastapi import FastAPI, Request, Response
from starlette.types import Scope

from api.settings import Settings

Header = tuple[bytes, bytes]

# An API answers JSON: nothing in it may load, run or frame anything.
API_CSP = b"default-src 'none'; frame-ancestors 'none'"
# Swagger UI and ReDoc (FastAPI's /docs and /redoc) load their bundles from jsDelivr, start
# with an inline script, ReDoc its fonts from Google and a worker from a blob: URL.
DOCS_CSP = (
    b"default-src 'none'; "
    b"script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    b"style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
    b"font-src https://fonts.gstatic.com; "
    b"img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly; "
    b"connect-src 'self'; worker-src 'self' blob:; frame-ancestors 'none'"
)
HSTS = b"max-age=31536000"  # a year; no includeSubDomains: the API does not own its parent domain
_PROBLEM = b"application/problem+json"
_NO_STORE = (b"cache-control", b"no-store")


def headers_for(settings: Settings, *, docs: bool = False) -> list[Header]:
    """The headers a response gets (before the problem+json `Cache-Control`): those OWASP's REST
    Security Cheat Sheet lists for every API response (its `Content-Type` the response's own,
    `X-Frame-Options` superseded by `frame-ancestors`), and for the HTML docs pages also
    `Referrer-Policy`, which only a document with links or subresources can act on. Each header
    costs every request (uvicorn validates and writes it), so none is added for nothing."""
    headers = [
        (b"x-content-type-options", b"nosniff"),
        (b"content-security-policy", DOCS_CSP if docs else API_CSP),
    ]
    if settings.stage != "local":  # browsers ignore it over http://, and local is http://
        headers.append((b"strict-transport-security", HSTS))
    if docs:
        headers.append((b"referrer-policy", b"no-referrer"))
    return headers


class SecurityHeaders:
    """The precomputed headers for every response start; problem+json answers also get
    `Cache-Control: no-store` (an error is about this request, never worth keeping; a 404 is
    otherwise cacheable by default). Headers a response sets itself are left alone.

    Not a middleware of its own: the request-id middleware, which already rewrites every
    response start, calls it, so the two cost one layer (each layer costs every request)."""

    def __init__(self, *, settings: Settings, docs_paths: frozenset[str]) -> None:
        self.api = headers_for(settings)
        self.docs = headers_for(settings, docs=True)
        self.docs_paths = docs_paths
        self.names = frozenset(name for name, _ in self.api)

    def __call__(self, scope: Scope, headers: list[Header]) -> list[Header]:
        extra = self.docs if scope["path"] in self.docs_paths else self.api
        return self.merge(headers, extra)

    def merge(self, headers: Any, extra: list[Header]) -> list[Header]:
        merged = list(headers)
        problem = cached = own = False
        for name, value in merged:
            if name == b"content-type":
                problem = value.startswith(_PROBLEM)
            elif name == b"cache-control":
                cached = True
            elif name in self.names:
                own = True
        if own:  # rare: keep what the response chose
            present = {name for name, _ in merged}
            merged += [header for header in extra if header[0] not in present]
        else:
            merged += extra
        if problem and not cached:
            merged.append(_NO_STORE)
        return merged


def cover_unhandled_errors(app: FastAPI, settings: Settings) -> None:
    """Starlette answers an unhandled exception (500) in ServerErrorMiddleware, outside every
    user middleware, so that response never passes ours: its handler adds them itself."""
    unexpected = app.exception_handlers[Exception]
    headers = [(k.decode(), v.decode()) for k, v in [*headers_for(settings), _NO_STORE]]

    async def with_headers(request: Request, exc: Exception) -> Response:
        response = unexpected(request, exc)
        if inspect.isawaitable(response):
            response = await response
        for name, value in headers:
            response.headers.setdefault(name, value)
        return response

    app.add_exception_handler(Exception, with_headers)


def add_cors(app: FastAPI, settings: Settings) -> None:
    """CORS for the origins in `CORS_ORIGINS`; nothing at all (no cost) when there are none."""
    origins = settings.cors_origin_list
    if not origins:
        return
    from starlette.middleware.cors import CORSMiddleware

    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(origins),
        allow_credentials=settings.cors_allow_credentials,
        allow_methods=["GET", "POST", "PATCH", "DELETE"],
        allow_headers=[
            "Authorization",
            "Content-Type",
            "Idempotency-Key",
            "If-Match",
            "If-None-Match",
            "X-Request-ID",
            "traceparent",
        ],
        expose_headers=[
            "Location",
            "ETag",
            "Link",
            "Retry-After",
            "X-Request-ID",
            "Idempotent-Replayed",
            "RateLimit-Limit",
            "RateLimit-Remaining",
            "RateLimit-Reset",
            "RateLimit-Policy",
        ],
        max_age=600,
    )
