"""Idempotent POSTs: an `Idempotency-Key` header (draft-ietf-httpapi-idempotency-key-header)
makes a create safe to retry. The first request with a key runs and its answer is kept; a
repeat with the same body gets that answer again (`Idempotent-Replayed: true`) without a
second effect; the same key with another body is 422; a repeat while the first still runs is
409 with Retry-After. Keys belong to a caller (the token's subject, else the client address)
and expire after IDEMPOTENCY_TTL_SECONDS.

Two halves: the `idempotent` route dependency claims the key (after authentication has put
the subject in scope, and after FastAPI has read the body, which it hashes), and a pure ASGI
middleware records the answer the route gives. The records live in the store's database
(the `IdempotencyStore` port), so every instance sees them, and the claim is one conditional
write, so of concurrent requests with one key exactly one runs.

Why not Powertools' idempotency utility (docs/limits.md has the figures): its handler and
persistence layer are synchronous (`_put_record` and friends), so they cannot run on our async
store without a thread per call, and async functions are not supported (the maintainers
declined: aws-powertools/powertools-lambda-python#4483); it takes the in-progress expiry from
the Lambda context and warns on every call without one (Cloud Run, local); it stores a
function's return value, not an HTTP answer; and importing it pulls boto3 into every cold
start (about 100 ms). What it does right is kept: one shared flow over a small persistence
interface, a conditional insert of the in-progress record, and an in-progress expiry."""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import FastAPI, Header, Request, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adapters.bootstrap import build_idempotency_store
from adapters.errors import Unavailable
from adapters.ports import IdempotencyStore
from adapters.records import IdempotencyRecord, StoredResponse
from api.deps import NowDep
from api.errors import Problem, problem_type
from api.rate_limit import client_key
from api.runtime import Runtime

logger = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"  # visible ASCII, as clients send UUIDs or similar
SCOPE_KEY = "lambdarun.idempotency"
MAX_STORED_BODY = 256 * 1024  # an answer larger than this is not kept (none of ours is)
PURGE_ONE_IN = 64  # about one claim in this many also deletes some expired records
PURGE_BATCH = 100


class Replay(Exception):
    """The key's first answer, to be sent again (rendered by the handler `install` adds)."""

    def __init__(self, response: StoredResponse) -> None:
        super().__init__(f"replaying a {response.status} answer")
        self.response = response


@dataclass(slots=True)
class _Exchange:
    """One POST's idempotency state: the middleware makes it, the dependency claims with it."""

    records: IdempotencyStore
    ttl: timedelta
    lock: timedelta
    claim: IdempotencyRecord | None = None


def _digest(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


async def idempotent(
    request: Request,
    now: NowDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias=HEADER,
            pattern=KEY_PATTERN,
            description="A unique value per intended operation (a UUID): a retry with the same "
            "key and body gets the first answer again instead of repeating the effect. Keys "
            "are kept 24 h per caller.",
        ),
    ] = None,
) -> None:
    """Route dependency for POSTs that create something; see the module docstring."""
    if idempotency_key is None:
        return
    exchange = request.scope.get(SCOPE_KEY)
    if not isinstance(exchange, _Exchange):
        raise RuntimeError("IdempotencyMiddleware is not installed (api.idempotency.install)")
    caller = client_key(request.scope).encode()
    body = await request.body()  # FastAPI read it already: this is the cached copy
    record = IdempotencyRecord(
        key=_digest(caller, idempotency_key.encode()),
        fingerprint=_digest(request.method.encode(), request.url.path.encode(), body),
        token=os.urandom(16).hex(),
        expires_at=now + exchange.ttl,
        locked_until=now + exchange.lock,
    )
    found = await exchange.records.claim(record, now=now)
    if found is None:
        exchange.claim = record
        if secrets.randbelow(PURGE_ONE_IN) == 0:
            await _purge(exchange.records, now)
        return
    if found.fingerprint != record.fingerprint:
        raise Problem(
            422,
            f"This {HEADER} was used with another request; use a new key for a new request.",
            title="Idempotency key reused",
            type=problem_type("idempotency-key-reused"),
        )
    if found.response is None:
        raise Problem(
            409,
            f"A request with this {HEADER} is still in progress; retry shortly.",
            title="Request in progress",
            type=problem_type("idempotency-in-progress"),
            headers={"Retry-After": "1"},
        )
    raise Replay(found.response)


