"""JWT access tokens checked against the issuer's JWKS, the keys cached per process. Imported only
with AUTH=jwt (api/auth.py): the JWT library and `cryptography` cost ~40 ms of imports."""

# Why joserfc: maintained by Authlib's author, typed (py.typed), no I/O of its own, and strict
# where it matters: an algorithm outside the allow-list is refused before any key is looked
# at ("none" included), and a key must match the algorithm's key type, so an RSA or EC key can
# never serve as an HS256 secret. Fetching the JWKS stays ours, so it is rate limited and off
# the event loop; PyJWT's PyJWKClient fetches with blocking urllib on the caller's thread and
# fetches again for every unknown kid, without a limit.

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from joserfc import jws
from joserfc.errors import ExpiredTokenError, InvalidClaimError, JoseError, MissingClaimError
from joserfc.jwk import JWKRegistry, Key, KeySet
from joserfc.jwt import JWTClaimsRegistry

from adapters.errors import Unavailable
from api.auth import Principal, TokenRefused
from api.settings import Settings

logger = logging.getLogger(__name__)

MAX_JWKS_BYTES = 1 << 20
_SIGNING_KEY_TYPES = frozenset({"RSA", "EC", "OKP"})  # never "oct": no shared secrets
_CLAIM_PROBLEMS = {
    "iss": "wrong issuer",
    "aud": "wrong audience",
    "nbf": "not yet valid",
    "iat": "issued in the future",
    "exp": "expired",
    "sub": "no subject",
}
Fetch = Callable[[], Awaitable[bytes]]


