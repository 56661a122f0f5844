"""Builders of the HTTP events Lambda receives, shaped like the samples in `events/`, and a client
that sends requests through a Lambda handler the way API Gateway, ALB or a Function URL would."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

ROOT = Path(__file__).resolve().parents[2]
KINDS = ("http_v2", "rest_v1", "alb", "function_url")


def sample(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((ROOT / "events" / name).read_text())
    return event


@dataclass
class LambdaContext:
    function_name: str = "lambdarun-test-ApiFunction"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:eu-west-1:123456789012:function:lambdarun-test"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def _body(body: bytes) -> tuple[str, bool]:
    try:
        return body.decode("utf-8"), False
    except UnicodeDecodeError:
        return base64.b64encode(body).decode(), True


def build_event(
    kind: str, method: str, url: str, headers: Mapping[str, str], body: bytes
) -> dict[str, Any]:
    parts = urlsplit(url)
    path, query = parts.path, parts.query
    text, encoded = _body(body)
    pairs = parse_qsl(query, keep_blank_values=True)
    lower = {k.lower(): v for k, v in headers.items()}
    if kind in {"http_v2", "function_url"}:
        event = sample(
            "http_v2_create_user.json" if kind == "http_v2" else "function_url_get_healthz.json"
        )
        event.update(rawPath=path, rawQueryString=query, body=text, isBase64Encoded=encoded)
        event["headers"] = {**{"host": event["headers"].get("host", "x")}, **lower}
        event["requestContext"]["http"].update(method=method, path=path)
        if pairs:
            event["queryStringParameters"] = dict(pairs)
        else:
            event.pop("queryStringParameters", None)
        return event
    event = sample("http_v1_get_healthz.json" if kind == "rest_v1" else "alb_get_healthz.json")
    event.update(path=path, httpMethod=method, body=text, isBase64Encoded=encoded)
    event["headers"] = dict(lower)
    event["multiValueHeaders"] = {k: [v] for k, v in lower.items()}
    event["queryStringParameters"] = dict(pairs) or None
    event["multiValueQueryStringParameters"] = {k: [v] for k, v in pairs} or None
    if kind == "rest_v1":
        event["requestContext"]["httpMethod"] = method
        event["requestContext"]["path"] = f"/{event['requestContext']['stage']}{path}"
    return event


@dataclass
class LambdaResponse:
    status_code: int
    headers: dict[str, list[str]]
    content: bytes

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None

    def json(self) -> Any:
        return json.loads(self.content)


def parse_response(kind: str, raw: Mapping[str, Any]) -> LambdaResponse:
    headers: dict[str, list[str]] = {}
    for name, value in (raw.get("headers") or {}).items():
        headers.setdefault(name.lower(), []).append(value)
    for name, values in (raw.get("multiValueHeaders") or {}).items():
        headers[name.lower()] = list(values)
    if raw.get("cookies"):
        headers["set-cookie"] = list(raw["cookies"])
    body = raw.get("body") or ""
    content = base64.b64decode(body) if raw.get("isBase64Encoded") else body.encode()
    return LambdaResponse(raw["statusCode"], headers, content)


def invoker(
    kind: str, handler: Callable[[dict[str, Any], Any], dict[str, Any]]
) -> Callable[..., LambdaResponse]:
    def send(
        method: str, url: str, *, headers: Mapping[str, str] | None = None, body: bytes = b""
    ) -> LambdaResponse:
        event = build_event(kind, method, url, headers or {}, body)
        return parse_response(kind, handler(event, LambdaContext()))

    return send
