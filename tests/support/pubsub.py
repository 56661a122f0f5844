"""A fake Pub/Sub REST endpoint and GCE metadata server on a real local socket: `:publish`
records what arrives (decoded), `topics.get` and `:testIamPermissions` answer for known topics,
the metadata server hands out an access token and the project id. Faults can be queued."""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

PROJECT = "lambdarun-test"
TOPIC = f"projects/{PROJECT}/topics/jobs"
QUEUE_URL = f"pubsub://{TOPIC}"
TOKEN = "ya29.fake-access-token"
_TOPIC_PATH = re.compile(r"^/v1/(projects/[^/]+/topics/[^/:]+)(?::(publish|testIamPermissions))?$")


@dataclass(slots=True)
class Published:
    """One message as the fake received it: the decoded data and the attributes."""

    topic: str
    message_id: str
    data: bytes
    attributes: dict[str, str]
    publish_time: str


@dataclass(slots=True)
class Fault:
    status: int = 0  # answer this status; 0 = no answer at all (close the connection)
    delay: float = 0.0  # seconds to wait first


@dataclass
class FakePubSub:
    """State shared with the handler threads; tests read `published` and queue `faults`."""

    topics: set[str] = field(default_factory=lambda: {TOPIC})
    require_token: bool = False  # True: every API call must carry TOKEN, as Google's would
    published: list[Published] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    tokens_issued: int = 0
    token_lifetime: int = 3599
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def host(self) -> str:
        """host:port, as PUBSUB_EMULATOR_HOST and GCE_METADATA_HOST expect."""
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"{host!s}:{port}"

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}"

    def fail_next(self, *faults: Fault) -> None:
        with self.lock:
            self.faults.extend(faults)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Published]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.published) >= count:
                    return list(self.published)
            time.sleep(0.02)
        raise AssertionError(f"{count} message(s) expected, {len(self.published)} published")


class _Handler(BaseHTTPRequestHandler):
    server_version = "FakePubSub/1"
    protocol_version = "HTTP/1.1"
    fake: FakePubSub

    def log_message(self, format: str, *args: Any) -> None:
        return None  # quiet: pytest shows what the test asserts

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        fake = self.fake
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        with fake.lock:
            fake.requests.append((method, self.path, dict(self.headers.items())))
        if self.path.startswith("/computeMetadata/"):
            self._metadata()
            return
        with fake.lock:
            fault = fake.faults.pop(0) if fake.faults else None
        if fault is not None:
            time.sleep(fault.delay)
            if fault.status == 0:
                self.close_connection = True
                self.connection.close()
                return
            self._json(fault.status, {"error": {"code": fault.status, "message": "injected"}})
            return
        if fake.require_token and self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self._json(401, {"error": {"code": 401, "status": "UNAUTHENTICATED"}})
            return
        match = _TOPIC_PATH.match(self.path)
        if match is None or match[1] not in fake.topics:
            self._json(404, {"error": {"code": 404, "status": "NOT_FOUND"}})
            return
        topic, verb = match[1], match[2]
        if method == "GET" and verb is None:
            self._json(200, {"name": topic})
        elif method == "POST" and verb == "testIamPermissions":
            asked = json.loads(raw or b"{}").get("permissions", [])
            self._json(200, {"permissions": [p for p in asked if p == "pubsub.topics.publish"]})
        elif method == "POST" and verb == "publish":
            self._publish(topic, raw)
        else:
            self._json(405, {"error": {"code": 405}})

    def _publish(self, topic: str, raw: bytes) -> None:
        try:
            messages = json.loads(raw)["messages"]
            received = [
                Published(
                    topic=topic,
                    message_id=str(uuid.uuid4().int)[:16],
                    data=base64.b64decode(m.get("data", ""), validate=True),
                    attributes=_string_map(m.get("attributes", {})),
                    publish_time=time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
                )
                for m in messages
            ]
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            self._json(400, {"error": {"code": 400, "message": str(exc)}})
            return
        with self.fake.lock:
            self.fake.published.extend(received)
        self._json(200, {"messageIds": [m.message_id for m in received]})

    def _metadata(self) -> None:
        if self.headers.get("Metadata-Flavor") != "Google":
            self._json(403, {"error": "Missing Metadata-Flavor:Google header"})
        elif self.path == "/computeMetadata/v1/instance/service-accounts/default/token":
            with self.fake.lock:
                self.fake.tokens_issued += 1
            body = {"access_token": TOKEN, "expires_in": self.fake.token_lifetime}
            self._json(200, {**body, "token_type": "Bearer"})
        elif self.path == "/computeMetadata/v1/project/project-id":
            self._send(200, PROJECT.encode(), "application/text")
        else:
            self._json(404, {"error": "not found"})

    def _json(self, status: int, body: object) -> None:
        self._send(status, json.dumps(body).encode(), "application/json")

    def _send(self, status: int, payload: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def _string_map(value: object) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise TypeError("attributes must map strings to strings")
    return dict(value)


@contextlib.contextmanager
def running_fake_pubsub(**options: Any) -> Iterator[FakePubSub]:
    """A fake on 127.0.0.1 and a free port, serving from a thread until the block ends."""
    fake = FakePubSub(**options)
    handler = type("Handler", (_Handler,), {"fake": fake})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    fake.server = server
    thread = threading.Thread(
        target=server.serve_forever, args=(0.05,), name="fake-pubsub", daemon=True
    )
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def fake_pubsub() -> Iterator[FakePubSub]:
    with running_fake_pubsub() as fake:
        yield fake