def urllib_fetch(url: str, *, timeout: float) -> Fetch:
    """GET the JWKS on a worker thread: the event loop keeps serving meanwhile."""

    def download() -> bytes:
        request = urllib.request.Request(  # noqa: S310 - https (or loopback http): settings check
            url, headers={"Accept": "application/json", "User-Agent": "lambdarun"}
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            body: bytes = response.read(MAX_JWKS_BYTES + 1)
        if len(body) > MAX_JWKS_BYTES:
            raise ValueError(f"JWKS larger than {MAX_JWKS_BYTES} bytes")
        return body

    async def fetch() -> bytes:
        return await asyncio.to_thread(download)

    return fetch


def parse_jwks(body: bytes) -> KeySet:
    """The signing keys of a JWKS document; keys for encryption, symmetric keys and keys this
    library cannot read are left out (RFC 7517 section 5), and `ValueError` if none is left."""
    document = json.loads(body)
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise ValueError('not a JWKS: no "keys" list')
    keys: list[Key] = []
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("kty") not in _SIGNING_KEY_TYPES:
            continue
        if entry.get("use", "sig") != "sig":
            continue
        try:
            keys.append(JWKRegistry.import_key(entry))
        except (JoseError, ValueError, TypeError) as exc:
            logger.warning("JWKS: skipping key %r: %s", entry.get("kid"), exc)
    if not keys:
        raise ValueError("the JWKS holds no signing key")
    return KeySet(keys)


class JwksCache:
    """The issuer's keys, fetched on first use and kept. An unknown kid (the issuer rotated its
    keys) fetches again, but at most once per `min_refresh_interval`, however many requests
    bring bogus kids, and concurrent requests share one fetch. Keys older than `max_age` are
    fetched again; if that fails, they are still used (the issuer's outage is not ours).

    Any failure to fetch or read the JWKS (refused, timed out, not HTTP, not JSON, nested past
    the parser's depth, no signing key) is an outage: a token whose key is not cached is then
    503, never "unknown key" (401), and the next attempt comes `retry_after_failure` later."""

    def __init__(
        self,
        fetch: Fetch,
        *,
        min_refresh_interval: float = 30.0,
        retry_after_failure: float = 2.0,
        max_age: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.fetch = fetch
        self.min_refresh_interval = min_refresh_interval
        self.retry_after_failure = retry_after_failure
        self.max_age = max_age
        self.clock = clock
        self.fetches = 0  # attempts, for tests and logs
        self._keys: KeySet | None = None
        self._fetched_at = 0.0
        self._attempted_at: float | None = None
        self._last_failed = False
        self._lock = asyncio.Lock()

    async def keys_for(self, kid: str | None) -> KeySet:
        """A key set holding `kid`; `TokenRefused` when the issuer has no such key, `Unavailable`
        when its JWKS cannot be fetched and no cached key will do."""
        if self._usable(kid) and not self._stale():
            assert self._keys is not None  # noqa: S101 - _usable checked it
            return self._keys
        async with self._lock:  # one fetch at a time; the others then read its result
            if not (self._usable(kid) and not self._stale()) and self._may_fetch():
                await self._refresh()
            if self._usable(kid):
                assert self._keys is not None  # noqa: S101
                return self._keys
            if self._last_failed:
                raise Unavailable("jwks", "the issuer's JWKS cannot be fetched")
            raise TokenRefused("unknown signing key")

    def _usable(self, kid: str | None) -> bool:
        if self._keys is None:
            return False
        if kid is None:  # joserfc then takes the only key, if there is only one
            return len(self._keys.keys) == 1
        return any(key.kid == kid for key in self._keys.keys)

    def _stale(self) -> bool:
        return self.clock() - self._fetched_at >= self.max_age

    def _may_fetch(self) -> bool:
        last = self._attempted_at
        wait = self.retry_after_failure if self._last_failed else self.min_refresh_interval
        return last is None or self.clock() - last >= wait

    async def _refresh(self) -> None:
        self._attempted_at = self.clock()
        self.fetches += 1
        try:
            keys = parse_jwks(await self.fetch())
        # Whatever the issuer's end answered, and however the parsing of it broke (OSError,
        # http.client.HTTPException, ValueError, RecursionError, ...): an outage, not a verdict.
        except Exception as exc:
            self._last_failed = True
            logger.warning("JWKS fetch failed: %s: %s", type(exc).__name__, exc)
            return
        self._keys, self._fetched_at, self._last_failed = keys, self.clock(), False


def scopes_of(claims: dict[str, Any]) -> frozenset[str]:
    """`scope` (RFC 8693/9068: space-separated) and `scp` (a list, or a string as Entra ID
    sends it), both accepted."""
    found: set[str] = set()
    for name in ("scope", "scp"):
        value = claims.get(name)
        if isinstance(value, str):
            found.update(value.split())
        elif isinstance(value, list):
            found.update(item for item in value if isinstance(item, str) and item)
    return frozenset(found)


class JwtVerifier:
    """Signature by a key from the issuer's JWKS with an allowed algorithm, then `iss`, `aud`,
    `exp` (required), `nbf` and `iat` with `leeway` seconds for clock skew, and a `sub`."""

    def __init__(
        self,
        *,
        keys: JwksCache,
        issuer: str,
        audience: str,
        algorithms: Iterable[str],
        leeway: int,
    ) -> None:
        self.keys = keys
        self.algorithms = frozenset(algorithms)
        # Not strict about header names: issuers add their own; "crit" is still enforced.
        self._registry = jws.JWSRegistry(
            algorithms=sorted(self.algorithms), strict_check_header=False
        )
        self._claims = JWTClaimsRegistry(
            leeway=leeway,
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": audience},
            exp={"essential": True},
            sub={"essential": True},
        )

    async def verify(self, token: str) -> Principal:
        try:
            signed = jws.extract_compact(token.encode("ascii"), registry=self._registry)
        except (JoseError, ValueError) as exc:
            raise TokenRefused("malformed token") from exc
        header = signed.headers()
        if header.get("alg") not in self.algorithms:  # before any key is fetched for it
            raise TokenRefused("algorithm not accepted")
        kid = header.get("kid")
        if (kid is not None and not isinstance(kid, str)) or "b64" in header:
            raise TokenRefused("malformed token")
        key_set = await self.keys.keys_for(kid)
        try:
            valid = jws.validate_compact(signed, key_set, registry=self._registry)
        except JoseError as exc:
            raise TokenRefused("signature not verified") from exc
        if not valid:
            raise TokenRefused("signature not verified")
        try:
            claims = json.loads(signed.payload or b"")
        except ValueError as exc:
            raise TokenRefused("malformed token") from exc
        if not isinstance(claims, dict):
            raise TokenRefused("malformed token")
        self._check_claims(claims)
        return Principal(subject=claims["sub"], scopes=scopes_of(claims))

    def _check_claims(self, claims: dict[str, Any]) -> None:
        try:
            self._claims.validate(claims)
        except ExpiredTokenError as exc:
            raise TokenRefused("expired") from exc
        except MissingClaimError as exc:
            raise TokenRefused("missing claim " + ",".join(sorted(exc.claim.split(",")))) from exc
        except InvalidClaimError as exc:
            raise TokenRefused(_CLAIM_PROBLEMS.get(exc.claim, "invalid claim")) from exc


def build_verifier(settings: Settings) -> JwtVerifier:
    url, issuer, audience = settings.jwt_jwks_url, settings.jwt_issuer, settings.jwt_audience
    if url is None or issuer is None or audience is None:
        raise ValueError("AUTH=jwt needs JWT_JWKS_URL, JWT_ISSUER and JWT_AUDIENCE")
    fetch = urllib_fetch(url, timeout=settings.io_timeout)
    return JwtVerifier(
        keys=JwksCache(fetch),
        issuer=issuer,
        audience=audience,
        algorithms=settings.jwt_algorithm_list,
        leeway=settings.jwt_leeway_seconds,
    )
