"""The Lambda HTTP handler: every kind of HTTP event gets the responses the app gives over plain
HTTP, the lifespan runs once per execution environment, and other events get a clear error."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import httpx
import pytest
from fastapi import Response

from tests.support.lambda_events import (
    KINDS,
    LambdaContext,
    LambdaResponse,
    invoker,
    parse_response,
    sample,
)
from tests.support.lambda_module import lambda_module

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z?")
Send = Callable[..., LambdaResponse]


@pytest.fixture(scope="module")
def aws_http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    db = tmp_path_factory.mktemp("lambda") / "lambda.db"
    with lambda_module("handlers.aws_http", DATABASE_URL=f"sqlite:///{db}") as module:

        @module.app.get("/test/cookies-and-bytes", include_in_schema=False)
        async def cookies_and_bytes() -> Response:
            response = Response(bytes(range(256)), media_type="application/octet-stream")
            response.set_cookie("a", "1")
            response.set_cookie("b", "2")
            return response

        yield module


def direct(module: ModuleType) -> Send:
    """The same app called as plain ASGI on the environment's loop: the reference answers."""

    def send(
        method: str, url: str, *, headers: dict[str, str] | None = None, body: bytes = b""
    ) -> LambdaResponse:
        async def call() -> httpx.Response:
            transport = httpx.ASGITransport(app=module.app)
            async with httpx.AsyncClient(transport=transport, base_url="https://x") as client:
                return await client.request(method, url, headers=headers, content=body)

        response = module.environment.run(call())
        multi: dict[str, list[str]] = {}
        for name, value in response.headers.multi_items():
            multi.setdefault(name.lower(), []).append(value)
        return LambdaResponse(response.status_code, multi, response.content)

    return send


def scenario(send: Send, email: str, settle: Callable[[], None]) -> list[tuple[Any, ...]]:
    """A walk through every route and error; what a client would notice, ids and times masked.
    `settle` waits for background jobs, so both runs see the same versions."""
    rid = {"x-request-id": "parity-1"}
    js = {"content-type": "application/json", **rid}
    transcript: list[tuple[Any, ...]] = []

    def record(response: LambdaResponse) -> LambdaResponse:
        text = response.content.decode("utf-8", "replace")
        masked = STAMP.sub("<time>", UUID.sub("<id>", text)).replace(email, "<email>")
        if masked and "json" in (response.header("content-type") or ""):
            data = json.loads(masked)
            if isinstance(data, dict) and data.get("next_cursor"):
                data["next_cursor"] = "<cursor>"
            masked = json.dumps(data, sort_keys=True)
        keep = ("content-type", "etag", "allow", "retry-after", "x-request-id")
        headers = {k: response.header(k) for k in keep if response.header(k)}
        if not response.content:
            # Mangum labels every payload-2.0 response JSON, as API Gateway would; on a 204 or
            # 304 there is no body for the label to describe.
            headers.pop("content-type", None)
        location = response.header("location")
        transcript.append(
            (response.status_code, headers, location and UUID.sub("<id>", location), masked)
        )
        return response

    created = record(
        send(
            "POST",
            "/v1/users",
            headers=js,
            body=json.dumps({"email": email, "name": "Ada"}).encode(),
        )
    )
    user_url = created.header("location")
    assert user_url
    settle()
    record(
        send(
            "POST",
            "/v1/users",
            headers=js,
            body=json.dumps({"email": email, "name": "Ada"}).encode(),
        )
    )
    record(send("POST", "/v1/users", headers=js, body=b"{not json"))
    record(send("POST", "/v1/users", headers=js, body=b'{"email": 1}'))
    record(send("POST", "/v1/users", headers={"content-type": "text/plain", **rid}, body=b"x"))
    tag = record(send("GET", user_url, headers=rid)).header("etag")
    record(send("GET", user_url, headers={"if-none-match": tag or "", **rid}))
    record(send("GET", "/v1/users/not-an-id", headers=rid))
    record(send("PATCH", user_url, headers={"if-match": '"v99"', **js}, body=b'{"name": "B"}'))
    record(send("GET", "/v1/users?limit=1&cursor=tampered", headers=rid))
    record(send("GET", "/v1/users?limit=0", headers=rid))
    record(send("POST", "/v1/jobs", headers=js, body=b'{"task": "nope"}'))
    job = record(
        send(
            "POST",
            "/v1/jobs",
            headers=js,
            body=b'{"task": "users.welcome", "payload": {"user_id": "u"}}',
        )
    )
    record(send("GET", job.header("location") or "", headers=rid))
    record(send("DELETE", "/v1/users", headers=rid))
    record(send("GET", "/healthz", headers=rid))
    record(send("GET", "/readyz", headers=rid))
    record(send("DELETE", user_url, headers=rid))
    record(send("GET", user_url, headers=rid))
    return transcript


