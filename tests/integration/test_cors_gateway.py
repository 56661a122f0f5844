"""CORS behind the HTTP API's JWT authorizer (docs/aws.md): a browser's preflight carries no token,
so with EnableApiJwtAuthorizer=true it must reach the app on a route the authorizer does not
guard, while every other request on $default still needs a token at the gateway; the origins
are a template parameter, and the function answers the preflight from them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from lambdarun_cli.local_template import Template
from tests.integration.test_iac_scans import sam_expanded
from tests.support.lambda_events import LambdaContext, LambdaResponse, build_event, parse_response
from tests.support.lambda_module import lambda_module

ROOT = Path(__file__).resolve().parents[2]
ORIGIN = "https://app.example.com"
ANY = "x-amazon-apigateway-any-method"
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", ANY}
FUNCTION = "${ApiFunctionAliaslive}"  # SAM's integrations invoke the live alias


def template(**overrides: str) -> Template:
    return Template(
        ROOT / "template.yaml", stack_name="lambdarun-dev", overrides={"Stage": "dev", **overrides}
    )


def routes(enabled: bool) -> dict[tuple[str, str], dict[str, Any]]:
    """The HTTP API's routes as SAM expands the template: (METHOD or ANY, path) -> operation,
    with the template's Fn::If decided as EnableApiJwtAuthorizer decides it."""
    flag = "true" if enabled else "false"
    assert template(EnableApiJwtAuthorizer=flag).condition("ApiJwtAuthorizerEnabled") is enabled
    (api,) = [
        r
        for r in sam_expanded(EnableApiJwtAuthorizer=flag)["Resources"].values()
        if r["Type"] == "AWS::ApiGatewayV2::Api"
    ]
    found = {}
    for path, written in api["Properties"]["Body"]["paths"].items():
        item = written
        if "Fn::If" in written:
            condition, yes, no = written["Fn::If"]
            assert condition == "ApiJwtAuthorizerEnabled"
            item = yes if enabled else no
        assert set(item) <= METHODS, item
        for method, operation in item.items():
            verb = "ANY" if method == ANY else method.upper()
            found[(verb, path)] = operation
    return found


def route_for(method: str, path: str, table: dict[tuple[str, str], Any]) -> tuple[str, str]:
    """The route API Gateway picks: a full path match, then the longest greedy {proxy+} match,
    a route of the request's own method before ANY, and $default when nothing matches."""

    def pick(candidates: list[tuple[str, str]]) -> tuple[str, str] | None:
        own = [c for c in candidates if c[0] == method]
        return (own or [c for c in candidates if c[0] == "ANY"] or [None])[0]

    exact = pick([key for key in table if key[1] == path])
    if exact:
        return exact
    greedy = sorted(
        (key for key in table if key[1].endswith("/{proxy+}")),
        key=lambda key: -len(key[1]),
    )
    for key in greedy:
        prefix = key[1].removesuffix("{proxy+}")
        if path.startswith(prefix) and len(path) > len(prefix):
            chosen = pick([k for k in greedy if k[1] == key[1]])
            if chosen:
                return chosen
    return ("ANY", "$default")


def integrates_with_the_function(operation: dict[str, Any]) -> bool:
    integration = operation["x-amazon-apigateway-integration"]
    return FUNCTION in integration["uri"]["Fn::Sub"] and integration["type"] == "aws_proxy"


PATHS = ["/", "/v1/users", "/v1/users/01890000-0000-7000-8000-000000000000", "/healthz", "/x/y/z"]


def test_a_preflight_on_any_path_skips_the_authorizer_and_everything_else_keeps_it() -> None:
    table = routes(enabled=True)
    (default,) = [op for (verb, path), op in table.items() if path == "$default"]
    assert default["security"] == [{"JwtAuthorizer": []}]
    for path in PATHS:
        preflight = table[route_for("OPTIONS", path, table)]
        assert "security" not in preflight, path
        assert integrates_with_the_function(preflight), path
        assert route_for("OPTIONS", path, table) != ("ANY", "$default")
    for method in ("GET", "POST", "PATCH", "DELETE"):
        for path in ("/v1/users", "/v1/users/01890000-0000-7000-8000-000000000000", "/"):
            assert route_for(method, path, table) == ("ANY", "$default"), (method, path)
    # Only OPTIONS and the probes' and docs' own GETs are open; no other route was added.
    open_routes = {key for key, op in table.items() if "security" not in op}
    assert {verb for verb, _ in open_routes} == {"GET", "OPTIONS"}
    assert {path for verb, path in open_routes if verb == "OPTIONS"} == {"/", "/{proxy+}"}


def test_without_the_authorizer_nothing_asks_for_a_token() -> None:
    table = routes(enabled=False)
    assert all("security" not in op for op in table.values())
    assert table[route_for("OPTIONS", "/v1/users", table)] is table[("OPTIONS", "/{proxy+}")]


def test_cors_origins_reaches_the_api_function() -> None:
    parameter = template().data["Parameters"]["CorsOrigins"]
    assert parameter["Default"] == ""  # no CORS unless a stage asks for it
    assert template().function("ApiFunction").environment["CORS_ORIGINS"] == ""
    given = template(CorsOrigins=f"{ORIGIN},https://admin.example.com")
    environment = given.function("ApiFunction").environment
    assert environment["CORS_ORIGINS"] == f"{ORIGIN},https://admin.example.com"
    assert "CORS_ORIGINS" not in given.function("WorkerFunction").environment
    expanded = sam_expanded(CorsOrigins=ORIGIN)["Resources"]["ApiFunction"]["Properties"]
    assert expanded["Environment"]["Variables"]["CORS_ORIGINS"] == {"Ref": "CorsOrigins"}


@pytest.fixture(scope="module")
def function(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """The API function as a stage with the gateway's authorizer deploys it: AUTH=jwt and the
    template's CorsOrigins in CORS_ORIGINS."""
    db = tmp_path_factory.mktemp("cors") / "cors.db"
    with lambda_module(
        "handlers.aws_http",
        DATABASE_URL=f"sqlite:///{db}",
        AUTH="jwt",
        JWT_ISSUER="https://issuer.example.com/",
        JWT_AUDIENCE="https://api.example.com",
        JWT_JWKS_URL="https://issuer.example.com/.well-known/jwks.json",
        CORS_ORIGINS=ORIGIN,
    ) as module:
        yield module


def preflight(module: ModuleType, path: str, origin: str) -> LambdaResponse:
    """An OPTIONS as the HTTP API delivers it on the OPTIONS /{proxy+} route: no Authorization."""
    headers = {
        "origin": origin,
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization,content-type,idempotency-key",
    }
    event = build_event("http_v2", "OPTIONS", path, headers, b"")
    event["routeKey"] = event["requestContext"]["routeKey"] = "OPTIONS /{proxy+}"
    event["pathParameters"] = {"proxy": path.lstrip("/")}
    return parse_response("http_v2", module.handler(event, LambdaContext()))


def test_the_function_answers_a_preflight_without_a_token(function: ModuleType) -> None:
    for path in ("/v1/users", "/v1/users/01890000-0000-7000-8000-000000000000"):
        allowed = preflight(function, path, ORIGIN)
        assert allowed.status_code == 200, allowed.content
        assert allowed.header("access-control-allow-origin") == ORIGIN
        assert "POST" in (allowed.header("access-control-allow-methods") or "")
        assert "authorization" in (allowed.header("access-control-allow-headers") or "").lower()
    refused = preflight(function, "/v1/users", "https://evil.example")
    assert refused.status_code == 400
    assert refused.header("access-control-allow-origin") is None
