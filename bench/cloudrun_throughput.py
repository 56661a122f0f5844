"""The Cloud Run shape against a bare FastAPI hello world, in one run:

- throughput: wrk on `GET /healthz` and on a cached `GET /v1/users/{id}` of the real server
  (started with the Dockerfile's own command), on the same two of a second server with
  TELEMETRY=otel exporting OTLP to a sink in this process (the collector's part; it counts the
  spans that arrive), and on `GET /healthz` of a bare FastAPI app served with the same uvicorn
  settings; each server pinned to core 0, wrk and the sink to core 1; variants interleaved
  round by round after a warm-up; req/s, p99 and the ratios to bare.
- cold start: from process start to the first answered `GET /healthz`, ours against bare,
  interleaved, a warm-up discarded; the median of per-round ratios with its range.

    .venv/bin/python bench/cloudrun_throughput.py [--rounds 9] [--duration 3] [--starts 11]

Many short rounds rather than a few long ones: on a shared VM one slow stretch then spoils
one round's ratio, not the median.

Needs wrk (Debian package `wrk`) and taskset (util-linux), two cores, and the `otel` extra.
Traffic stays on 127.0.0.1; every run is bounded by --duration and --rounds.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.gcp_events import start_command  # noqa: E402
from tests.support.net import free_port  # noqa: E402
from tests.support.otlp_sink import OtlpSink, otlp_sink  # noqa: E402

SERVER_CORE, CLIENT_CORE = "0", "1"
# The same uvicorn settings as handlers/cloudrun.py, written out so the bare app's process
# imports nothing of ours.
BARE_APP = """
from fastapi import FastAPI
import uvicorn, os

app = FastAPI()


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


if __name__ == "__main__":
    uvicorn.run(
        app, host="0.0.0.0", port=int(os.environ["PORT"]), loop="uvloop", http="httptools",
        lifespan="on", proxy_headers=True, forwarded_allow_ips="*", timeout_graceful_shutdown=8,
        access_log=False, log_config=None, server_header=False,
    )
