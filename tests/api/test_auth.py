"""AUTH=jwt: bearer tokens checked against a JWKS served over HTTP on 127.0.0.1, with keys made
for the run; RFC 6750 answers as problem+json; scopes per route; job ownership; AUTH=off."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from adapters.records import JobMessage
from api.app import create_app
from api.auth_jwt import JwksCache
from api.settings import Settings, SettingsError, load_settings
from tests.api.conftest import runtime_of
from tests.support.jwks import (
    AUDIENCE,
    ISSUER,
    JwksServer,
    SigningKey,
    b64url,
    claims,
    hmac_token,
    running_jwks,
    token,
    unsigned_token,
)

PROBLEM = "application/problem+json"
ROOT = Path(__file__).resolve().parents[2]
EVERYTHING = "users:read users:write jobs:write"
MISSING = 'Bearer realm="lambdarun"'
USER = {"email": "c@example.com", "name": "C"}
SOME_ID = "0190a5c4-6a1c-7cc2-8bd2-5d3c2f4a1b90"
WELCOME = {"task": "users.welcome", "payload": {"user_id": SOME_ID}}


class Clock:
    """The key cache's monotonic clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="module")
def rsa_key() -> SigningKey:
    return SigningKey.rsa("rsa-1")


@pytest.fixture(scope="module")
def ec_key() -> SigningKey:
    return SigningKey.ec("ec-1")


@pytest.fixture(scope="module")
def new_key() -> SigningKey:
    """A key the issuer has not published (yet)."""
    return SigningKey.rsa("rsa-2")


@pytest.fixture
def jwks(rsa_key: SigningKey, ec_key: SigningKey) -> Iterator[JwksServer]:
    with running_jwks(rsa_key, ec_key) as server:
        yield server


@pytest.fixture
def clock() -> Clock:
    return Clock()


def jwt_settings(tmp_path: Path, jwks_url: str, **more: Any) -> Settings:
    return load_settings(
        database_url=f"sqlite:///{tmp_path}/auth.db",
        auth="jwt",
        jwt_jwks_url=jwks_url,
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
        **more,
    )


def key_cache(app: FastAPI) -> JwksCache:
    cache: JwksCache = app.state.auth_verifier.keys
    return cache


@asynccontextmanager
async def serving(settings: Settings, clock: Clock) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    key_cache(application).clock = clock
    async with application.router.lifespan_context(application):
        yield application


def client_of(app: FastAPI, address: str = "198.51.100.7") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@pytest.fixture
async def auth_app(tmp_path: Path, jwks: JwksServer, clock: Clock) -> AsyncIterator[FastAPI]:
    async with serving(jwt_settings(tmp_path, jwks.url), clock) as application:
        yield application


@pytest.fixture
async def http(auth_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(auth_app) as client:
        yield client


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def assert_refused(response: httpx.Response, description: str) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["www-authenticate"] == (
        f'Bearer realm="lambdarun", error="invalid_token", error_description="{description}"'
    )
    body = response.json()
    assert body["status"] == 401
    assert body["type"] == "urn:lambdarun:problem:invalid-token"
    assert description in body["detail"]


# ---- tokens that pass -------------------------------------------------------------------------


@pytest.mark.parametrize("key_name", ["rsa_key", "ec_key"])
async def test_a_valid_token_passes(
    http: httpx.AsyncClient, request: pytest.FixtureRequest, key_name: str
) -> None:
    key: SigningKey = request.getfixturevalue(key_name)
    response = await http.get("/v1/users", headers=bearer(token(key, claims(scope="users:read"))))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "grant",
    [
        {"scope": "openid users:read"},
        {"scp": ["users:read", "other"]},
        {"scp": "users:read other"},  # Entra ID's form
        {"scope": "other", "scp": ["users:read"]},
    ],
)
async def test_scope_and_scp_are_both_read(
    http: httpx.AsyncClient, rsa_key: SigningKey, grant: dict[str, Any]
) -> None:
    response = await http.get("/v1/users", headers=bearer(token(rsa_key, claims(**grant))))
    assert response.status_code == 200, response.text


async def test_clock_skew_within_the_leeway_is_forgiven(
    http: httpx.AsyncClient, rsa_key: SigningKey
) -> None:
    now = int(time.time())
    skewed = claims(scope="users:read", exp=now - 10, nbf=now + 10, iat=now + 10)
    response = await http.get("/v1/users", headers=bearer(token(rsa_key, skewed)))
    assert response.status_code == 200, response.text


