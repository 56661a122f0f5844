"""Cold start of the Lambda API handler against a minimal FastAPI + Mangum + boto3 app.

    .venv/bin/python bench/cold_start.py [--rounds 15] [--warm 2000] [--otel]

Each sample is a fresh process (interpreter start, imports, init, the first `GET
/v1/users/{id}` served from DynamoDB on a moto server), timed from the parent. The two apps
alternate in shuffled order every round, the first round is discarded, and the median of the
per-round ratios is printed with its range. `--otel` adds ours with TELEMETRY=otel to every
round, exporting its spans over OTLP/HTTP to a local endpoint that accepts them (as the
collector extension would on Lambda; metrics stay EMF), and prints what that adds. Then the
warm path (mean per invocation in one process) and the ten most expensive imports of ours
(`python -X importtime`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapters import aws_clients  # noqa: E402
from adapters.dynamodb_store import DynamoDBStore  # noqa: E402
from adapters.records import UserRecord  # noqa: E402
from api.ids import new_id  # noqa: E402
from tests.support.moto_server import (  # noqa: E402
    REGION,
    create_queue,
    create_table,
    running_server,
    stop_server,
)
from tests.support.otlp_sink import otlp_sink  # noqa: E402

OURS, BASELINE = "handlers.aws_http", "baseline_lambda"
OTEL = "handlers.aws_http (TELEMETRY=otel)"


def environment(endpoint: str, table: str, queue: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return {
        **base,
        "PYTHONPATH": f"{ROOT}:{ROOT / 'bench'}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",  # moto's fake credentials
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_EC2_METADATA_DISABLED": "true",
        "LAMBDA_TASK_ROOT": str(ROOT),
        "DATABASE_URL": f"dynamodb://{table}",
        "QUEUE_URL": queue,
        # Both apps read DynamoDB on every GET, warm ones included.
        "CACHE_URL": "none://",
        # Like for like with the baseline, which checks no tokens (AUTH=jwt adds joserfc's
        # import, about 40 ms, and one JWKS fetch per execution environment).
        "STAGE": "test",
        "POWERTOOLS_SERVICE_NAME": "lambdarun",
        "POWERTOOLS_METRICS_NAMESPACE": "lambdarun",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "LOG_LEVEL": "WARNING",
        "BASELINE_TABLE": table,
    }


def seed(endpoint: str) -> tuple[str, str, str]:
    """A table, a queue and one user, made the way the app makes them."""
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",  # noqa: S106 - moto's fake credentials
        AWS_DEFAULT_REGION=REGION,
        AWS_ENDPOINT_URL=endpoint,
        AWS_EC2_METADATA_DISABLED="true",
    )
    aws_clients.forget()
    table, queue = create_table(), create_queue()
    now = datetime.now(UTC)
    user = UserRecord(
        id=new_id(), email="bench@example.com", name="B", created_at=now, updated_at=now
    )
    asyncio.run(DynamoDBStore(table).create_user(user))
    return table, queue, user.id


def cold(module: str, path: str, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, str(ROOT / "bench" / "invoke_once.py"), module, path],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return (time.perf_counter() - start) * 1000


def warm(module: str, path: str, env: dict[str, str], count: int) -> float:
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "invoke_once.py"), module, path, str(count)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return float(out.strip().splitlines()[-1])


def top_imports(
    module: str, path: str, env: dict[str, str], count: int = 10
) -> list[tuple[str, int]]:
    """Import time per package (the sum of its modules' own times), from `python -X importtime`."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", str(ROOT / "bench" / "invoke_once.py"), module, path],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    totals: dict[str, int] = defaultdict(int)
    for line in result.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+\d+ \| *(\S+)", line)
        if match:
            totals[match[2].split(".")[0]] += int(match[1])
    return sorted(totals.items(), key=lambda item: -item[1])[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15, help="measured rounds (default 15)")
    parser.add_argument("--warm", type=int, default=2000, help="warm invocations (default 2000)")
    parser.add_argument(
        "--otel", action="store_true", help="also ours with TELEMETRY=otel, to a local collector"
    )
    args = parser.parse_args()

    server = running_server()
    try:
        table, queue, user_id = seed(server.endpoint)
        env = environment(server.endpoint, table, queue)
        path = f"/v1/users/{user_id}"
        samples: dict[str, list[float]] = {OURS: [], BASELINE: [], OTEL: []}
        ratios, otel_ratios = [], []
        with otlp_sink() as sink:
            otel_env = {
                **env,
                "TELEMETRY": "otel",
                "OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint,
                "OTEL_METRICS_EXPORTER": "none",
            }
            for round_number in range(args.rounds + 1):
                order = [OURS, BASELINE, *([OTEL] if args.otel else [])]
                random.shuffle(order)
                times = {
                    name: cold(
                        OURS if name == OTEL else name, path, otel_env if name == OTEL else env
                    )
                    for name in order
                }
                if round_number == 0:
                    continue  # warm-up: page cache, bytecode
                for name, ms in times.items():
                    samples[name].append(ms)
                ratios.append(times[OURS] / times[BASELINE])
                if args.otel:
                    otel_ratios.append(times[OTEL] / times[OURS])
        warm_ours, warm_base = (
            warm(OURS, path, env, args.warm),
            warm(BASELINE, path, env, args.warm),
        )
        imports = top_imports(OURS, path, env)
    finally:
        stop_server()

    print(f"cold start: fresh process, import + init + first GET {path.rsplit('/', 1)[0]}/{{id}}")
    print(f"  ours      median {statistics.median(samples[OURS]):6.0f} ms")
    baseline_ms = statistics.median(samples[BASELINE])
    print(f"  baseline  median {baseline_ms:6.0f} ms  (FastAPI + Mangum + boto3)")
    print(
        f"  ratio ours/baseline {statistics.median(ratios):.2f}x "
        f"(range {min(ratios):.2f}-{max(ratios):.2f}, {len(ratios)} rounds)"
    )
    if otel_ratios:
        added = statistics.median(samples[OTEL]) - statistics.median(samples[OURS])
        print(
            f"  ours with TELEMETRY=otel median {statistics.median(samples[OTEL]):6.0f} ms: "
            f"{statistics.median(otel_ratios):.2f}x ours off "
            f"(range {min(otel_ratios):.2f}-{max(otel_ratios):.2f}), +{added:.0f} ms"
        )
    print(f"warm invoke (mean of {args.warm}): ours {warm_ours:.0f} us, "
          f"baseline {warm_base:.0f} us, ratio {warm_ours / warm_base:.2f}x")  # fmt: skip
    print("  (both are dominated by moto's few milliseconds per GetItem)")
    print("top imports of ours (own time per package, ms):")
    for name, micros in imports:
        print(f"  {name:28s} {micros / 1000:7.1f}")


if __name__ == "__main__":
    main()
