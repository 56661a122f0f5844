"""Throughput of `GET /v1/users/{id}` with the Redis cache against the same GET with the cache
off, both on Postgres, served by uvicorn (uvloop + httptools) on one core with wrk on the other.

    .venv/bin/python bench/cached_get.py [--rounds 3] [--duration 5]

Needs PostgreSQL and Redis (TEST_DATABASE_URL, TEST_REDIS_URL as in the tests) and wrk.
Prints req/s and p99 per variant (median over interleaved rounds) and the ratio cached/off.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped, unused-ignore]
import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapters.postgres_migrate import upgrade  # noqa: E402
from tests.support.net import free_port  # noqa: E402

PG = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def start_server(env: dict[str, str], core: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    command = [
        "taskset", "-c", str(core), sys.executable, "-m", "uvicorn", "--factory",
        "api.app:create_app", "--loop", "uvloop", "--http", "httptools",
        "--port", str(port), "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env})
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return process, base
        except httpx.TransportError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit(f"server on {base} did not become ready")


def wrk(url: str, *, duration: int, connections: int, core: int) -> tuple[float, float]:
    """(requests per second, p99 latency in ms)."""
    out = subprocess.run(
        ["taskset", "-c", str(core), "wrk", "-t1", f"-c{connections}", f"-d{duration}s",
         "--latency", url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    if "Non-2xx" in out:
        raise SystemExit(f"non-2xx answers from {url}:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    value, unit = re.search(r"99%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
    p99 = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    return rps, p99


async def make_database() -> str:
    name = f"lambdarun_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(PG)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = urlunsplit(urlsplit(PG)._replace(path=f"/{name}"))
    await upgrade(url)
    return url


async def drop_database(url: str) -> None:
    admin = await asyncpg.connect(PG)
    await admin.execute(f'DROP DATABASE IF EXISTS "{urlsplit(url).path[1:]}" WITH (FORCE)')
    await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run (default 5)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    args = parser.parse_args()
    if shutil.which("wrk") is None or shutil.which("taskset") is None:
        raise SystemExit("needs wrk and taskset (apt-get install wrk util-linux)")

    database = asyncio.run(make_database())
    common = {"DATABASE_URL": database, "STAGE": "local", "LOG_LEVEL": "WARNING"}
    variants = {
        "cache off": {**common, "CACHE_URL": "none://"},
        "redis cache": {**common, "CACHE_URL": REDIS, "CACHE_TTL_SECONDS": "300"},
    }
    servers = {name: start_server(env, core=0) for name, env in variants.items()}
    try:
        first = next(iter(servers.values()))[1]
        created = httpx.post(f"{first}/v1/users", json={"email": "bench@example.com", "name": "B"})
        path = created.headers["location"]
        for _, base in servers.values():  # warm-up, discarded
            wrk(base + path, duration=1, connections=args.connections, core=1)
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in servers}
        ratios = []
        for _ in range(args.rounds):
            for name, (_, base) in servers.items():
                results[name].append(
                    wrk(base + path, duration=args.duration, connections=args.connections, core=1)
                )
            ratios.append(results["redis cache"][-1][0] / results["cache off"][-1][0])
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait(10)
        asyncio.run(drop_database(database))

    print(f"GET {path.rsplit('/', 1)[0]}/{{id}}, {args.rounds} rounds x {args.duration}s, "
          f"{args.connections} connections, server on core 0, wrk on core 1")  # fmt: skip
    for name, runs in results.items():
        rps = statistics.median(r for r, _ in runs)
        p99 = statistics.median(p for _, p in runs)
        print(f"  {name:12s} {rps:9.0f} req/s   p99 {p99:7.2f} ms")
    print(
        f"  ratio cached/off: {statistics.median(ratios):.2f}x "
        f"(rounds {min(ratios):.2f}-{max(ratios):.2f})"
    )


if __name__ == "__main__":
    main()