async def test_an_audience_list_holding_ours_passes(
    http: httpx.AsyncClient, rsa_key: SigningKey
) -> None:
    grant = claims(scope="users:read", aud=["https://other.example", AUDIENCE])
    response = await http.get("/v1/users", headers=bearer(token(rsa_key, grant)))
    assert response.status_code == 200, response.text


# ---- tokens that do not -----------------------------------------------------------------------


async def test_no_token_is_401_without_an_error_code(http: httpx.AsyncClient) -> None:
    for headers in ({}, {"Authorization": "Basic YWRhOnNlY3JldA=="}):
        response = await http.get("/v1/users", headers=headers)
        assert response.status_code == 401
        assert response.headers["content-type"] == PROBLEM
        # RFC 6750 section 3.1: no error code when the request carried no bearer token.
        assert response.headers["www-authenticate"] == MISSING
        assert response.json()["type"] == "urn:lambdarun:problem:unauthenticated"
        assert response.json()["request_id"] == response.headers["x-request-id"]
    # Nothing behind the check runs: no body parsing, no 404 for unknown paths.
    assert (await http.post("/v1/users", content=b"{nope")).status_code == 401
    assert (await http.get("/v1/nothing-here")).status_code == 401


@pytest.mark.parametrize(
    "value",
    ["", "not-a-jwt", "a.b.c", "e30.e30.e30", "two tokens", "émoji", "x" * 9000],
)
async def test_a_malformed_token_is_401_invalid_token(http: httpx.AsyncClient, value: str) -> None:
    response = await http.get("/v1/users", headers=[("Authorization", f"Bearer {value}".encode())])
    assert_refused(response, "malformed token")


def now_plus(seconds: int) -> int:
    return int(time.time()) + seconds


@pytest.mark.parametrize(
    ("changes", "description"),
    [
        ({"exp": now_plus(-120)}, "expired"),
        ({"nbf": now_plus(120)}, "not yet valid"),
        ({"iat": now_plus(3600)}, "issued in the future"),
        ({"iss": "https://evil.example/"}, "wrong issuer"),
        ({"aud": "https://other.example"}, "wrong audience"),
        ({"aud": ["https://a.example", "https://b.example"]}, "wrong audience"),
        ({"exp": None}, "missing claim exp"),
        ({"sub": None}, "missing claim sub"),
        ({"sub": ""}, "no subject"),
        ({"iss": None}, "missing claim iss"),
    ],
)
async def test_claims_are_checked(
    http: httpx.AsyncClient, rsa_key: SigningKey, changes: dict[str, Any], description: str
) -> None:
    grant = claims(scope="users:read", **changes)
    response = await http.get("/v1/users", headers=bearer(token(rsa_key, grant)))
    assert_refused(response, description)


async def test_alg_none_is_refused_without_fetching_keys(
    http: httpx.AsyncClient, jwks: JwksServer, rsa_key: SigningKey
) -> None:
    forged = unsigned_token(claims(scope=EVERYTHING), kid=rsa_key.kid)
    assert_refused(await http.get("/v1/users", headers=bearer(forged)), "algorithm not accepted")
    assert jwks.requests == 0


async def test_hs256_signed_with_the_public_key_is_refused(
    http: httpx.AsyncClient, jwks: JwksServer, rsa_key: SigningKey
) -> None:
    """The classic confusion: the issuer's public key (anyone can fetch it) as an HMAC secret."""
    for secret in (rsa_key.public_pem(), json.dumps(rsa_key.public_jwk()).encode()):
        forged = hmac_token(secret, claims(scope=EVERYTHING), kid=rsa_key.kid)
        response = await http.get("/v1/users", headers=bearer(forged))
        assert_refused(response, "algorithm not accepted")
    assert jwks.requests == 0


async def test_an_algorithm_outside_the_allow_list_is_refused(
    tmp_path: Path, jwks: JwksServer, clock: Clock, ec_key: SigningKey
) -> None:
    settings = jwt_settings(tmp_path, jwks.url, jwt_algorithms="RS256")
    async with serving(settings, clock) as app, client_of(app) as client:
        good_key_wrong_alg = token(ec_key, claims(scope="users:read"))
        response = await client.get("/v1/users", headers=bearer(good_key_wrong_alg))
    assert_refused(response, "algorithm not accepted")


