"""README's first command, `make dev`, run as a newcomer runs it: a real server on a real socket
serving the user -> welcome job -> welcomed_at flow."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.dev_load import census, kill_under_load, make_dev
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
def dev_server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """`make dev` on a free port; settings given by indirect parametrization are added."""
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "DATABASE_URL": f"sqlite:///{tmp_path}/dev.db",
        **getattr(request, "param", {}),
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


@pytest.mark.parametrize("dev_server", [{"TELEMETRY": "otel"}], indirect=True)
def test_make_dev_with_otel_prints_the_request_to_job_trace(
    dev_server: str, tmp_path: Path
) -> None:
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    created = httpx.post(
        f"{dev_server}/v1/users",
        json={"email": "ada@example.com", "name": "Ada"},
        headers={"traceparent": traceparent},
        timeout=5,
    )
    assert created.status_code == 201

    def spans() -> dict[str, dict[str, str]]:
        found = {}
        for line in (tmp_path / "server.log").read_text().splitlines():
            if line.startswith('{"name"'):
                span = json.loads(line)
                found[span["name"]] = {**span["context"], "parent": span["parent_id"]}
        return found

    wait_until(lambda: "process users.welcome" in spans(), timeout=10, what="the job's span")
    printed = spans()
    run, send = printed["process users.welcome"], printed["send users.welcome"]
    assert run["trace_id"] == send["trace_id"] == "0x4bf92f3577b34da6a3ce929d0e0e4736"
    assert run["parent"] == send["span_id"]


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


async def test_make_dev_killed_under_load_finishes_everything_it_accepted(tmp_path: Path) -> None:
    """8 clients, and after 2 s SIGKILL to make, the reloader and the server at once; a second
    `make dev` on the same file finishes every job the first accepted: nothing stays queued or
    running, every user is welcomed, and no welcome takes effect twice."""
    database = tmp_path / "dev.db"
    env = {
        "DATABASE_URL": f"sqlite:///{database}",
        # Quick enough for a test (defaults: 2 s, 2 s, 5 s, 30 s); the bench uses the defaults.
        "OUTBOX_GRACE_SECONDS": "0.5",
        "JOB_RESEND_SECONDS": "1",
        "LOCAL_SWEEP_SECONDS": "0.5",
        "JOB_LEASE_SECONDS": "2",
    }
    log = tmp_path / "dev.log"
    port = free_port()
    with make_dev(port, env, log) as first:
        base = f"http://127.0.0.1:{port}"
        accepted = await kill_under_load(base, first, clients=8, seconds=2)
    dead = census(database)
    assert accepted.users > 0
    assert accepted.cut_off > 0  # the clients were still sending
    assert dead.users >= accepted.users
    assert dead.jobs >= accepted.users + accepted.jobs  # every answered request was written

    with make_dev(free_port(), env, log):
        for _ in range(300):  # 60 s at most
            if not census(database).unfinished:
                break
            await asyncio.sleep(0.2)
    after = census(database)
    print(f"\nkilled: {dead}\nafter the restart: {after}")
    assert after.jobs == dead.jobs
    assert (after.unfinished, after.failed) == (0, 0), str(after)
    assert after.welcomed == after.users
    assert after.welcomed_more_than_once == 0
    # Only a job the kill cut off mid-run is claimed a second time.
    assert after.run_twice <= dead.running


def children_of(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found |= {int(child) for child in (task / "children").read_text().split()}
    return found


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for its dead parent's reaper."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def test_a_killed_reloader_takes_its_server_with_it(tmp_path: Path) -> None:
    """SIGKILL to `lambdarun dev`'s reloader alone (a closed terminal, an IDE's stop button):
    its server process goes too, so the port is free for the next `lambdarun dev`."""
    port = free_port()
    env = {**os.environ, "PORT": str(port), "DATABASE_URL": f"sqlite:///{tmp_path}/dev.db"}
    lambdarun = str(Path(sys.executable).parent / "lambdarun")
    log = (tmp_path / "dev.log").open("w")
    reloader = subprocess.Popen(
        [lambdarun, "dev"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:

        def serving() -> bool:
            try:
                return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(serving, timeout=60, what="lambdarun dev to serve")
        workers = children_of(reloader.pid)
        assert workers
        reloader.kill()
        reloader.wait()
        wait_until(
            lambda: not any(alive(pid) for pid in workers),
            timeout=20,
            what="the server process to die with its reloader",
        )
        again = subprocess.Popen(
            [lambdarun, "dev", "--no-reload"], cwd=ROOT, env=env, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            wait_until(serving, timeout=60, what="the next lambdarun dev to serve on the port")
        finally:
            os.killpg(again.pid, signal.SIGINT)
            again.wait(15)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(reloader.pid, signal.SIGKILL)
        log.close()
