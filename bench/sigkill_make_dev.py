"""`make dev` killed with SIGKILL under load, then started again, on the defaults a developer has:
what the restart finishes, and how long it takes.

    .venv/bin/python bench/sigkill_make_dev.py [--clients 8] [--seconds 3] [--rounds 3]

Each round: a fresh SQLite file; `make dev`; `--clients` clients creating users (each with its
welcome job) and submitting a job each; after `--seconds`, while they are still sending, SIGKILL
to make, the reloader and the server at once; `make dev` again on the same file, until no job is
queued or running. Prints
what the client was answered, what the file held at the kill and after, and the seconds from
the restart until nothing was left (the jobs the kill cut off mid-run wait for their lease,
JOB_LEASE_SECONDS, 30 s by default; the rest are sent by the sweep at start-up or the next one,
LOCAL_SWEEP_SECONDS later).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.dev_load import census, kill_under_load, make_dev  # noqa: E402
from tests.support.net import free_port  # noqa: E402


def one_round(number: int, clients: int, seconds: float, folder: Path) -> None:
    database = folder / f"round{number}.db"
    env = {"DATABASE_URL": f"sqlite:///{database}", "LOG_LEVEL": "warning"}
    log = folder / f"round{number}.log"
    port = free_port()
    with make_dev(port, env, log) as first:
        base = f"http://127.0.0.1:{port}"
        accepted = asyncio.run(kill_under_load(base, first, clients=clients, seconds=seconds))
    dead = census(database)
    started = time.monotonic()
    queued_gone: float | None = None
    with make_dev(free_port(), env, log):
        while (now := census(database)).unfinished and time.monotonic() - started < 180:
            if queued_gone is None and not now.queued:
                queued_gone = time.monotonic() - started
            time.sleep(0.1)
        took = time.monotonic() - started
    after = census(database)
    print(f"round {number + 1}:")
    print(
        f"  answered: {accepted.users} users (201), {accepted.jobs} jobs (202), "
        f"{accepted.refused} refused, {accepted.cut_off} requests cut off by the kill"
    )
    print(f"  at the kill:  {dead}")
    print(f"  after:        {after}")
    print(
        f"  left queued/running: {after.unfinished}; none queued "
        f"{took if queued_gone is None else queued_gone:.1f} s after the restart, none "
        f"running {took:.1f} s after it"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument("--seconds", type=float, default=3, help="load before the kill (default 3)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lambdarun-sigkill-") as folder:
        for number in range(args.rounds):
            one_round(number, args.clients, args.seconds, Path(folder))


if __name__ == "__main__":
    main()