async def test_a_key_is_used_only_with_its_own_algorithm(
    http: httpx.AsyncClient, rsa_key: SigningKey, ec_key: SigningKey
) -> None:
    """A token naming the EC key but claiming RS256 (both allowed) does not verify."""
    signing_input = token(rsa_key, claims(scope="users:read"), header={"kid": ec_key.kid})
    response = await http.get("/v1/users", headers=bearer(signing_input))
    assert_refused(response, "signature not verified")


async def test_a_tampered_token_is_refused(http: httpx.AsyncClient, rsa_key: SigningKey) -> None:
    header, payload, signature = token(rsa_key, claims("alice", scope="users:read")).split(".")
    as_admin = b64url(json.dumps(claims("admin", scope=EVERYTHING + " jobs:admin")).encode())
    flipped = ("A" if signature[5] != "A" else "B").join((signature[:5], signature[6:]))
    for forged in (f"{header}.{as_admin}.{signature}", f"{header}.{payload}.{flipped}"):
        response = await http.get("/v1/users", headers=bearer(forged))
        assert_refused(response, "signature not verified")


async def test_a_token_signed_by_a_key_the_issuer_never_published_is_refused(
    http: httpx.AsyncClient, rsa_key: SigningKey
) -> None:
    impostor = SigningKey.ec(rsa_key.kid)  # claims an existing kid
    response = await http.get(
        "/v1/users", headers=bearer(token(impostor, claims(scope="users:read")))
    )
    assert_refused(response, "signature not verified")


# ---- scopes -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body", "needed"),
    [
        ("GET", "/v1/users", None, "users:read"),
        ("GET", f"/v1/users/{SOME_ID}", None, "users:read"),
        ("POST", "/v1/users", {"email": "a@example.com", "name": "A"}, "users:write"),
        ("PATCH", f"/v1/users/{SOME_ID}", {"name": "B"}, "users:write"),
        ("DELETE", f"/v1/users/{SOME_ID}", None, "users:write"),
        ("POST", "/v1/jobs", {"task": "users.welcome", "payload": {}}, "jobs:write"),
    ],
)
async def test_a_missing_scope_is_403_insufficient_scope(
    http: httpx.AsyncClient,
    rsa_key: SigningKey,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    needed: str,
) -> None:
    others = " ".join(s for s in (*EVERYTHING.split(), "jobs:admin") if s != needed)
    response = await http.request(
        method, path, json=body, headers=bearer(token(rsa_key, claims(scope=others)))
    )
    assert response.status_code == 403, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["www-authenticate"] == (
        'Bearer realm="lambdarun", error="insufficient_scope", '
        f'error_description="scope missing", scope="{needed}"'
    )
    assert response.json()["required_scopes"] == [needed]


async def test_the_scope_check_comes_before_the_body_is_judged(
    http: httpx.AsyncClient, rsa_key: SigningKey
) -> None:
    # (Only JSON that does not parse is refused earlier, by FastAPI, before any dependency.)
    reader = bearer(token(rsa_key, claims(scope="users:read")))
    for content, kind in ((b'{"email": 5}', "application/json"), (b"x", "text/plain")):
        response = await http.post(
            "/v1/users", content=content, headers={**reader, "Content-Type": kind}
        )
        assert response.status_code == 403


async def test_users_can_be_written_and_read_with_their_scopes(
    http: httpx.AsyncClient, rsa_key: SigningKey
) -> None:
    writer = bearer(token(rsa_key, claims(scope="users:write")))
    created = await http.post("/v1/users", json=USER, headers=writer)
    assert created.status_code == 201, created.text
    reader = bearer(token(rsa_key, claims(scope="users:read")))
    assert (await http.get(created.headers["location"], headers=reader)).status_code == 200


# ---- job ownership ----------------------------------------------------------------------------


async def submit(http: httpx.AsyncClient, key: SigningKey, subject: str) -> str:
    response = await http.post(
        "/v1/jobs",
        json=WELCOME,
        headers=bearer(token(key, claims(subject, scope="jobs:write"))),
    )
    assert response.status_code == 202, response.text
    return str(response.headers["location"])


