"""`make dev` under load, killed with SIGKILL, and started again: the clients, the kill and the
count of what became of every accepted job (tests/e2e/test_make_dev.py and
bench/sigkill_make_dev.py share it).

Clients create users (each with its welcome job) and submit jobs as fast as the server answers;
everything the server answered 201/202 to is "accepted". The count reads the SQLite file the
server wrote, so it sees every job, answered or not."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Accepted:
    users: int = 0
    jobs: int = 0  # POST /v1/jobs answered 202
    refused: int = 0  # any other answer
    cut_off: int = 0  # requests the kill cut off (no answer)


@dataclass(frozen=True)
class Census:
    """What the SQLite file holds."""

    jobs: int
    queued: int
    running: int
    succeeded: int
    failed: int
    run_twice: int  # claimed more than once
    users: int
    welcomed: int
    welcomed_more_than_once: int  # version above 2: the welcome took effect twice

    @property
    def unfinished(self) -> int:
        return self.queued + self.running

    def __str__(self) -> str:
        return (
            f"jobs {self.jobs} (queued {self.queued}, running {self.running}, succeeded "
            f"{self.succeeded}, failed {self.failed}, claimed twice {self.run_twice}); users "
            f"{self.users}, welcomed {self.welcomed}, welcomed twice {self.welcomed_more_than_once}"
        )


def census(database: Path) -> Census:
    with contextlib.closing(sqlite3.connect(database, timeout=5)) as db:
        statuses = dict(db.execute("SELECT status, count(*) FROM jobs GROUP BY status").fetchall())
        (twice,) = db.execute("SELECT count(*) FROM jobs WHERE attempts > 1").fetchone()
        users, welcomed, again = db.execute(
            "SELECT count(*), count(welcomed_at), coalesce(sum(version > 2), 0) FROM users"
        ).fetchone()
    return Census(
        jobs=sum(statuses.values()),
        queued=statuses.get("queued", 0),
        running=statuses.get("running", 0),
        succeeded=statuses.get("succeeded", 0),
        failed=statuses.get("failed", 0),
        run_twice=twice,
        users=users,
        welcomed=welcomed,
        welcomed_more_than_once=again,
    )


@contextlib.contextmanager
def make_dev(port: int, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`make dev` on `port`, in a process group of its own (make, the reloader, the server);
    stopped with SIGINT at the end unless the caller killed it."""
    with log.open("ab") as out:
        process = subprocess.Popen(
            ["make", "--no-print-directory", "dev"],
            cwd=ROOT,
            env={**os.environ, **env, "PORT": str(port)},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_serving(f"http://127.0.0.1:{port}", process, log)
        yield process
    finally:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def wait_serving(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120  # the first `make dev` installs the virtualenv
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"make dev exited:\n{log.read_text(errors='replace')}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise AssertionError(f"make dev did not serve /healthz:\n{log.read_text(errors='replace')}")


def kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL to make, the reloader and the server at once: nothing gets to clean up."""
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


async def kill_under_load(
    base: str, process: subprocess.Popen[bytes], *, clients: int, seconds: float
) -> Accepted:
    """`hammer` the server and SIGKILL it after `seconds`, while the clients are still sending."""
    load = asyncio.create_task(hammer(base, clients=clients, seconds=seconds + 60))
    await asyncio.sleep(seconds)
    await asyncio.to_thread(kill_group, process)
    return await load


async def hammer(base: str, *, clients: int, seconds: float) -> Accepted:
    """`clients` loops, each creating a user then submitting a job for it, for `seconds`."""
    accepted = Accepted()
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients)

    async def client(number: int, http: httpx.AsyncClient) -> None:
        sequence = 0
        while time.monotonic() < deadline:
            sequence += 1
            email = f"load-{number}-{sequence}@example.com"
            try:
                user = await http.post("/v1/users", json={"email": email, "name": "L"})
                if user.status_code != 201:
                    accepted.refused += 1
                    continue
                accepted.users += 1
                job = await http.post(
                    "/v1/jobs",
                    json={"task": "users.welcome", "payload": {"user_id": user.json()["id"]}},
                )
            except httpx.TransportError:
                accepted.cut_off += 1
                return
            if job.status_code == 202:
                accepted.jobs += 1
            else:
                accepted.refused += 1

    async with httpx.AsyncClient(base_url=base, timeout=10, limits=limits) as http:
        await asyncio.gather(*(client(n, http) for n in range(clients)))
    return accepted
