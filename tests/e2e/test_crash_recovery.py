"""SIGKILL between the write and the send, on every store that outlives a process: nothing the
API accepted is lost.

A real server (tests/support/crash_server.py: the app as shipped, its outbox's queue and store
wrapped to kill the process) serves POST /v1/users and POST /v1/jobs and dies with SIGKILL at
one point of one request: before its message reaches the queue, right after, or right after
the job was marked sent. Then the service comes back as it would in production, and every job
the dead process had written must finish exactly once and every user it created be welcomed:

- SQLite and PostgreSQL, with the in-process queue (`make dev`): the restarted server
  (`python -m handlers.cloudrun`) sweeps at start-up and every LOCAL_SWEEP_SECONDS, and runs
  what it sends;
- DynamoDB and SQS on moto (the AWS shape): the worker function is invoked with the schedule
  event (`lambdarun local invoke WorkerFunction -e events/schedule.json`), then
  `lambdarun local start-worker` delivers the queue as Lambda's event source mapping would.

The memory store dies with its process by design; tests/contract/test_outbox_recovery.py puts
it, and every other store, through the same points inside one process.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from adapters.bootstrap import AdapterOptions, build_store
from adapters.dynamodb_store import DynamoDBStore
from adapters.ports import Store
from adapters.postgres_store import PostgresStore
from adapters.records import JobRecord, JobStatus, UserRecord
from adapters.sqlite_store import SqliteStore
from tests.support.dying import POINTS
from tests.support.gcp_events import server_env
from tests.support.local_stack import LocalStack, local_stack
from tests.support.moto_server import aws_env, dynamodb_client, moto_server
from tests.support.net import free_port
from tests.support.postgres import fresh_database

__all__ = ["aws_env", "moto_server"]  # fixtures, used by name

ROOT = Path(__file__).resolve().parents[2]

# Fast enough for a test; the defaults are 2 s, 2 s (in-process), 5 s and 30 s.
QUICK = {
    "OUTBOX_GRACE_SECONDS": "0.5",
    "JOB_RESEND_SECONDS": "1",
    "LOCAL_SWEEP_SECONDS": "0.5",
    "JOB_LEASE_SECONDS": "3",
    "STAGE": "test",
    "LOG_LEVEL": "WARNING",
}


@dataclass
class Outcome:
    jobs: dict[str, JobRecord]  # every job written, by id
    users: int
    welcomed_once: int  # users whose welcome took effect exactly once (version 2)

    @property
    def accepted(self) -> int:
        return len(self.jobs)

    @property
    def finished(self) -> int:
        return sum(j.status is JobStatus.SUCCEEDED for j in self.jobs.values())

    def run_twice(self, dead: Outcome) -> int:
        """Runs beyond what finishing needed since `dead`: none for a job it had finished, one
        for a job it had not started, and one for a job it was running when it was killed (that
        run was cut off, and is taken over once its lease has run out: `cut_off`)."""
        extra = 0
        for job_id, job in self.jobs.items():
            was = dead.jobs[job_id]
            extra += job.attempts - was.attempts - (was.status is not JobStatus.SUCCEEDED)
        return extra

    def cut_off(self) -> int:
        return sum(j.status is JobStatus.RUNNING for j in self.jobs.values())

    def summary(self, dead: Outcome) -> str:
        return (
            f"accepted {self.accepted}, finished {self.finished}, run twice "
            f"{self.run_twice(dead)} (cut off mid-run by the kill: {dead.cut_off()}); "
            f"users {self.users}, welcomed once {self.welcomed_once}"
        )


async def every_job(store: Store) -> list[JobRecord]:
    """Every job in the store, however it got there (test-only listing, per store)."""
    if isinstance(store, SqliteStore):
        ids = [row["id"] for row in await store._fetchall("SELECT id FROM jobs")]
    elif isinstance(store, PostgresStore):
        async with store._connection() as conn:
            ids = [row["id"] for row in await conn.fetch("SELECT id FROM jobs")]
    else:
        assert isinstance(store, DynamoDBStore)
        items = dynamodb_client().scan(TableName=store.table)["Items"]
        ids = [item["id"]["S"] for item in items if item["sk"]["S"] == "JOB"]
    jobs = [await store.get_job(i) for i in ids]
    return [job for job in jobs if job is not None]


async def outcome(store: Store) -> Outcome:
    jobs = await every_job(store)
    users: list[UserRecord] = (await store.list_users(limit=100)).items
    return Outcome(
        jobs={job.id: job for job in jobs},
        users=len(users),
        welcomed_once=sum(u.welcomed_at is not None and u.version == 2 for u in users),
    )


async def until(check: Callable[[], Awaitable[bool]], *, within: float, what: str) -> float:
    """Poll `check` until it holds; the seconds it took. Fails after `within`."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        if await check():
            return time.monotonic() - started
        await asyncio.sleep(0.1)
    pytest.fail(f"not within {within}s: {what}")


@asynccontextmanager
async def serving(
    command: list[str], env: dict[str, str], log: Path
) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    port = free_port()
    with log.open("ab") as out:
        process = await asyncio.create_subprocess_exec(
            *command, cwd=ROOT, env=server_env(port, **env), stdout=out, stderr=out
        )
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:

            async def up() -> bool:
                assert process.returncode is None, f"the server exited; see {log}"
                try:
                    return (await http.get("/healthz")).status_code == 200
                except httpx.TransportError:
                    return False

            await until(up, within=30, what="the server to serve /healthz")
        yield base, process
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 15)


