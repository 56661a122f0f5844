"""Throughput of `lambdarun local start-worker` on welcome jobs from SQS (moto in server mode),
batches of 10 as template.yaml's event source mapping sets them, against the queue alone.

    .venv/bin/python bench/worker_throughput.py [--messages 200] [--rounds 3]

Each round seeds the same number of welcome jobs (a user and a job in DynamoDB, a message in
SQS, as the API submits them) for each variant, in shuffled order:

  sqs-only      receive 10 + delete the batch, no function: what moto's SQS allows
  in-process    start-worker, the handler imported into the poller (its default)
  emulator      start-worker --emulator: each batch through aws-lambda-rie + awslambdaric

Rates count from the first batch to the last (process start and init left out), and the
median over rounds is printed with the ratio to sqs-only measured in the same round, and the
share of the wall time the function itself took (its REPORT Durations). Every
DynamoDB and SQS request goes to one moto server that answers one request at a time, so these
are figures for this local shape, not for Lambda.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapters.dynamodb_store import DynamoDBStore  # noqa: E402
from adapters.records import UserRecord  # noqa: E402
from adapters.sqs_queue import SqsQueue  # noqa: E402
from api.ids import new_id  # noqa: E402
from api.jobs.submit import submit_job  # noqa: E402
from api.tasks import tasks  # noqa: E402
from tests.support.moto_server import aws_environment, running_server, stop_server  # noqa: E402

LAMBDARUN = str(Path(sys.executable).parent / "lambdarun")
SHARES: dict[str, list[float]] = {}  # time inside the function / wall time, per variant
WAIT = ("--wait-time-seconds", "0")  # this moto server answers one request at a time
RATE = re.compile(r" in ([\d.]+) s \(([\d.]+) messages/s from the first batch\)")
DURATION = re.compile(r"\tDuration: ([\d.]+) ms")


async def seed(table: str, queue_url: str, count: int) -> None:
    store, queue = DynamoDBStore(table, timeout=10.0), SqsQueue(queue_url, timeout=10.0)
    for _ in range(count):
        at = datetime.now(UTC)
        user = UserRecord(
            id=new_id(), email=f"{uuid.uuid4().hex}@example.com", name="B", created_at=at,
            updated_at=at,
        )  # fmt: skip
        await store.create_user(user)
        await submit_job(
            store=store,
            queue=queue,
            registry=tasks,
            task="users.welcome",
            payload={"user_id": user.id},
            now=at,
        )


def sqs_only(queue_url: str, count: int) -> float:
    import botocore.session

    sqs = botocore.session.get_session().create_client("sqs")
    done, first = 0, None
    while done < count:
        messages = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        first = first or time.monotonic()
        if messages:
            entries = [
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
            ]
            sqs.delete_message_batch(QueueUrl=queue_url, Entries=entries)
            done += len(messages)
    return count / (time.monotonic() - (first or 0))


def start_worker(state: Path, *more: str) -> float:
    result = subprocess.run(
        [LAMBDARUN, "local", "start-worker", "--state", str(state), "--until-empty", *WAIT, *more],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    match = RATE.search(result.stderr)
    if match is None or "left for redelivery (" in result.stderr:
        raise SystemExit(f"start-worker did not finish cleanly:\n{result.stderr[-3000:]}")
    in_function = sum(float(ms) for ms in DURATION.findall(result.stderr)) / 1000
    SHARES.setdefault(more[0] if more else "in-process", []).append(in_function / float(match[1]))
    return float(match[2])


def local_up(workdir: Path) -> tuple[Path, str, str]:
    """(state file, table, jobs queue URL) of a new stack made by `lambdarun local up`."""
    stack = f"bench-{uuid.uuid4().hex[:6]}"
    state = workdir / f"{stack}.json"
    subprocess.run(
        [LAMBDARUN, "local", "up", "--stack-name", stack, "--state", str(state)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    resources = json.loads(state.read_text())["Stack"]["Resources"]
    return state, resources["Table"]["Ref"], resources["JobsQueue"]["QueueUrl"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    server = running_server()
    try:
        with aws_environment(server), tempfile.TemporaryDirectory() as tmp:
            variants = {
                "sqs-only": lambda state, queue_url: sqs_only(queue_url, args.messages),
                "in-process": lambda state, queue_url: start_worker(state),
                "emulator": lambda state, queue_url: start_worker(state, "--emulator"),
            }
            rates: dict[str, list[float]] = {name: [] for name in variants}
            for number in range(args.rounds):
                order = list(variants)
                random.shuffle(order)
                for name in order:
                    # A fresh stack each time: moto's transactions slow down as a table grows.
                    state, table, queue_url = local_up(Path(tmp))
                    asyncio.run(seed(table, queue_url, args.messages))
                    rates[name].append(variants[name](state, queue_url))
                done = ", ".join(f"{n} {rates[n][-1]:.0f}/s" for n in variants)
                print(f"round {number + 1}: {done}", file=sys.stderr)
    finally:
        stop_server()

    base = rates["sqs-only"]
    print(f"worker throughput, {args.messages} welcome jobs, batches of 10, median of rounds:")
    for name, values in rates.items():
        ratios = [v / b for v, b in zip(values, base, strict=True)]
        print(
            f"  {name:<11} {statistics.median(values):7.1f} messages/s"
            f"   x{statistics.median(ratios):.2f} of sqs-only"
            f" (range {min(ratios):.2f}-{max(ratios):.2f})"
        )
    for name, shares in SHARES.items():
        print(
            f"  {name.lstrip('-')}: the function's own Duration is {statistics.median(shares):.0%}"
            " of the wall time; the rest is polling, building events and deleting"
        )


if __name__ == "__main__":
    main()
