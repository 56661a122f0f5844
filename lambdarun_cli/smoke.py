"""A deployed API answers as it should: the checks CI runs against a new Cloud Run revision
through its tag's URL before any traffic moves to it (.github/workflows/deploy-gcp.yml).

    python -m lambdarun_cli.smoke https://TAG---lambdarun-api-HASH-ew.a.run.app [--token-env VAR]

Standard library only (urllib), so CI runs it before any install. Every check runs, each gets a
line; the exit status is 0 when all passed, 1 when any failed (the last line names them), 2 on
a usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from email.message import Message
from urllib.parse import urlsplit

PROBLEM_JSON = "application/problem+json"
TITLE = "lambdarun"  # FastAPI(title=...) in api/app.py
PROTECTED = "/v1/users?limit=1"  # any /v1 route needs a bearer token; this one only reads


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Message
    body: bytes

    @property
    def media_type(self) -> str:
        return (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()

    def excerpt(self) -> str:
        return self.body[:200].decode("utf-8", errors="replace").replace("\n", " ")


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer of its own here: a probe that redirects is not a 200."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


def fetch(url: str, *, token: str | None = None, timeout: float) -> Answer:
    """GET `url`; any HTTP status is an Answer, a connection that fails raises OSError."""
    headers = {"Accept": "application/json", "User-Agent": "lambdarun-smoke"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 (scheme checked in main)
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return Answer(response.status, response.headers, response.read())
    except urllib.error.HTTPError as error:
        with error:
            return Answer(error.code, error.headers, error.read())


def expect_status(answer: Answer, status: int) -> str | None:
    if answer.status != status:
        return f"{answer.status}, expected {status}: {answer.excerpt()}"
    return None


def openapi_title(answer: Answer, title: str) -> str | None:
    if problem := expect_status(answer, 200):
        return problem
    try:
        found = json.loads(answer.body).get("info", {}).get("title")
    except (ValueError, AttributeError):
        return f"200 but not an OpenAPI document: {answer.excerpt()}"
    return None if found == title else f"200 but the title is {found!r}, expected {title!r}"


def refused_without_token(answer: Answer) -> str | None:
    if problem := expect_status(answer, 401):
        return problem
    if answer.media_type != PROBLEM_JSON:
        return f"401 as {answer.media_type or 'no content type'}, expected {PROBLEM_JSON}"
    return None


@dataclass(frozen=True)
class Check:
    name: str
    path: str
    judge: Callable[[Answer], str | None]
    with_token: bool = False


def checks(title: str, *, with_token: bool) -> list[Check]:
    found = [
        Check("GET /healthz answers 200", "/healthz", lambda a: expect_status(a, 200)),
        Check("GET /readyz answers 200", "/readyz", lambda a: expect_status(a, 200)),
        Check(
            f"GET /openapi.json answers 200 titled {title!r}",
            "/openapi.json",
            lambda a: openapi_title(a, title),
        ),
        Check(
            f"GET {PROTECTED} without a token answers 401 problem+json",
            PROTECTED,
            refused_without_token,
        ),
    ]
    if with_token:
        found.append(
            Check(
                f"GET {PROTECTED} with the token answers 200",
                PROTECTED,
                lambda a: expect_status(a, 200),
                with_token=True,
            )
        )
    return found


def run(base_url: str, *, title: str, token: str | None, timeout: float) -> list[str]:
    """Every check against `base_url`, a line each on stdout; the names of those that failed."""
    failed = []
    for check in checks(title, with_token=token is not None):
        try:
            answer = fetch(
                base_url + check.path, token=token if check.with_token else None, timeout=timeout
            )
        except OSError as exc:  # refused, unreachable, TLS, timed out
            problem: str | None = f"no answer: {getattr(exc, 'reason', exc)}"
        else:
            problem = check.judge(answer)
        print(f"{'ok  ' if problem is None else 'FAIL'}  {check.name}", end="")
        print(f": {problem}" if problem else "", flush=True)
        if problem is not None:
            failed.append(check.name)
    return failed


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] = os.environ) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lambdarun_cli.smoke",
        description=(
            "Smoke-test a deployed lambdarun API: GET /healthz and /readyz answer 200, "
            "/openapi.json answers 200 with the API's title, and a /v1 call without a token "
            "answers 401 problem+json (with --token-env, also 200 with the token). Every check "
            "runs; exit status 1 names those that failed."
        ),
    )
    parser.add_argument("url", help="the API's base URL, e.g. a Cloud Run revision tag's URL")
    parser.add_argument(
        "--token-env",
        metavar="VAR",
        help="an environment variable holding a bearer token (scope users:read): the /v1 call "
        "is then also made with it and must answer 200. Read from the environment so that it "
        "never appears in a command line.",
    )
    parser.add_argument("--title", default=TITLE, help=f"the OpenAPI title (default {TITLE!r})")
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds to wait for each answer (default 60: a cold start may come first)",
    )
    args = parser.parse_args(argv)

    parts = urlsplit(args.url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        parser.error(f"not an http(s) URL: {args.url!r}")
    token = None
    if args.token_env:
        token = environ.get(args.token_env, "").strip()
        if not token:
            parser.error(f"--token-env {args.token_env}: the variable is not set or empty")

    base_url = args.url.rstrip("/")
    print(f"smoke test of {base_url}", flush=True)
    failed = run(base_url, title=args.title, token=token, timeout=args.timeout)
    if failed:
        print(f"smoke: {len(failed)} check(s) failed: {'; '.join(failed)}", file=sys.stderr)
        return 1
    print("smoke: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
