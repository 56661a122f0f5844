"""What TELEMETRY=otel costs per request, with the server and the network taken out: the app
called through httpx's ASGI transport in one process, `GET /healthz` and a cached
`GET /v1/users/{id}`, in three configurations measured in the same run:

- off: TELEMETRY=off (the default), the baseline;
- otel, no export: TELEMETRY=otel with OTEL_TRACES_EXPORTER=none (spans and metrics are made,
  nothing leaves the process);
- otel, OTLP: TELEMETRY=otel exporting to a sink in this process (the collector's place), so
  the SDK's batch thread encodes and sends every span;
- otel, OTLP, 10 %: the same with OTEL_TRACES_SAMPLER=parentbased_traceidratio at 0.1.

    .venv/bin/python bench/telemetry_cost.py [--rounds 5] [--requests 5000]

Each configuration runs in a fresh process (OpenTelemetry's providers are set once per
process) pinned to core 0, the sink on core 1; configurations alternate round by round and
the median of each one's per-round figures is printed with its ratio to off. Needs the
`otel` extra and two cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.otlp_sink import otlp_sink  # noqa: E402

CONFIGURATIONS = ("off", "otel, no export", "otel, OTLP", "otel, OTLP, 10 %")
PATHS = ("/healthz", "cached GET /v1/users/{id}")


async def measure(requests: int) -> dict[str, float]:
    """Microseconds per request for each path, in this process (the child)."""
    import httpx

    from api.app import create_app

    app = create_app(configure_logs=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            created = await client.post(
                "/v1/users", json={"email": f"{os.getpid()}@example.com", "name": "B"}
            )
            created.raise_for_status()
            urls = {PATHS[0]: "/healthz", PATHS[1]: f"/v1/users/{created.json()['id']}"}
            result = {}
            for name, url in urls.items():
                for _ in range(requests // 5):  # warm-up (and the cache filled)
                    (await client.get(url)).raise_for_status()
                started = time.perf_counter()
                for _ in range(requests):
                    await client.get(url)
                result[name] = (time.perf_counter() - started) / requests * 1e6
            return result


def child(configuration: str, env: dict[str, str], requests: int) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", "--requests", str(requests)]
    output = subprocess.run(
        ["taskset", "-c", "0", *command],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if output.returncode != 0:
        raise SystemExit(f"{configuration} failed:\n{output.stderr}")
    figures: dict[str, float] = json.loads(output.stdout.splitlines()[-1])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=5000, help="timed requests per path")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(measure(args.requests))))
        return
    os.sched_setaffinity(0, {1})  # the sink answers from the other core
    with tempfile.TemporaryDirectory(prefix="lambdarun-bench-") as scratch, otlp_sink() as sink:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TELEMETRY"))}
        base.update(STAGE="test", DATABASE_URL=f"sqlite:///{scratch}/bench.db")
        base.update(CACHE_URL="memory://", K_SERVICE="bench", GOOGLE_CLOUD_PROJECT="bench")
        otel = {**base, "TELEMETRY": "otel", "OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint}
        envs = {
            "off": base,
            "otel, no export": {
                **otel,
                "OTEL_TRACES_EXPORTER": "none",
                "OTEL_METRICS_EXPORTER": "none",
            },
            "otel, OTLP": otel,
            "otel, OTLP, 10 %": {
                **otel,
                "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                "OTEL_TRACES_SAMPLER_ARG": "0.1",
            },
        }
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in CONFIGURATIONS}
        for round_number in range(args.rounds):
            order = CONFIGURATIONS if round_number % 2 == 0 else CONFIGURATIONS[::-1]
            for name in order:
                runs[name].append(child(name, envs[name], args.requests))
        print(f"per request via httpx's ASGI transport, median of {args.rounds} rounds (x off)")
        for path in PATHS:
            off = statistics.median(run[path] for run in runs["off"])
            print(f"  {path}")
            for name in CONFIGURATIONS:
                us = statistics.median(run[path] for run in runs[name])
                print(f"    {name:16} {us:7.1f} us  {us / off:5.2f}x  ({us - off:+.0f} us)")
        # One span per traced request (the POST, then the cached GETs, warm-up included) in
        # the unsampled configuration, and about a tenth of that in the sampled one.
        traced = args.rounds * (1 + args.requests // 5 + args.requests)
        print(
            f"spans the sink received: {sink.spans()} for {traced} requests traced in full "
            f"and {traced} sampled at 10 % (about {traced // 10} expected from those)"
        )


if __name__ == "__main__":
    main()
