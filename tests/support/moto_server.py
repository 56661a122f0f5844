"""moto in server mode for the AWS adapters' tests: a real HTTP endpoint on a free local port,
one per test session, plus the environment that points the SDK at it and the table and queues."""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from adapters import aws_clients
from tests.support.net import free_port
from tests.support.services import service_missing

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_sqs import SQSClient

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account
_STARTUP_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class MotoServer:
    """A moto server in its own process, so its module-level state and logging stay out of ours."""

    endpoint: str
    process: subprocess.Popen[bytes]
    workdir: Path

    def api(self, path: str, data: bytes | None = None) -> bytes:
        """Call moto's own API (`/moto-api/...`)."""
        method = "GET" if data is None else "POST"
        request = urllib.request.Request(f"{self.endpoint}/moto-api/{path}", data, method=method)  # noqa: S310 - our own loopback server
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
            body: bytes = answer.read()
            return body

    @contextlib.contextmanager
    def recording(self) -> Iterator[list[dict[str, Any]]]:
        """Record every request the server receives inside the block, server side, into the list."""
        recorded: list[dict[str, Any]] = []
        self.api("recorder/reset-recording", b"")
        self.api("recorder/start-recording", b"")
        try:
            yield recorded
        finally:
            self.api("recorder/stop-recording", b"")
            text = self.api("recorder/download-recording").decode()
            recorded += [json.loads(line) for line in text.splitlines() if line]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)


_lock = threading.Lock()
_server: MotoServer | None = None


def running_server() -> MotoServer:
    """The session's moto server, started on first use and stopped when the session ends."""
    global _server  # noqa: PLW0603 - one server per test process
    with _lock:
        if _server is None or _server.process.poll() is not None:
            _server = _start()
            atexit.register(_server.stop)
        return _server


def stop_server() -> None:
    global _server  # noqa: PLW0603
    with _lock:
        if _server is not None:
            _server.stop()
            _server = None


def _start() -> MotoServer:
    if importlib.util.find_spec("moto.server") is None:
        service_missing("moto", "moto[server] is not installed")
    workdir = Path(tempfile.mkdtemp(prefix="lambdarun-moto-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOTO_"))}
    env["MOTO_RECORDER_FILEPATH"] = str(workdir / "recording.jsonl")
    log = (workdir / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.moto_server", str(port)],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    server = MotoServer(endpoint=f"http://127.0.0.1:{port}", process=process, workdir=workdir)
    deadline = time.monotonic() + _STARTUP_SECONDS
    while time.monotonic() < deadline and process.poll() is None:
        try:
            server.api("data.json")
        except OSError:
            time.sleep(0.1)
        else:
            return server
    output = (workdir / "server.log").read_text(errors="replace")[-2000:]
    server.stop()
    service_missing("moto server", f"did not start on port {port}: {output}")
    raise AssertionError("unreachable")  # service_missing fails or skips


def serve(port: int) -> None:
    """The server process: moto's own WSGI app (what `python -m moto.server` runs), answering one
    request at a time. DynamoDB applies each conditional write atomically; moto's threaded server
    does not (two of eight concurrent conditional claims both succeeded), so the contract tests
    of concurrent writes would test moto rather than the adapter."""
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import run_simple

    app = DomainDispatcherApplication(create_backend_app)
    one_at_a_time = threading.Lock()

    def serialized(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        with one_at_a_time:
            return list(app(environ, start_response))

    run_simple("127.0.0.1", port, serialized, threaded=True, request_handler=MotoRequestHandler)


@contextlib.contextmanager
def aws_environment(server: MotoServer) -> Iterator[pytest.MonkeyPatch]:
    """Fake credentials, region and endpoint for the block only, the developer's own AWS
    configuration hidden, and the process's shared clients rebuilt on both sides."""
    with pytest.MonkeyPatch.context() as patch:
        for name in [n for n in os.environ if n.startswith("AWS_")]:
            patch.delenv(name)
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        patch.setenv("AWS_DEFAULT_REGION", REGION)
        patch.setenv("AWS_ENDPOINT_URL", server.endpoint)
        patch.setenv("AWS_CONFIG_FILE", str(server.workdir / "no-config"))
        patch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(server.workdir / "no-credentials"))
        patch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        patch.setenv("AWS_MAX_ATTEMPTS", "2")  # an unreachable endpoint fails fast
        aws_clients.forget()
        try:
            yield patch
        finally:
            aws_clients.forget()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    yield running_server()
    stop_server()


@pytest.fixture
def aws_env(moto_server: MotoServer) -> Iterator[pytest.MonkeyPatch]:
    """The AWS environment pointing at moto, for one test; yields its MonkeyPatch for more."""
    with aws_environment(moto_server) as patch:
        yield patch


def dynamodb_client() -> DynamoDBClient:
    """A test's own client (inside `aws_environment`), apart from the one the adapter uses."""
    return aws_clients.dynamodb(timeout=10.0)


@contextlib.contextmanager
def sqs_client() -> Iterator[SQSClient]:
    """A boto3 client, as a consumer would use (inside `aws_environment`), closed after."""
    import boto3

    client = boto3.session.Session().client("sqs")
    try:
        yield client
    finally:
        client.close()


def create_table(name: str | None = None) -> str:
    """The table template.yaml declares: pk/sk, index gsi1 (gsi1pk/gsi1sk, ALL), TTL expires_at."""
    name = name or f"lambdarun-{uuid.uuid4().hex[:12]}"
    client = dynamodb_client()
    keys = ("pk", "sk", "gsi1pk", "gsi1sk")
    client.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": k, "AttributeType": "S"} for k in keys],
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "gsi1",
                "KeySchema": [
                    {"AttributeName": "gsi1pk", "KeyType": "HASH"},
                    {"AttributeName": "gsi1sk", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    )
    client.update_time_to_live(
        TableName=name,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"},
    )
    return name


def delete_table(name: str) -> None:
    dynamodb_client().delete_table(TableName=name)


def create_queue(name: str | None = None, *, fifo: bool = False) -> str:
    """A new queue's URL; FIFO queues get the `.fifo` suffix SQS requires."""
    name = name or f"lambdarun-{uuid.uuid4().hex[:12]}"
    with sqs_client() as sqs:
        answer = sqs.create_queue(
            QueueName=name + (".fifo" if fifo else ""),
            Attributes={"FifoQueue": "true"} if fifo else {},
        )
    return answer["QueueUrl"]


if __name__ == "__main__":
    serve(int(sys.argv[1]))
