"""Builders for what Google Cloud sends the workers: Pub/Sub messagePublished CloudEvents as
Eventarc delivers them (structured and binary content mode), Pub/Sub push envelopes, and the
OIDC tokens Pub/Sub signs for authenticated push, with a local certs endpoint serving the keys
in Google's format (`{key id: PEM certificate}`, as https://www.googleapis.com/oauth2/v1/certs).
And the commands Cloud Run runs, read from cloudrun/Dockerfile and started as local processes."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt, jwt

from adapters.messages import encode_body
from adapters.records import JobMessage
from tests.support.net import free_port

MESSAGE_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"
PROJECT = "lambdarun-test"
TOPIC = f"projects/{PROJECT}/topics/jobs"
SUBSCRIPTION = f"projects/{PROJECT}/subscriptions/eventarc-europe-west1-jobs-sub-001"
PUSH_ACCOUNT = f"pubsub-push@{PROJECT}.iam.gserviceaccount.com"


def pubsub_message(
    body: JobMessage | bytes | str,
    *,
    attributes: Mapping[str, str] | None = None,
    message_id: str | None = None,
) -> dict[str, Any]:
    """A Pub/Sub message as push and Eventarc deliver it (both spellings of the ids, as Google's
    push does)."""
    raw = encode_body(body).encode() if isinstance(body, JobMessage) else body
    data = raw.encode() if isinstance(raw, str) else raw
    attrs = dict(attributes or {})
    if isinstance(body, JobMessage):
        attrs = {**body.attributes, "job_id": body.job_id, **attrs}
    message_id = message_id or str(uuid.uuid4().int)[:16]
    published = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {
        "data": base64.b64encode(data).decode(),
        "attributes": attrs,
        "messageId": message_id,
        "message_id": message_id,
        "publishTime": published,
        "publish_time": published,
    }


def push_envelope(message: dict[str, Any], *, subscription: str = SUBSCRIPTION) -> dict[str, Any]:
    return {"message": message, "subscription": subscription}


def _attributes(message: dict[str, Any], event_type: str) -> dict[str, str]:
    return {
        "specversion": "1.0",
        "id": message["messageId"],
        "source": f"//pubsub.googleapis.com/{TOPIC}",
        "type": event_type,
        "time": message["publishTime"],
        "datacontenttype": "application/json",
    }


def structured_event(
    message: dict[str, Any], *, event_type: str = MESSAGE_PUBLISHED
) -> tuple[dict[str, str], bytes]:
    """(headers, body) of a structured-mode CloudEvent: everything in one JSON document."""
    event = {**_attributes(message, event_type), "data": push_envelope(message)}
    headers = {"Content-Type": "application/cloudevents+json; charset=utf-8"}
    return headers, json.dumps(event).encode()


def binary_event(
    message: dict[str, Any], *, event_type: str = MESSAGE_PUBLISHED, data: bytes | None = None
) -> tuple[dict[str, str], bytes]:
    """(headers, body) of a binary-mode CloudEvent (how Eventarc delivers): attributes as ce-*
    headers, the data as the body."""
    attributes = _attributes(message, event_type)
    headers = {
        f"ce-{name}": value for name, value in attributes.items() if name != "datacontenttype"
    }
    headers["Content-Type"] = attributes["datacontenttype"]
    body = json.dumps(push_envelope(message)).encode() if data is None else data
    return headers, body


@dataclass
class GoogleKeys:
    """An RSA key standing in for Google's token-signing key, and its certificate."""

    key_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    private_key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )

    @property
    def private_pem(self) -> str:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()

    def certificate_pem(self) -> str:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test.googleapis.invalid")])
        now = dt.datetime.now(dt.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.private_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .sign(self.private_key, hashes.SHA256())
        )
        return certificate.public_bytes(serialization.Encoding.PEM).decode()

    def token(self, **claims: Any) -> str:
        """A push token as Pub/Sub signs it; keyword arguments override or (None) drop claims."""
        now = int(time.time())
        payload: dict[str, Any] = {
            "aud": "https://api.example.run.app/internal/pubsub/push",
            "azp": "113774264463038321964",
            "email": PUSH_ACCOUNT,
            "email_verified": True,
            "exp": now + 3600,
            "iat": now,
            "iss": "https://accounts.google.com",
            "sub": "113774264463038321964",
        }
        payload.update(claims)
        payload = {name: value for name, value in payload.items() if value is not None}
        signer = crypt.RSASigner.from_string(self.private_pem, key_id=self.key_id)  # type: ignore[no-untyped-call]
        encoded: bytes = jwt.encode(signer, payload)  # type: ignore[no-untyped-call]
        return encoded.decode()