async def test_a_job_is_read_by_its_submitter_or_an_admin_only(
    auth_app: FastAPI, http: httpx.AsyncClient, rsa_key: SigningKey
) -> None:
    location = await submit(http, rsa_key, "alice")
    job_id = location.rsplit("/", 1)[1]
    stored = await runtime_of(auth_app).adapters.store.get_job(job_id)
    assert stored is not None
    assert stored.owner == "alice"

    def as_(subject: str, scope: str = "") -> dict[str, str]:
        return bearer(token(rsa_key, claims(subject, scope=scope)))

    assert (await http.get(location, headers=as_("alice"))).status_code == 200
    mallory = await http.get(location, headers=as_("mallory", "jobs:write users:read"))
    never = await http.get("/v1/jobs/0190a5c4-6a1c-7cc2-8bd2-5d3c2f4a1b91", headers=as_("mallory"))
    # Someone else's job answers exactly as a job that does not exist.
    assert mallory.status_code == never.status_code == 404
    assert mallory.json()["detail"] == f"job {job_id} does not exist"
    assert (await http.get(location, headers=as_("root", "jobs:admin"))).status_code == 200
    assert (await http.get(location)).status_code == 401


async def test_the_welcome_job_belongs_to_whoever_created_the_user(
    auth_app: FastAPI,
    http: httpx.AsyncClient,
    rsa_key: SigningKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runtime = runtime_of(auth_app)
    sent: list[JobMessage] = []
    send = runtime.adapters.queue.send

    async def recording(message: JobMessage) -> None:
        sent.append(message)
        await send(message)

    monkeypatch.setattr(runtime.adapters.queue, "send", recording)
    writer = bearer(token(rsa_key, claims("carol", scope="users:write")))
    created = await http.post("/v1/users", json=USER, headers=writer)
    assert created.status_code == 201, created.text
    [welcome] = sent
    job = await runtime.adapters.store.get_job(welcome.job_id)
    assert job is not None
    assert (job.task, job.owner) == ("users.welcome", "carol")


# ---- the rate limiter counts per subject ------------------------------------------------------


async def test_the_rate_limiter_counts_subjects_apart(
    tmp_path: Path, jwks: JwksServer, clock: Clock, rsa_key: SigningKey
) -> None:
    settings = jwt_settings(tmp_path, jwks.url, rate_limit="2/minute")
    async with serving(settings, clock) as app, client_of(app, "203.0.113.9") as client:
        alice = bearer(token(rsa_key, claims("alice", scope="users:read")))
        bob = bearer(token(rsa_key, claims("bob", scope="users:read")))
        first = [(await client.get("/v1/users", headers=alice)).status_code for _ in range(3)]
        # Same address, another subject: a count of its own.
        second = [(await client.get("/v1/users", headers=bob)).status_code for _ in range(3)]
    assert first == [200, 200, 429]
    assert second == [200, 200, 429]


# ---- the key set: cached, refreshed on rotation, rate limited, and its outages ------------------


async def test_keys_are_fetched_once_and_cached(
    http: httpx.AsyncClient, jwks: JwksServer, rsa_key: SigningKey, ec_key: SigningKey
) -> None:
    for key in (rsa_key, ec_key, rsa_key, ec_key):
        grant = token(key, claims(scope="users:read"))
        assert (await http.get("/v1/users", headers=bearer(grant))).status_code == 200
    assert jwks.requests == 1


async def test_an_unknown_kid_then_a_rotation_is_picked_up_without_a_restart(
    http: httpx.AsyncClient,
    jwks: JwksServer,
    clock: Clock,
    rsa_key: SigningKey,
    new_key: SigningKey,
) -> None:
    rotated = bearer(token(new_key, claims(scope="users:read")))
    assert_refused(await http.get("/v1/users", headers=rotated), "unknown signing key")
    assert jwks.requests == 1

    jwks.publish(rsa_key, new_key)  # the issuer rotates
    clock.advance(31)  # past the refresh limit: the unknown kid fetches again
    assert (await http.get("/v1/users", headers=rotated)).status_code == 200
    assert jwks.requests == 2
    old = bearer(token(rsa_key, claims(scope="users:read")))
    assert (await http.get("/v1/users", headers=old)).status_code == 200
    assert jwks.requests == 2


async def test_a_flood_of_unknown_kids_fetches_at_most_once_per_interval(
    http: httpx.AsyncClient, jwks: JwksServer, clock: Clock, rsa_key: SigningKey
) -> None:
    good = bearer(token(rsa_key, claims(scope="users:read")))
    assert (await http.get("/v1/users", headers=good)).status_code == 200
    clock.advance(31)
    bogus = [
        bearer(token(rsa_key, claims(scope="users:read"), header={"kid": f"bogus-{i}"}))
        for i in range(30)
    ]
    answers = await asyncio.gather(*(http.get("/v1/users", headers=h) for h in bogus))
    assert {a.status_code for a in answers} == {401}
    assert jwks.requests == 2  # the first fill, then one refresh for all thirty
    clock.advance(10)
    assert (await http.get("/v1/users", headers=bogus[0])).status_code == 401
    assert jwks.requests == 2
    clock.advance(25)
    assert (await http.get("/v1/users", headers=bogus[0])).status_code == 401
    assert jwks.requests == 3


async def test_concurrent_requests_share_one_fetch(
    http: httpx.AsyncClient, jwks: JwksServer, rsa_key: SigningKey
) -> None:
    good = bearer(token(rsa_key, claims(scope="users:read")))
    answers = await asyncio.gather(*(http.get("/v1/users", headers=good) for _ in range(20)))
    assert {a.status_code for a in answers} == {200}
    assert jwks.requests == 1


async def test_the_jwks_down_is_503_for_an_uncached_kid_and_cached_keys_still_serve(
    http: httpx.AsyncClient,
    jwks: JwksServer,
    clock: Clock,
    rsa_key: SigningKey,
    new_key: SigningKey,
) -> None:
    known = bearer(token(rsa_key, claims(scope="users:read")))
    assert (await http.get("/v1/users", headers=known)).status_code == 200
    jwks.stop()
    clock.advance(31)
    unknown = bearer(token(new_key, claims(scope="users:read")))
    down = await http.get("/v1/users", headers=unknown)
    assert down.status_code == 503, down.text
    assert down.headers["content-type"] == PROBLEM
    assert down.headers["retry-after"]
    assert down.json()["component"] == "jwks"
    assert (await http.get("/v1/users", headers=known)).status_code == 200
    clock.advance(3600)  # the keys are now old: fetching fails, so they are still used
    assert (await http.get("/v1/users", headers=known)).status_code == 200


NESTED = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize(
    "answer",
    [
        b"this is not HTTP\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(NESTED)}\r\n\r\n".encode()
        + NESTED,
        b'HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{"keys":[',
    ],
    ids=["not-http", "nested-past-the-parser", "truncated-json"],
)
async def test_a_jwks_answering_garbage_is_an_outage_and_recovery_is_quick(
    http: httpx.AsyncClient, jwks: JwksServer, clock: Clock, rsa_key: SigningKey, answer: bytes
) -> None:
    """However the JWKS fails to read, a valid token whose key is not cached gets 503 (fail
    closed, retry soon), never 500, and never 401 "unknown key" once the issuer is back."""
    good = bearer(token(rsa_key, claims(scope="users:read")))
    jwks.misbehave(answer)
    outage = await http.get("/v1/users", headers=good)
    assert outage.status_code == 503, outage.text
    assert outage.headers["content-type"] == PROBLEM
    assert (await http.get("/v1/users", headers=good)).status_code == 503  # still no keys
    jwks.publish(*jwks.keys)  # the issuer answers properly again
    clock.advance(2)  # the retry after a failure: seconds, not the 30 s of a refresh
    assert (await http.get("/v1/users", headers=good)).status_code == 200


async def test_an_issuer_unreachable_from_the_start_is_503(
    tmp_path: Path, clock: Clock, rsa_key: SigningKey
) -> None:
    with running_jwks(rsa_key) as server:
        url = server.url
    async with serving(jwt_settings(tmp_path, url), clock) as app, client_of(app) as client:
        response = await client.get(
            "/v1/users", headers=bearer(token(rsa_key, claims(scope="users:read")))
        )
    assert response.status_code == 503
    assert response.headers["content-type"] == PROBLEM


async def test_old_keys_are_fetched_again_so_a_withdrawn_key_stops_working(
    http: httpx.AsyncClient,
    jwks: JwksServer,
    clock: Clock,
    rsa_key: SigningKey,
    new_key: SigningKey,
) -> None:
    known = bearer(token(rsa_key, claims(scope="users:read")))
    assert (await http.get("/v1/users", headers=known)).status_code == 200
    clock.advance(3601)
    assert (await http.get("/v1/users", headers=known)).status_code == 200
    assert jwks.requests == 2
    jwks.publish(new_key)  # the issuer withdrew rsa-1
    clock.advance(3601)
    assert_refused(await http.get("/v1/users", headers=known), "unknown signing key")


# ---- what stays open, and OpenAPI -------------------------------------------------------------


async def test_probes_and_docs_need_no_token(http: httpx.AsyncClient) -> None:
    for path in ("/healthz", "/readyz", "/openapi.json", "/docs"):
        assert (await http.get(path)).status_code == 200, path
        assert (await http.get(path, headers=bearer("garbage"))).status_code == 200, path


async def test_openapi_declares_the_bearer_scheme_and_each_operations_scopes(
    http: httpx.AsyncClient,
) -> None:
    document = (await http.get("/openapi.json")).json()
    scheme = document["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"], scheme["bearerFormat"]) == ("http", "bearer", "JWT")
    paths = document["paths"]
    assert paths["/v1/users"]["get"]["security"] == [{"bearerAuth": ["users:read"]}]
    assert paths["/v1/users"]["post"]["security"] == [{"bearerAuth": ["users:write"]}]
    assert paths["/v1/jobs"]["post"]["security"] == [{"bearerAuth": ["jobs:write"]}]
    assert paths["/v1/jobs/{job_id}"]["get"]["security"] == [{"bearerAuth": []}]
    assert {"401", "403"} <= set(paths["/v1/users"]["get"]["responses"])
    assert "403" not in paths["/v1/jobs/{job_id}"]["get"]["responses"]
    assert "security" not in paths["/healthz"]["get"]