"""
_REQUESTS = re.compile(r"(\d+) requests in ")
_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
_P99 = re.compile(r"^\s*99%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
_UNIT = {"us": 0.001, "ms": 1.0, "s": 1000.0}
TRACED = "ours cached GET, TELEMETRY=otel"
TARGET = 0.85  # ours /healthz with TELEMETRY=off, as a share of the bare app's req/s
_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


@dataclass
class Server:
    name: str
    command: list[str]
    cwd: Path
    env: dict[str, str]

    def start(self) -> tuple[subprocess.Popen[bytes], int, float]:
        """Start pinned to the server core; (process, port, seconds to the first 200)."""
        port = free_port()
        env = {**self.env, "PORT": str(port)}
        started = time.perf_counter()
        process = subprocess.Popen(
            ["taskset", "-c", SERVER_CORE, *self.command],
            cwd=self.cwd,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        request = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        deadline = started + 30
        while time.perf_counter() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                    sock.sendall(request)
                    if sock.recv(64).startswith(b"HTTP/1.1 200"):
                        return process, port, time.perf_counter() - started
            except OSError:
                time.sleep(0.002)
        stop(process)
        raise SystemExit(f"{self.name} did not serve /healthz within 30 s")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class Run(NamedTuple):
    rps: float
    p99_ms: float
    slow: int  # answers slower than wrk's 2 s timeout
    requests: int


def wrk(url: str, *, duration: float, connections: int) -> Run:
    """One wrk run pinned to the client core. An error answer or a broken connection ends the
    bench; a slow answer is a result, so it is counted and printed."""
    command = [
        "taskset", "-c", CLIENT_CORE, "wrk", "-t1", f"-c{connections}", f"-d{duration:g}s",
        "--latency", url,
    ]  # fmt: skip
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    errors = _SOCKET_ERRORS.search(output)
    broken = errors is not None and any(int(n) for n in errors.groups()[:3])
    if "Non-2xx" in output or broken:
        raise SystemExit(f"wrk saw errors on {url}:\n{output}")
    rps, p99, count = _RPS.search(output), _P99.search(output), _REQUESTS.search(output)
    if rps is None or p99 is None or count is None:
        raise SystemExit(f"cannot read wrk's output:\n{output}")
    slow = int(errors[4]) if errors else 0
    return Run(float(rps[1]), float(p99[1]) * _UNIT[p99[2]], slow, int(count[1]))


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def cold_start(ours: Server, bare: Server, starts: int) -> None:
    ratios, ours_ms, bare_ms = [], [], []
    for round_number in range(starts + 1):
        timings = {}
        for server in (ours, bare) if round_number % 2 else (bare, ours):
            process, _, seconds = server.start()
            stop(process)
            timings[server.name] = seconds * 1000
        if round_number == 0:
            continue  # warm-up: file caches, bytecode
        ours_ms.append(timings[ours.name])
        bare_ms.append(timings[bare.name])
        ratios.append(timings[ours.name] / timings[bare.name])
    print(f"\ncold start to first /healthz, {starts} interleaved rounds (median, range)")
    print(f"  lambdarun     {spread(ours_ms)} ms")
    print(f"  bare FastAPI  {spread(bare_ms)} ms")
    print(f"  ratio         {spread(ratios)} x bare")


def throughput(
    ours: Server,
    otel: Server,
    bare: Server,
    sink: OtlpSink,
    *,
    rounds: int,
    duration: float,
    connections: int,
) -> None:
    ours_process, ours_port, _ = ours.start()
    otel_process, otel_port, _ = otel.start()
    bare_process, bare_port, _ = bare.start()
    try:
        created = httpx.post(
            f"http://127.0.0.1:{ours_port}/v1/users",
            json={"email": "bench@example.com", "name": "Bench"},
            timeout=5,
        )
        created.raise_for_status()
        user_path = f"/v1/users/{created.json()['id']}"  # both servers share the database
        user_url = f"http://127.0.0.1:{ours_port}{user_path}"
        otel_user_url = f"http://127.0.0.1:{otel_port}{user_path}"
        for url in (user_url, otel_user_url):
            httpx.get(url, timeout=5).raise_for_status()  # now cached
        targets = {
            "bare /healthz": f"http://127.0.0.1:{bare_port}/healthz",
            "ours /healthz": f"http://127.0.0.1:{ours_port}/healthz",
            "ours /healthz, TELEMETRY=otel": f"http://127.0.0.1:{otel_port}/healthz",
            "ours cached GET /v1/users/{id}": user_url,
            TRACED: otel_user_url,
        }
        warm_up = {
            name: wrk(url, duration=2, connections=connections) for name, url in targets.items()
        }
        results: dict[str, list[Run]] = {name: [] for name in targets}
        for round_number in range(rounds):
            order = list(targets.items())
            if round_number % 2:
                order.reverse()
            for name, url in order:
                results[name].append(wrk(url, duration=duration, connections=connections))
    finally:
        stop(ours_process)
        stop(otel_process)  # its SDK flushes the spans it still holds on the way out
        stop(bare_process)

    print(
        f"\nthroughput, wrk -t1 -c{connections} {duration:g} s x {rounds} interleaved rounds, "
        "server on core 0, wrk on core 1 (median)"
    )
    bare_rps = [run.rps for run in results["bare /healthz"]]
    for name, runs in results.items():
        rps = [run.rps for run in runs]
        p99 = statistics.median(run.p99_ms for run in runs)
        ratio = [r / b for r, b in zip(rps, bare_rps, strict=True)]
        slow = sum(run.slow for run in runs)
        print(
            f"  {name:34} {statistics.median(rps):9.0f} req/s  p99 {p99:6.2f} ms  "
            f"{spread(ratio)} x bare" + (f"  ({slow} over 2 s)" if slow else "")
        )
    ours_rps = [run.rps for run in results["ours /healthz"]]
    healthz = statistics.median(o / b for o, b in zip(ours_rps, bare_rps, strict=True))
    verdict = "meets" if healthz >= TARGET else "misses"
    print(f"\n/healthz: {healthz:.3f} x bare ({verdict} the {TARGET} x target)")
    # One span per traced request (the probes are not traced), the first GET's included.
    traced = 1 + sum(run.requests for run in [warm_up[TRACED], *results[TRACED]])
    print(f"TELEMETRY=otel: the sink received {sink.spans()} spans for {traced} traced requests")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9, help="interleaved wrk rounds")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--starts", type=int, default=11, help="cold-start rounds (+1 warm-up)")
    args = parser.parse_args()
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is needed (apt-get install -y wrk util-linux)")
    if len(os.sched_getaffinity(0)) < 2:
        raise SystemExit("needs two cores: one for the server, one for wrk")
    os.sched_setaffinity(0, {int(CLIENT_CORE)})  # this process polls from the client core

    with ExitStack() as stack:
        scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="lambdarun-bench-"))
        work = Path(scratch)
        (work / "bare_app.py").write_text(BARE_APP)
        base_env = {k: v for k, v in os.environ.items() if k not in {"PORT", "K_SERVICE"}}
        base_env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{base_env.get('PATH', '')}"
        ours = Server(
            "lambdarun",
            start_command(),
            ROOT,
            {
                **base_env,
                "DATABASE_URL": f"sqlite:///{work}/bench.db",
                "CACHE_URL": "memory://",
                # As on Cloud Run: Cloud Logging lines and the trace middleware's work.
                "K_SERVICE": "lambdarun-bench",
                "GOOGLE_CLOUD_PROJECT": "lambdarun-bench",
                # A test stage: the bench sends no tokens (auth is measured in tests, not here).
                "STAGE": "test",
            },
        )
        # TELEMETRY=otel as deployed, the sink in the collector's place: what tracing costs.
        sink = stack.enter_context(otlp_sink())
        otel = Server(
            "lambdarun, TELEMETRY=otel",
            ours.command,
            ROOT,
            {
                **ours.env,
                "TELEMETRY": "otel",
                "OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint,
            },
        )
        bare = Server("bare FastAPI", [sys.executable, "bare_app.py"], work, base_env)
        print(f"ours: {' '.join(ours.command)}   bare: uvicorn.run(FastAPI hello, same options)")
        cold_start(ours, bare, args.starts)
        throughput(
            ours,
            otel,
            bare,
            sink,
            rounds=args.rounds,
            duration=args.duration,
            connections=args.connections,
        )


if __name__ == "__main__":
    main()