@contextlib.contextmanager
def certs_server(*keys: GoogleKeys, max_age: int = 19000) -> Iterator[tuple[str, list[str]]]:
    """Serve the keys' certificates as Google does; yields (certs URL, paths requested)."""
    body = json.dumps({key.key_id: key.certificate_pem() for key in keys}).encode()
    requested: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return None

        def do_GET(self) -> None:
            requested.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Cache-Control", f"public, max-age={max_age}, must-revalidate")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(
        target=server.serve_forever, args=(0.05,), name="fake-google-certs", daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/oauth2/v1/certs", requested
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# ---- the commands Cloud Run runs, from cloudrun/Dockerfile, as local processes ----------------

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "cloudrun" / "Dockerfile"


def dockerfile_stages(path: Path = DOCKERFILE) -> dict[str, list[tuple[str, str]]]:
    """Stage name -> its (INSTRUCTION, arguments) in order; continuation lines joined, comments
    and parser directives dropped. Instructions before the first FROM go under ""."""
    stages: dict[str, list[tuple[str, str]]] = {"": []}
    current = ""
    logical = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not logical and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            logical += stripped[:-1] + " "
            continue
        logical += stripped
        instruction, _, arguments = logical.partition(" ")
        logical = ""
        instruction = instruction.upper()
        if instruction == "FROM":
            words = arguments.split()
            current = words[2] if len(words) == 3 and words[1].upper() == "AS" else words[0]
            stages[current] = []
        stages[current].append((instruction, arguments.strip()))
    return stages


def start_command(target: str | None = None, path: Path = DOCKERFILE) -> list[str]:
    """The CMD (exec form) of a stage, by default the last one: what `docker run` starts."""
    stages = dockerfile_stages(path)
    name = target or list(stages)[-1]
    commands = [arguments for instruction, arguments in stages[name] if instruction == "CMD"]
    assert commands, f"stage {name!r} has no CMD"
    command = json.loads(commands[-1])
    assert isinstance(command, list), "CMD must be in exec form (a JSON array)"
    return [str(word) for word in command]


def server_env(port: int, **settings: str) -> dict[str, str]:
    """The test's environment plus PORT and settings, with this virtualenv first on PATH (so the
    image's `python` and `functions-framework` are ours) and the repository importable."""
    env = {**os.environ, "PORT": str(port), **settings}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(ROOT)
    return env


@dataclass
class ServerProcess:
    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, path: str = "/healthz", timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"the server exited ({self.process.returncode}):\n{self.log()}"
                )
            try:
                if not path:
                    socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                    return
                if httpx.get(self.base_url + path, timeout=2).status_code < 500:
                    return
            except (OSError, httpx.TransportError):
                pass
            time.sleep(0.05)
        raise AssertionError(f"not ready after {timeout}s:\n{self.log()}")

    @property
    def port(self) -> int:
        return int(self.base_url.rsplit(":", 1)[1])

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@contextlib.contextmanager
def running(
    command: list[str], *, port: int, env: dict[str, str], log_path: Path, ready: str = "/healthz"
) -> Iterator[ServerProcess]:
    """Start `command` from the repository root in its own process group; wait until `ready`
    answers (or, with ready="", until the port accepts); stop it at the end."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = ServerProcess(process, f"http://127.0.0.1:{port}", log_path)
    try:
        server.wait_ready(ready)
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def running_pair(tmp_path: Path, **settings: str) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """The Cloud Run pair as the Dockerfile starts it: the API (uvicorn) and the worker
    (functions-framework), each with `settings` and its own K_SERVICE (so Cloud Logging lines),
    logging to api.log and worker.log under `tmp_path`."""
    api_port, worker_port = free_port(), free_port()
    with (
        running(
            start_command("api"),
            port=api_port,
            env=server_env(api_port, **settings, K_SERVICE="lambdarun-api"),
            log_path=tmp_path / "api.log",
        ) as api,
        running(
            start_command("worker"),
            port=worker_port,
            env=server_env(worker_port, **settings, K_SERVICE="lambdarun-worker"),
            log_path=tmp_path / "worker.log",
            ready="",  # a GET is not a CloudEvent: just wait for the port
        ) as worker,
    ):
        yield api, worker