async def _purge(records: IdempotencyStore, now: datetime) -> None:
    try:
        await records.purge(now=now, limit=PURGE_BATCH)
    except Unavailable as exc:  # housekeeping: never the reason a request fails
        logger.warning("could not purge expired idempotency records: %s", exc)


class IdempotencyMiddleware:
    """Gives every POST an `_Exchange`; when the route's dependency claimed a key, keeps the
    answer (status below 500) before its last byte goes out, so a client that has the answer
    finds the record complete, or releases the claim (5xx, an error, an answer too large to
    keep) so a retry runs afresh. Other requests only pass through."""

    def __init__(self, app: ASGIApp, *, runtime: Runtime) -> None:
        self.app = app
        settings = runtime.settings
        self.records = build_idempotency_store(settings.database_url, runtime.adapters.store)
        self.ttl = timedelta(seconds=settings.idempotency_ttl_seconds)
        self.lock = timedelta(seconds=settings.idempotency_lock_seconds)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        exchange = _Exchange(self.records, self.ttl, self.lock)
        scope[SCOPE_KEY] = exchange
        status, headers, body = 0, [], bytearray()

        async def send_kept(message: Message) -> None:
            nonlocal status, headers
            claim = exchange.claim
            if claim is not None:
                if message["type"] == "http.response.start":
                    # A copy: outer layers (CORS) add their per-request headers in place.
                    status, headers = message["status"], list(message.get("headers", []))
                elif message["type"] == "http.response.body":
                    body.extend(message.get("body", b""))
                    if not message.get("more_body", False):
                        exchange.claim = None
                        await self._settle(claim, status, headers, bytes(body))
            await send(message)

        try:
            await self.app(scope, receive, send_kept)
        finally:
            if exchange.claim is not None:  # no complete answer went out
                await self._release(exchange.claim)

    async def _settle(
        self, claim: IdempotencyRecord, status: int, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> None:
        if status >= 500 or len(body) > MAX_STORED_BODY:
            await self._release(claim)
            return
        kept = tuple(
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in headers
            if name != b"content-length"
        )
        response = StoredResponse(status=status, headers=kept, body=body)
        try:
            done = await self.records.complete(
                claim.key, token=claim.token, response=response, expires_at=claim.expires_at
            )
        except Unavailable as exc:
            logger.warning("could not keep the answer of an idempotent request: %s", exc)
            await self._release(claim)
            return
        if not done:  # its lock ran out and another request took the key
            logger.warning("idempotency claim lost before the answer was kept")

    async def _release(self, claim: IdempotencyRecord) -> None:
        try:
            await self.records.release(claim.key, token=claim.token)
        except Unavailable as exc:  # the lock runs out by itself
            logger.warning("could not release an idempotency claim: %s", exc)


async def _on_replay(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Replay)  # noqa: S101 - registered for Replay only
    stored = exc.response
    response = Response(stored.body, status_code=stored.status)
    response.raw_headers = [
        *((name.encode("latin-1"), value.encode("latin-1")) for name, value in stored.headers),
        (b"content-length", str(len(stored.body)).encode()),
        (b"idempotent-replayed", b"true"),
    ]
    return response


def install(app: FastAPI, runtime: Runtime) -> None:
    """Add the middleware (call it before any other `add_middleware`: it must run innermost,
    after authentication) and the handler that sends replays."""
    app.add_middleware(IdempotencyMiddleware, runtime=runtime)
    app.add_exception_handler(Replay, _on_replay)