@pytest.mark.parametrize("kind", KINDS)
def test_every_event_kind_answers_as_the_app_does(aws_http: ModuleType, kind: str) -> None:
    queue = aws_http.app.state.runtime.adapters.queue

    def settle() -> None:
        aws_http.environment.run(queue.join())

    through_lambda = scenario(invoker(kind, aws_http.handler), f"{kind}@example.com", settle)
    reference = scenario(direct(aws_http), f"direct-{kind}@example.com", settle)
    assert through_lambda == reference
    statuses = [entry[0] for entry in through_lambda]
    assert statuses[:5] == [201, 409, 400, 422, 415]
    assert 304 in statuses
    assert 500 not in statuses


@pytest.mark.parametrize("kind", KINDS)
def test_cookies_and_binary_bodies_survive(aws_http: ModuleType, kind: str) -> None:
    response = invoker(kind, aws_http.handler)("GET", "/test/cookies-and-bytes")
    assert response.status_code == 200
    assert response.content == bytes(range(256))
    cookies = sorted(c.split(";")[0] for c in response.headers["set-cookie"])
    assert cookies == ["a=1", "b=2"]


@pytest.mark.parametrize(
    "name",
    [
        "http_v2_create_user.json",
        "http_v2_get_user.json",
        "http_v1_get_healthz.json",
        "alb_get_healthz.json",
        "function_url_get_healthz.json",
    ],
)
def test_the_sample_events_are_served(aws_http: ModuleType, name: str) -> None:
    response = aws_http.handler(sample(name), LambdaContext())
    assert response["statusCode"] in {200, 201, 404}
    assert not response.get("isBase64Encoded")  # JSON and problem+json stay readable text


def test_the_lifespan_runs_once_across_warm_invocations(aws_http: ModuleType) -> None:
    store = aws_http.app.state.runtime.adapters.store
    connection = store._db
    send = invoker("http_v2", aws_http.handler)
    for i in range(100):
        assert send("GET", "/readyz").status_code == 200, i
    assert aws_http.environment.starts == 1
    assert store._db is connection  # the same SQLite connection served every invocation


@pytest.mark.parametrize(
    "event",
    [{}, {"foo": 1}, sample("sqs_job.json"), {"Records": []}, {"version": "2.0"}],
)
def test_an_event_that_is_not_http_gets_a_clear_error(
    aws_http: ModuleType, event: dict[str, Any]
) -> None:
    with pytest.raises(aws_http.UnsupportedEvent, match="expected an API Gateway"):
        aws_http.handler(event, LambdaContext())


def test_api_gateways_request_id_names_the_request_when_the_client_sends_none(
    aws_http: ModuleType,
) -> None:
    event = sample("http_v1_get_healthz.json")
    response = parse_response("rest_v1", aws_http.handler(event, LambdaContext()))
    assert response.header("x-request-id") == event["requestContext"]["requestId"]


def request_metrics(out: str) -> list[dict[str, Any]]:
    """The EMF lines of `http.server.request.duration` in what the function printed."""
    return [
        line
        for line in map(json.loads, (x for x in out.splitlines() if x.startswith('{"_aws"')))
        if "http.server.request.duration" in line
    ]


def test_each_request_is_an_emf_metric_per_route_template_never_per_path(
    aws_http: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    send = invoker("http_v2", aws_http.handler)
    capsys.readouterr()
    assert send("GET", "/v1/users/01a24265-afa2-70e6-9b63-90ece872e377").status_code == 404
    assert send("GET", "/no/such/page/4711").status_code == 404
    [user, unmatched] = request_metrics(capsys.readouterr().out)
    assert user["http.route"] == "/v1/users/{user_id}"
    assert user["http.request.method"] == "GET"
    assert user["http.response.status_code"] == "404"
    assert user["http.server.request.duration"][0] > 0
    [directive] = user["_aws"]["CloudWatchMetrics"]
    assert directive["Metrics"] == [{"Name": "http.server.request.duration", "Unit": "Seconds"}]
    assert unmatched["http.route"] == "unmatched"  # the raw path never becomes a dimension
