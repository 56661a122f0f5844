"""README's first command, `make dev`, run as a newcomer runs it: a real server on a real socket
serving the user -> welcome job -> welcomed_at flow."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.net import free_port

ROOT = Path(__file__).resolve().parents[2]


def wait_until(predicate: object, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def dev_server(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "DATABASE_URL": f"sqlite:///{tmp_path}/dev.db",
    }
    log = (tmp_path / "server.log").open("w")
    process = subprocess.Popen(
        ["make", "--no-print-directory", "dev"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # make, the reloader and the server: stop them as one group
    )
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if process.poll() is not None:
            pytest.fail("make dev exited:\n" + (tmp_path / "server.log").read_text())
        try:
            return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(up, timeout=60, what="make dev to serve /healthz")
        yield base
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def test_make_dev_serves_the_welcome_flow(dev_server: str) -> None:
    with httpx.Client(base_url=dev_server, timeout=5) as client:
        created = client.post("/v1/users", json={"email": "ada@example.com", "name": "Ada"})
        assert created.status_code == 201
        location = created.headers["location"]

        def welcomed() -> bool:
            return client.get(location).json()["welcomed_at"] is not None

        wait_until(welcomed, timeout=20, what="the welcome job to set welcomed_at")
        assert client.get("/readyz").json()["status"] == "ok"
        assert client.get("/docs").status_code == 200
