"""A bounded load test of the Cloud Run-style server on PostgreSQL + Redis: clients create users
and submit jobs for a fixed time; then every accepted job is followed to its end.

    .venv/bin/python bench/load.py [--clients 32] [--seconds 15]

Server (`python -m handlers.cloudrun`) pinned to core 0, this client to core 1, loopback only.
Prints requests/s, p50/p99 per operation, every non-2xx status, and how the jobs ended.
Needs PostgreSQL and Redis (TEST_DATABASE_URL, TEST_REDIS_URL as in the tests).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.cached_get import REDIS, drop_database, make_database  # noqa: E402
from tests.support.net import free_port  # noqa: E402


async def client_loop(
    http: httpx.AsyncClient,
    number: int,
    deadline: float,
    latencies: dict[str, list[float]],
    statuses: Counter[tuple[str, int]],
    jobs: list[str],
) -> None:
    sequence = 0
    while time.monotonic() < deadline:
        sequence += 1
        email = f"load-{number}-{sequence}@example.com"
        started = time.perf_counter()
        response = await http.post("/v1/users", json={"email": email, "name": "L"})
        latencies["POST /v1/users"].append(time.perf_counter() - started)
        statuses[("POST /v1/users", response.status_code)] += 1
        if response.status_code != 201:
            continue
        user_url = response.headers["location"]
        user_id = user_url.rsplit("/", 1)[1]
        started = time.perf_counter()
        job = await http.post(
            "/v1/jobs", json={"task": "users.welcome", "payload": {"user_id": user_id}}
        )
        latencies["POST /v1/jobs"].append(time.perf_counter() - started)
        statuses[("POST /v1/jobs", job.status_code)] += 1
        if job.status_code == 202:
            jobs.append(job.headers["location"])
        started = time.perf_counter()
        read = await http.get(user_url)
        latencies["GET /v1/users/{id}"].append(time.perf_counter() - started)
        statuses[("GET /v1/users/{id}", read.status_code)] += 1


async def follow(http: httpx.AsyncClient, locations: list[str], within: float) -> Counter[str]:
    """Poll every job until it is no longer queued or running (or the time is up)."""
    deadline = time.monotonic() + within
    pending, ended = list(locations), Counter[str]()
    while pending and time.monotonic() < deadline:
        still = []
        for location in pending:
            status = (await http.get(location)).json()["status"]
            if status in {"queued", "running"}:
                still.append(location)
            else:
                ended[status] += 1
        pending = still
        if pending:
            await asyncio.sleep(0.2)
    ended["unfinished"] = len(pending)
    return ended


async def run(base: str, clients: int, seconds: float) -> None:
    latencies: dict[str, list[float]] = defaultdict(list)
    statuses: Counter[tuple[str, int]] = Counter()
    jobs: list[str] = []
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as http:
        started = time.monotonic()
        deadline = started + seconds
        await asyncio.gather(
            *(client_loop(http, n, deadline, latencies, statuses, jobs) for n in range(clients))
        )
        elapsed = time.monotonic() - started
        ended = await follow(http, jobs, within=120)
    total = sum(statuses.values())
    print(f"{clients} clients for {seconds:.0f} s: {total} requests, {total / elapsed:.0f} req/s")
    for name, values in latencies.items():
        ordered = sorted(values)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        print(
            f"  {name:22s} n={len(values):6d}  p50 {statistics.median(values) * 1000:7.1f} ms"
            f"  p99 {p99 * 1000:7.1f} ms"
        )
    print("  statuses:", dict(sorted(statuses.items())))
    server_errors = sum(n for (_, status), n in statuses.items() if status >= 500)
    print(f"  5xx: {server_errors}")
    print(f"  jobs accepted {len(jobs)}: {dict(ended)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients (default 32)")
    parser.add_argument("--seconds", type=float, default=15, help="duration (default 15, max 120)")
    args = parser.parse_args()
    seconds = min(args.seconds, 120)  # bounded by design

    database = asyncio.run(make_database())
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "DATABASE_URL": database,
        "CACHE_URL": REDIS,
        "STAGE": "test",
        "LOG_LEVEL": "WARNING",
        "DB_POOL_MAX": "10",
    }
    server = subprocess.Popen(
        ["taskset", "-c", "0", sys.executable, "-m", "handlers.cloudrun"], cwd=ROOT, env=env
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        os.sched_setaffinity(0, {1})
        asyncio.run(run(base, args.clients, seconds))
    finally:
        server.terminate()
        server.wait(15)
        asyncio.run(drop_database(database))


if __name__ == "__main__":
    main()
