"""`python -m lambdarun_cli.smoke URL`, the check CI runs against a Cloud Run revision before it
gets traffic, run as CI runs it (a subprocess) against the Dockerfile's own start command as a
real server: it passes a healthy API with AUTH=jwt, and fails, naming the check, one whose
/readyz is down, one that lets /v1 in without a token, one whose token is refused, and an
address where nothing answers."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.gcp_events import ROOT, ServerProcess, running, server_env, start_command
from tests.support.jwks import (
    AUDIENCE,
    ISSUER,
    JwksServer,
    SigningKey,
    claims,
    running_jwks,
    token,
)
from tests.support.net import free_port, refused_port

READYZ = "GET /readyz answers 200"
UNAUTHENTICATED = "GET /v1/users?limit=1 without a token answers 401 problem+json"
WITH_TOKEN = "GET /v1/users?limit=1 with the token answers 200"


def smoke(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lambdarun_cli.smoke", *args, "--timeout", "10"],
        cwd=ROOT,
        env={**server_env(0), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def failed(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The checks the smoke test says failed, from its FAIL lines."""
    return [
        line.removeprefix("FAIL  ").split(": ", 1)[0]
        for line in result.stdout.splitlines()
        if line.startswith("FAIL  ")
    ]


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.rsa("smoke-key")


@pytest.fixture
def issuer(key: SigningKey) -> Iterator[JwksServer]:
    with running_jwks(key) as jwks:
        yield jwks


def api(tmp_path: Path, **settings: str) -> Iterator[ServerProcess]:
    port = free_port()
    env = server_env(port, DATABASE_URL=f"sqlite:///{tmp_path}/api.db", **settings)
    with running(start_command(), port=port, env=env, log_path=tmp_path / "server.log") as server:
        yield server


@pytest.fixture
def healthy(tmp_path: Path, issuer: JwksServer) -> Iterator[ServerProcess]:
    """The API as it is deployed: bearer tokens required on /v1."""
    yield from api(
        tmp_path, AUTH="jwt", JWT_ISSUER=ISSUER, JWT_AUDIENCE=AUDIENCE, JWT_JWKS_URL=issuer.url
    )


def test_a_healthy_api_passes_every_check(healthy: ServerProcess) -> None:
    result = smoke(healthy.base_url + "/")
    assert result.returncode == 0, result.stdout + result.stderr
    assert failed(result) == []
    assert result.stdout.count("\nok  ") == 4
    assert "smoke: all checks passed" in result.stdout


def test_with_a_token_the_v1_call_must_also_succeed(
    healthy: ServerProcess, key: SigningKey
) -> None:
    good = token(key, claims(scope="users:read"))
    result = smoke(healthy.base_url, "--token-env", "SMOKE_TOKEN", SMOKE_TOKEN=good)
    assert result.returncode == 0, result.stdout + result.stderr
    assert WITH_TOKEN in result.stdout
    assert good not in result.stdout + result.stderr, "the token is never printed"
    # A token the API refuses (another issuer's key) fails that check alone.
    foreign = token(SigningKey.rsa("smoke-key"), claims(scope="users:read"))
    result = smoke(healthy.base_url, "--token-env", "SMOKE_TOKEN", SMOKE_TOKEN=foreign)
    assert result.returncode == 1
    assert failed(result) == [WITH_TOKEN]
    assert "401, expected 200" in result.stdout


def test_a_missing_token_variable_is_a_usage_error(healthy: ServerProcess) -> None:
    result = smoke(healthy.base_url, "--token-env", "NOT_SET_ANYWHERE")
    assert result.returncode == 2
    assert "NOT_SET_ANYWHERE" in result.stderr


@pytest.fixture
def not_ready(tmp_path: Path, issuer: JwksServer) -> Iterator[ServerProcess]:
    """Serving, but its queue (Pub/Sub, here an address that refuses) is out of reach: what a
    revision without its VPC or IAM binding looks like."""
    with refused_port() as dead:
        yield from api(
            tmp_path,
            AUTH="jwt",
            JWT_ISSUER=ISSUER,
            JWT_AUDIENCE=AUDIENCE,
            JWT_JWKS_URL=issuer.url,
            QUEUE_URL="pubsub://projects/lambdarun-test/topics/jobs",
            PUBSUB_EMULATOR_HOST=f"127.0.0.1:{dead}",
        )


def test_an_api_whose_readyz_fails_fails_naming_it(not_ready: ServerProcess) -> None:
    result = smoke(not_ready.base_url)
    assert result.returncode == 1
    assert failed(result) == [READYZ]
    assert "503, expected 200" in result.stdout
    assert READYZ in result.stderr.splitlines()[-1]


@pytest.fixture
def open_api(tmp_path: Path) -> Iterator[ServerProcess]:
    """No authentication at all (AUTH=off, refused outside local and test stages)."""
    yield from api(tmp_path, AUTH="off")


def test_an_api_that_lets_v1_in_without_a_token_fails(open_api: ServerProcess) -> None:
    result = smoke(open_api.base_url)
    assert result.returncode == 1
    assert failed(result) == [UNAUTHENTICATED]
    assert "200, expected 401" in result.stdout


def test_nothing_answering_fails_every_check() -> None:
    with refused_port() as port:
        result = smoke(f"http://127.0.0.1:{port}")
    assert result.returncode == 1
    assert len(failed(result)) == 4
    assert "no answer" in result.stdout


def test_the_help_says_what_it_checks_and_a_bad_url_is_refused() -> None:
    result = smoke("--help")
    assert result.returncode == 0
    for words in ("/healthz", "/readyz", "/openapi.json", "401", "--token-env"):
        assert words in result.stdout
    result = smoke("file:///etc/passwd")
    assert result.returncode == 2
    assert "not an http(s) URL" in result.stderr
