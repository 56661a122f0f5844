"""Bearer-token authentication for /v1 (OAuth2 access tokens; RFC 6750 answers) and the scopes
each route needs. No JWT library here: `api.auth_jwt` holds that, imported only with AUTH=jwt."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from fastapi import FastAPI, Request
from fastapi.openapi.models import HTTPBearer
from fastapi.params import Security
from fastapi.security import SecurityScopes
from fastapi.security.base import SecurityBase
from starlette.types import ASGIApp, Receive, Scope, Send

from adapters.errors import Unavailable
from api.errors import PROBLEM_JSON, Problem, problem_response, problem_type
from api.settings import OPEN_STAGES, Settings, SettingsError

REALM = "lambdarun"
SCHEME_NAME = "bearerAuth"  # the OpenAPI security scheme
USERS_READ = "users:read"
USERS_WRITE = "users:write"
JOBS_WRITE = "jobs:write"
JOBS_ADMIN = "jobs:admin"  # read any job, not only one's own
# Probes, the OpenAPI document and its pages, and the Pub/Sub push endpoint (its own OIDC
# check) stay outside: only the API proper asks for a token.
PROTECTED_PREFIX = "/v1/"
MAX_TOKEN_BYTES = 8192


@dataclass(frozen=True, slots=True)
class Principal:
    """Who the token speaks for: its `sub` and the scopes it grants."""

    subject: str
    scopes: frozenset[str]

    def has(self, scope: str) -> bool:
        return scope in self.scopes


class TokenRefused(Exception):
    """The bearer token is not acceptable. The message is a fixed phrase, safe to show (it goes
    into `error_description`, which allows no quotes or backslashes)."""


class Verifier(Protocol):
    """Turns a bearer token into a principal."""

    async def verify(self, token: str) -> Principal:
        """The token's principal; `TokenRefused`, or `Unavailable` when the keys to check it
        cannot be fetched."""


def challenge(
    error: str | None = None, description: str | None = None, scope: str | None = None
) -> str:
    """A `WWW-Authenticate` value (RFC 6750 section 3). With no token sent, no error code."""
    params = {"realm": REALM, "error": error, "error_description": description, "scope": scope}
    return "Bearer " + ", ".join(f'{name}="{value}"' for name, value in params.items() if value)


def unauthenticated() -> Problem:
    return Problem(
        401,
        "This API needs an OAuth2 access token: Authorization: Bearer <token>.",
        type=problem_type("unauthenticated"),
        headers={"WWW-Authenticate": challenge()},
    )


def invalid_token(description: str) -> Problem:
    return Problem(
        401,
        f"The bearer token was refused: {description}.",
        type=problem_type("invalid-token"),
        headers={"WWW-Authenticate": challenge("invalid_token", description)},
    )


def insufficient_scope(needed: tuple[str, ...]) -> Problem:
    wanted = " ".join(needed)
    return Problem(
        403,
        f"The token lacks a scope this needs: {wanted}.",
        type=problem_type("insufficient-scope"),
        headers={
            "WWW-Authenticate": challenge("insufficient_scope", "scope missing", scope=wanted)
        },
        required_scopes=list(needed),
    )


def keys_unavailable(exc: Unavailable) -> Problem:
    # The same shape as every other 503 (api/errors.py): the issuer's key set is a backing
    # service like the store.
    return Problem(
        503,
        f"A backing service is unavailable ({exc.component}); retry shortly.",
        type=problem_type("unavailable"),
        headers={"Retry-After": "5"},
        component=exc.component,
    )


def bearer_token(scope: Scope) -> str | None:
    """The token of `Authorization: Bearer <token>`, or None when no bearer token was sent;
    `TokenRefused` when one was, but not in the b64token form."""
    values: list[bytes] = [value for name, value in scope["headers"] if name == b"authorization"]
    if not values:
        return None
    kind, _, credentials = values[0].decode("latin-1").strip().partition(" ")
    if kind.lower() != "bearer":
        return None  # another scheme: as good as none for this API
    token = credentials.strip()
    if len(values) > 1 or not token or len(token) > MAX_TOKEN_BYTES or not _b64token(token):
        raise TokenRefused("malformed token")
    return token


def _b64token(token: str) -> bool:
    # RFC 6750 section 2.1: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
    body = token.rstrip("=")
    return bool(body) and all(c.isascii() and (c.isalnum() or c in "-._~+/") for c in body)


class AuthMiddleware:
    """Checks the bearer token of every request under /v1 before anything else reads it, and
    puts the principal in `scope["state"]`: `principal` for the routes, `subject` for the rate
    limiter, which runs after this and counts per subject. A request without a valid token
    goes no further (401); one with a token whose keys cannot be fetched gets 503."""

    def __init__(self, app: ASGIApp, *, verifier: Verifier) -> None:
        self.app = app
        self.verifier = verifier

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PROTECTED_PREFIX):
            await self.app(scope, receive, send)
            return
        try:
            token = bearer_token(scope)
            if token is None:
                raise unauthenticated()
            principal = await self.verifier.verify(token)
        except TokenRefused as exc:
            await self._answer(invalid_token(str(exc)), scope, receive, send)
            return
        except Unavailable as exc:
            await self._answer(keys_unavailable(exc), scope, receive, send)
            return
        except Problem as problem:
            await self._answer(problem, scope, receive, send)
            return
        state = scope.setdefault("state", {})
        state["principal"] = principal
        state["subject"] = principal.subject
        await self.app(scope, receive, send)

    @staticmethod
    async def _answer(problem: Problem, scope: Scope, receive: Receive, send: Send) -> None:
        await problem_response(problem, Request(scope))(scope, receive, send)


class BearerToken(SecurityBase):
    """The dependency behind `require()`: the token must grant every scope the route asks for
    (`Security(..., scopes=...)`, which also puts them in OpenAPI). Returns the principal, or
    None when AUTH=off, where everyone may do everything."""

    def __init__(self) -> None:
        self.model = HTTPBearer(bearerFormat="JWT", description="An OAuth2 access token (JWT).")
        self.scheme_name = SCHEME_NAME

    async def __call__(self, request: Request, needed: SecurityScopes) -> Principal | None:
        if request.app.state.runtime.settings.auth == "off":
            return None
        principal: Principal | None = request.scope.get("state", {}).get("principal")
        if principal is None:  # a route outside PROTECTED_PREFIX: no token was checked
            raise unauthenticated()
        if not all(principal.has(scope) for scope in needed.scopes):
            raise insufficient_scope(tuple(needed.scopes))
        return principal


bearer_token_dependency = BearerToken()


def require(*scopes: str) -> Security:
    """`dependencies=[require("users:read")]`, first in the list so that a caller without the
    scope learns nothing else; `require()` asks for a valid token and nothing more."""
    return Security(dependency=bearer_token_dependency, scopes=list(scopes))


def check_auth_allowed(settings: Settings) -> None:
    """AUTH=off serves everyone: refused at start-up on any stage but local and test."""
    if settings.auth == "off" and settings.stage not in OPEN_STAGES:
        raise SettingsError(
            f"invalid settings: AUTH: off is for STAGE {' or '.join(sorted(OPEN_STAGES))} only "
            f"(STAGE is {settings.stage!r}); set AUTH=jwt with JWT_JWKS_URL, JWT_ISSUER and "
            "JWT_AUDIENCE"
        )


def install_bearer_auth(app: FastAPI, settings: Settings) -> Verifier:
    """Add the token check; call it after adding the rate limiter, so that the check runs first.
    Imports the JWT library: only with AUTH=jwt."""
    from api.auth_jwt import build_verifier

    verifier = build_verifier(settings)
    app.add_middleware(AuthMiddleware, verifier=verifier)
    app.state.auth_verifier = verifier
    return verifier


# ---- OpenAPI -------------------------------------------------------------------------------


def document_auth(app: FastAPI, *, enabled: bool) -> None:
    """With AUTH=jwt, answer 401 and 403 on the operations that need a token; with AUTH=off,
    leave the bearer scheme out of the document, since nothing asks for a token."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            (_add_answers if enabled else _remove_scheme)(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _operations(schema: dict[str, Any]) -> list[dict[str, Any]]:
    items = schema.get("paths", {}).values()
    return [op for item in items for op in item.values() if isinstance(op, dict)]


def _add_answers(schema: dict[str, Any]) -> None:
    known = schema.get("components", {}).get("schemas", {})
    body = {"$ref": "#/components/schemas/ProblemDetail"} if "ProblemDetail" in known else {}
    problem: dict[str, Any] = {"content": {PROBLEM_JSON: {"schema": body}}}
    for operation in _operations(schema):
        scopes = [s for r in operation.get("security", ()) for s in r.get(SCHEME_NAME, ())]
        if not any(SCHEME_NAME in r for r in operation.get("security", ())):
            continue
        responses = operation.setdefault("responses", {})
        responses.setdefault("401", {"description": "No valid bearer token", **problem})
        if scopes:
            responses.setdefault("403", {"description": "A scope is missing", **problem})


def _remove_scheme(schema: dict[str, Any]) -> None:
    schemes = schema.get("components", {}).get("securitySchemes", {})
    schemes.pop(SCHEME_NAME, None)
    if not schemes:
        schema.get("components", {}).pop("securitySchemes", None)
    for operation in _operations(schema):
        kept = [r for r in operation.pop("security", ()) if SCHEME_NAME not in r]
        if kept:
            operation["security"] = kept
