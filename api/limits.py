"""Request size limits as one pure ASGI middleware: URL (414), headers (431) and body (413),
the body counted while it streams, so a chunked upload is cut off at the limit, not after it;
and a deadline on the body (408), so a client trickling it in holds nothing for long.

Why not FastAPI's own `FastAPI(max_body_size=...)` (Starlette's RequestBodyLimitMiddleware):
it streams and answers 413, but as `text/plain` whenever the request declares a Content-Length
over the limit (its `send` wrapper replaces whatever the app answered), and it sits outside
every user middleware, so nothing of ours can turn that answer into problem+json. This one
answers problem+json in every case, refuses a declared oversize body before reading a byte,
and raises `BodyTooLarge` (an HTTPException) from `receive`, which FastAPI's body parsing lets
through to the one HTTPException handler in api/errors.py."""

from __future__ import annotations

import asyncio

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import Problem, problem_response

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})  # the methods whose bodies routes read


class BodyTooLarge(HTTPException):
    """The request body passed `MAX_BODY_BYTES` (raised from `receive`)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"The request body is larger than {limit} bytes.")


class BodyTooSlow(HTTPException):
    """The request body did not arrive within `READ_TIMEOUT_SECONDS` (raised from `receive`):
    408, and the connection closed, so a client trickling bytes holds nothing for long."""

    def __init__(self, timeout: float) -> None:
        super().__init__(
            408,
            f"The request body did not arrive within {timeout:g} seconds.",
            headers={"Connection": "close"},
        )


def body_too_large(limit: int) -> Problem:
    return Problem(413, f"The request body is larger than {limit} bytes.")


class LimitsMiddleware:
    """414 for a path plus query string over `max_url`, 431 for headers (names and values)
    over `max_headers` in all, 413 for a body over `max_body`: at once when Content-Length says
    so, else as soon as the bytes received pass it."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body: int,
        max_url: int,
        max_headers: int,
        body_timeout: float | None = None,
    ) -> None:
        self.app = app
        self.max_body = max_body
        self.max_url = max_url
        self.max_headers = max_headers
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("raw_path") or scope["path"].encode()
        if len(path) + len(scope["query_string"]) > self.max_url:
            detail = f"The path and query string are longer than {self.max_url} bytes."
            await _answer(Problem(414, detail), scope, receive, send)
            return
        size, declared = 0, None
        for name, value in scope["headers"]:
            size += len(name) + len(value)
            if name == b"content-length":
                declared = value
        if size > self.max_headers:
            detail = f"The request headers are larger than {self.max_headers} bytes in all."
            await _answer(Problem(431, detail), scope, receive, send)
            return
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            await _answer(body_too_large(self.max_body), scope, receive, send)
            return
        if scope["method"] in BODY_METHODS:
            await self._counted(scope, receive, send)
        else:  # no route reads these bodies, and what is never read is never held
            await self.app(scope, receive, send)

    async def _counted(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Counted even when Content-Length is within the limit: under Mangum the body comes
        # from the event, whatever the header said.
        limit, received, started = self.max_body, 0, False
        timeout = self.body_timeout
        deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout

        complete = False  # once the body is in, a wait for the disconnect has no deadline

        async def receive_counted() -> Message:
            nonlocal received, complete
            if deadline is None or complete:
                message = await receive()
            else:
                try:
                    async with asyncio.timeout_at(deadline):
                        message = await receive()
                except TimeoutError:
                    raise BodyTooSlow(timeout or 0) from None
            complete = complete or not message.get("more_body", False)
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def send_watched(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await self.app(scope, receive_counted, send_watched)
        except (BodyTooLarge, BodyTooSlow) as exc:
            # Read outside the routes (FastAPI's handler answers it inside them).
            if started:
                raise
            headers = dict(exc.headers or {})
            await _answer(
                Problem(exc.status_code, exc.detail, headers=headers), scope, receive, send
            )


async def _answer(problem: Problem, scope: Scope, receive: Receive, send: Send) -> None:
    await problem_response(problem, Request(scope))(scope, receive, send)