async def accept_until_killed(base: str, dies_on: str, store: Store, *, wait_for_jobs: bool) -> int:
    """user, job, user: the server dies during the request `dies_on` names (the second for
    "job", the third for "user"). With `wait_for_jobs` (the server is its own worker), each
    request waits until the jobs before it have finished, so no task is cut off mid-run and
    "exactly once" is what the outbox owes. Returns how many requests were answered."""
    answered = 0
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        user_id = ""
        for kind in ("user", "job", "user"):
            if wait_for_jobs:

                async def idle() -> bool:
                    jobs = await every_job(store)
                    return all(j.status is JobStatus.SUCCEEDED for j in jobs)

                await until(idle, within=20, what="the jobs so far to finish")
            try:
                if kind == "user":
                    email = f"u{answered}@example.com"
                    answer = await http.post("/v1/users", json={"email": email, "name": "U"})
                    user_id = answer.json().get("id", "") if answer.status_code == 201 else ""
                else:
                    payload = {"user_id": user_id}
                    answer = await http.post(
                        "/v1/jobs", json={"task": "users.welcome", "payload": payload}
                    )
            except httpx.TransportError:
                return answered  # the process died inside this request
            assert answer.status_code in {201, 202}, answer.text
            answered += 1
    pytest.fail(f"the server was to die during the {dies_on} request and did not")


def crash_at(dies_on: str) -> str:
    return "2" if dies_on == "job" else "3"


async def kill(
    store: Store, env: dict[str, str], point: str, dies_on: str, tmp_path: Path, *, worker: bool
) -> Outcome:
    """Serve until the server SIGKILLs itself; what it left in the store."""
    crash_env = {**env, "CRASH_POINT": point, "CRASH_AT": crash_at(dies_on)}
    command = [sys.executable, "-m", "tests.support.crash_server"]
    async with serving(command, crash_env, tmp_path / "killed.log") as (base, process):
        answered = await accept_until_killed(base, dies_on, store, wait_for_jobs=worker)
        await asyncio.wait_for(process.wait(), 10)
    assert process.returncode == -signal.SIGKILL
    dead = await outcome(store)
    # Every request wrote before it died: the answered ones and the one that was cut off.
    assert answered == {"user": 2, "job": 1}[dies_on]
    assert (dead.accepted, dead.users) == {"user": (3, 2), "job": (2, 1)}[dies_on]
    # What was answered has run (a worker of its own; the killed request's job may have been
    # picked up before the kill when it died after its send), or nothing has (SQS).
    assert dead.finished == (dead.accepted - 1 if worker else 0)
    return dead


def check(name: str, point: str, dies_on: str, dead: Outcome, result: Outcome, took: float) -> None:
    """Every job the dead process wrote finished, none ran more often than it had to, and every
    user's welcome took effect once. Prints the figures (pytest -s shows them)."""
    print(f"\n{name} {point} ({dies_on}): {result.summary(dead)}; recovered in {took:.1f} s")
    assert result.jobs.keys() == dead.jobs.keys()
    assert (result.finished, result.run_twice(dead)) == (result.accepted, 0)
    assert result.welcomed_once == result.users == dead.users


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.service("postgres"))])
async def local_database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/crash.db"
        return
    async with fresh_database() as url:
        yield url


@pytest.mark.parametrize("dies_on", ["user", "job"])
@pytest.mark.parametrize("point", POINTS)
async def test_make_dev_killed_between_write_and_send_finishes_every_job_on_restart(
    local_database: str, point: str, dies_on: str, tmp_path: Path
) -> None:
    env = {**QUICK, "DATABASE_URL": local_database, "QUEUE_URL": "inprocess://"}
    store = build_store(local_database, AdapterOptions(io_timeout=5.0))
    await store.open()
    try:
        dead = await kill(store, env, point, dies_on, tmp_path, worker=True)
        log = tmp_path / "restarted.log"
        async with serving([sys.executable, "-m", "handlers.cloudrun"], env, log):

            async def all_done() -> bool:
                now = await outcome(store)
                return now.finished == now.accepted

            seconds = await until(all_done, within=30, what="every accepted job to finish")
        name = local_database.split(":", maxsplit=1)[0]
        check(name, point, dies_on, dead, await outcome(store), seconds)
    finally:
        await store.close()


@pytest.mark.parametrize("point", POINTS)
async def test_the_aws_shape_killed_between_write_and_send_finishes_every_job(
    aws_env: pytest.MonkeyPatch, point: str, tmp_path: Path
) -> None:
    stack: LocalStack = local_stack(tmp_path, max_receive_count=5, visibility_seconds=2)
    # SQS's resend default (900 s) stays: only what never reached the queue is due.
    quick = {k: v for k, v in QUICK.items() if k != "JOB_RESEND_SECONDS"}
    env = {**quick, "DATABASE_URL": f"dynamodb://{stack.table}", "QUEUE_URL": stack.queue_url}
    store = stack.store()
    dies_on = "user"
    dead = await kill(store, env, point, dies_on, tmp_path, worker=False)

    started = time.monotonic()
    # The sweeper's tick, once the killed request's grace has passed (an unsent job is due then).
    grace = timedelta(seconds=float(QUICK["OUTBOX_GRACE_SECONDS"]))
    grace_over = max(job.created_at for job in dead.jobs.values()) + grace
    await asyncio.sleep(max(0.0, (grace_over - datetime.now(UTC)).total_seconds()))
    swept = await asyncio.to_thread(
        stack.invoke_function, "WorkerFunction", ROOT / "events" / "schedule.json"
    )
    assert swept == {"schedule": "jobs.sweep", "done": True}
    await asyncio.to_thread(stack.work_until_empty)
    took = time.monotonic() - started
    check("dynamodb+sqs", point, dies_on, dead, await outcome(store), took)
