"""Pub/Sub push authentication: the OIDC token Google puts on each push request, checked
against Google's published keys (google-auth does the JWT work; it is imported on the first
check, so an app without push never loads it)."""

from __future__ import annotations

import asyncio
import functools
import re
import time
from typing import TYPE_CHECKING, Any

from adapters.errors import Unavailable

if TYPE_CHECKING:
    import httpx
    from google.auth import transport


GOOGLE_OAUTH2_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
GOOGLE_ISSUERS = frozenset({"accounts.google.com", "https://accounts.google.com"})
_CERTS_MIN_AGE = 60.0  # seconds; Google's answer says how long to keep them (hours)
_MAX_AGE = re.compile(r"max-age=(\d+)")


class PubSubPushVerifier:
    """Checks the OIDC token Pub/Sub puts on an authenticated push request: signed by Google
    (keys from `certs_url`, kept as long as Google's Cache-Control allows), issued by
    accounts.google.com, for `audience`, and, when given, for `service_account`.

    google-auth is imported on the first check, so an app that never receives a push never
    loads it; the keys are fetched here (async, cached) and handed to google-auth's
    `verify_token` through an in-memory `Request`, so a check never blocks the event loop."""

    def __init__(
        self,
        *,
        audience: str,
        service_account: str | None = None,
        certs_url: str = GOOGLE_OAUTH2_CERTS_URL,
        timeout: float = 2.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.audience = audience
        self.service_account = service_account
        self.certs_url = certs_url
        self.timeout = timeout
        self._client = client
        self._certs: tuple[bytes, float] | None = None  # (JSON body, monotonic expiry)
        self._lock: asyncio.Lock | None = None

    async def check(self, authorization: str | None) -> tuple[int, str] | None:
        """None when the request may pass; else (401 or 403, why). `Unavailable` when Google's
        keys cannot be fetched (the push is then answered 503 and Pub/Sub retries it)."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return 401, "a Bearer token is required"
        certs = await self._fresh_certs()
        from google.auth import exceptions
        from google.oauth2 import id_token

        try:
            claims = id_token.verify_token(
                token.strip(),
                _certs_request_class()(self.certs_url, certs),  # type: ignore[call-arg]
                audience=self.audience,
                certs_url=self.certs_url,
                clock_skew_in_seconds=10,
            )
        except (ValueError, exceptions.GoogleAuthError) as exc:
            return 401, f"invalid token: {exc}"
        if claims.get("iss") not in GOOGLE_ISSUERS:
            return 401, "invalid token: not issued by accounts.google.com"
        if self.service_account is not None and (
            claims.get("email") != self.service_account or claims.get("email_verified") is not True
        ):
            return 403, "the token is not from the expected push service account"
        return None

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _fresh_certs(self) -> bytes:
        cached = self._certs
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            cached = self._certs
            if cached is not None and cached[1] > time.monotonic():
                return cached[0]
            import httpx

            if self._client is None:
                self._client = httpx.AsyncClient(timeout=httpx.Timeout(self.timeout))
            try:
                response = await self._client.get(self.certs_url)
                response.raise_for_status()
            except httpx.HTTPError as exc:
                raise Unavailable(
                    "pubsub-push", f"pubsub-push: cannot fetch Google's token keys: {exc!r}"
                ) from exc
            found = _MAX_AGE.search(response.headers.get("cache-control", ""))
            lifetime = max(float(found[1]) if found else 0.0, _CERTS_MIN_AGE)
            self._certs = (response.content, time.monotonic() + lifetime)
            return response.content


class _CertsResponse:
    """The google.auth.transport.Response google-auth reads: the keys we already hold."""

    def __init__(self, status: int, data: bytes) -> None:
        self.status = status
        self.headers: dict[str, str] = {"content-type": "application/json"}
        self.data = data


@functools.cache
def _certs_request_class() -> type[transport.Request]:
    from google.auth import transport

    class CertsRequest(transport.Request):
        """A google.auth.transport.Request that answers one URL, the keys', from memory."""

        def __init__(self, url: str, certs: bytes) -> None:
            self.url = url
            self.certs = certs

        def __call__(self, url: str, method: str = "GET", **kwargs: Any) -> _CertsResponse:  # type: ignore[override]
            if url != self.url or method != "GET":
                return _CertsResponse(404, b"{}")
            return _CertsResponse(200, self.certs)

    return CertsRequest