# ---- AUTH=off ---------------------------------------------------------------------------------


async def test_with_auth_off_there_is_no_scheme_and_jobs_have_no_owner(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    document = (await client.get("/openapi.json")).json()
    assert "securitySchemes" not in document.get("components", {})
    assert all("security" not in op for item in document["paths"].values() for op in item.values())
    response = await client.post(
        "/v1/jobs",
        json=WELCOME,
        headers=bearer("ignored when AUTH=off"),
    )
    assert response.status_code == 202
    job_id = response.json()["id"]
    stored = await runtime_of(app).adapters.store.get_job(job_id)
    assert stored is not None
    assert stored.owner is None
    assert (await client.get(response.headers["location"])).status_code == 200


@pytest.mark.parametrize("stage", ["dev", "prod", "staging", "bench"])
def test_auth_off_is_refused_on_a_deployed_stage(stage: str) -> None:
    with pytest.raises(SettingsError, match="AUTH") as refused:
        create_app(load_settings(stage=stage))
    assert "STAGE" in str(refused.value)


@pytest.mark.parametrize("stage", ["local", "test"])
def test_auth_off_serves_locally_and_in_tests(stage: str) -> None:
    assert create_app(load_settings(stage=stage)).state.runtime.settings.auth == "off"


def test_auth_jwt_on_a_deployed_stage_starts(jwks: JwksServer, tmp_path: Path) -> None:
    create_app(
        jwt_settings(tmp_path, jwks.url, stage="prod", cursor_secret="s3cret-of-prod-" + "x" * 32)
    )


@pytest.mark.parametrize(
    ("environment", "named"),
    [
        ({"AUTH": "jwt"}, "JWT_JWKS_URL, JWT_ISSUER, JWT_AUDIENCE"),
        ({"AUTH": "jwt", "JWT_ISSUER": ISSUER, "JWT_AUDIENCE": ""}, "JWT_JWKS_URL, JWT_AUDIENCE"),
        ({"JWT_ALGORITHMS": "RS256,HS256"}, "JWT_ALGORITHMS"),
        ({"JWT_ALGORITHMS": "none"}, "JWT_ALGORITHMS"),
        ({"JWT_JWKS_URL": "http://issuer.example/jwks.json"}, "JWT_JWKS_URL"),
        ({"JWT_LEEWAY_SECONDS": "-1"}, "JWT_LEEWAY_SECONDS"),
        ({"AUTH": "maybe"}, "AUTH"),
    ],
)
def test_bad_auth_settings_are_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], named: str
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=named):
        load_settings()


PROBE = """
import sys
at_startup = set(sys.modules)
import asyncio, json
import httpx
from adapters.records import JobMessage
from api.app import create_app

app = create_app()

async def main():
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get("/v1/users")).status_code == 200
            assert (await client.get("/openapi.json")).status_code == 200

asyncio.run(main())
print(json.dumps(sorted(set(sys.modules) - at_startup)))
"""
JWT_LIBRARIES = {"joserfc", "jwt", "jose", "authlib", "cryptography"}


def test_auth_off_imports_no_jwt_library(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": f"sqlite:///{tmp_path}/probe.db"}
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    loaded = set(json.loads(result.stdout.strip().splitlines()[-1]))
    assert "api.auth" in loaded  # the probe really ran the app
    assert "api.auth_jwt" not in loaded
    assert {name.split(".")[0] for name in loaded}.isdisjoint(JWT_LIBRARIES)
