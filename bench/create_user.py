"""Latency of `POST /v1/users` on PostgreSQL: this tree against a baseline commit, side by side.

    .venv/bin/python bench/create_user.py --baseline 2dce29c [--rounds 7] [--requests 300]

The baseline is checked out to a temporary git worktree and served from there, so both servers
are the same command (`python -m handlers.cloudrun`: uvicorn, the in-process queue, which also
runs each user's welcome job) on a database of their own, migrated by their own code. Server on
core 0, this client on core 1, loopback. Each round sends `--requests` creations one at a time
(p50 and p99 per round; one client, so a request's own round trips are what is measured), then
the same with 8 clients at once; the variants take turns, round by round, after a discarded
warm-up. Prints the median over rounds and the median (range) of the per-round ratios.
Needs PostgreSQL (TEST_DATABASE_URL, as in the tests).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.cached_get import PG, drop_database  # noqa: E402
from tests.support.net import free_port  # noqa: E402


async def empty_database() -> str:
    import secrets
    from urllib.parse import urlsplit, urlunsplit

    import asyncpg  # type: ignore[import-untyped, unused-ignore]

    name = f"lambdarun_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(PG)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    return urlunsplit(urlsplit(PG)._replace(path=f"/{name}"))


@contextlib.contextmanager
def worktree(ref: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="lambdarun-baseline-") as parent:
        path = Path(parent) / "tree"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(path), ref],
            cwd=ROOT, check=True, capture_output=True,
        )  # fmt: skip
        try:
            yield path
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(path)],
                cwd=ROOT, check=False, capture_output=True,
            )  # fmt: skip


@contextlib.contextmanager
def server(tree: Path, database: str) -> Iterator[str]:
    env = {**os.environ, "DATABASE_URL": database, "STAGE": "test", "LOG_LEVEL": "WARNING"}
    # Its own migrations, run from its own tree (the working directory comes first on the path).
    subprocess.run(
        [sys.executable, "-c", "import sys; from lambdarun_cli.main import main; "
         "sys.exit(main(['db', 'upgrade']))"],
        cwd=tree, env=env, check=True, capture_output=True,
    )  # fmt: skip
    port = free_port()
    command = ["taskset", "-c", "0", sys.executable, "-m", "handlers.cloudrun"]
    process = subprocess.Popen(command, cwd=tree, env={**env, "PORT": str(port)})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"the server from {tree} did not become ready")
            time.sleep(0.05)
        yield base
    finally:
        process.terminate()
        process.wait(15)


async def creations(base: str, label: str, count: int, clients: int) -> list[float]:
    """Seconds per POST /v1/users, `count` of them spread over `clients` concurrent loops."""
    latencies: list[float] = []
    next_number = iter(range(count))

    async def loop(http: httpx.AsyncClient) -> None:
        for n in next_number:
            email = f"{label}-{n}-{time.monotonic_ns()}@example.com"
            started = time.perf_counter()
            answer = await http.post("/v1/users", json={"email": email, "name": "B"})
            latencies.append(time.perf_counter() - started)
            if answer.status_code != 201:
                raise SystemExit(f"{base}: {answer.status_code} {answer.text}")

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as http:
        await asyncio.gather(*(loop(http) for _ in range(clients)))
    return latencies


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", required=True, help="git ref to compare with (a commit)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (default 7)")
    parser.add_argument("--requests", type=int, default=300, help="per round (default 300)")
    args = parser.parse_args()

    databases = [asyncio.run(empty_database()) for _ in range(2)]
    results: dict[tuple[str, int], list[tuple[float, float]]] = {}
    try:
        with (
            worktree(args.baseline) as baseline_tree,
            server(baseline_tree, databases[0]) as baseline,
            server(ROOT, databases[1]) as ours,
        ):
            variants = {f"baseline {args.baseline}": baseline, "this tree": ours}
            os.sched_setaffinity(0, {1})
            for name, base in variants.items():  # warm-up, discarded
                asyncio.run(creations(base, f"warm-{name[:4]}", 50, 1))
            for round_number in range(args.rounds):
                for clients in (1, 8):
                    for name, base in variants.items():
                        label = f"r{round_number}-{clients}-{name[:4]}"
                        got = asyncio.run(creations(base, label, args.requests, clients))
                        results.setdefault((name, clients), []).append((p(got, 0.5), p(got, 0.99)))
    finally:
        for database in databases:
            asyncio.run(drop_database(database))

    print(f"POST /v1/users on PostgreSQL, {args.rounds} rounds x {args.requests} requests; "
          "server on core 0, client on core 1")  # fmt: skip
    names = list(dict.fromkeys(name for name, _ in results))
    for clients in (1, 8):
        print(f"  {clients} client{'s' if clients > 1 else ''}:")
        for name in names:
            runs = results[(name, clients)]
            p50 = statistics.median(r[0] for r in runs)
            p99 = statistics.median(r[1] for r in runs)
            print(f"    {name:24s} p50 {p50:6.2f} ms   p99 {p99:6.2f} ms")
        ratios = [
            ours[0] / base[0]
            for base, ours in zip(
                results[(names[0], clients)], results[(names[1], clients)], strict=True
            )
        ]
        print(
            f"    p50 this/baseline: {statistics.median(ratios):.2f}x "
            f"(rounds {min(ratios):.2f}-{max(ratios):.2f})"
        )


if __name__ == "__main__":
    main()
