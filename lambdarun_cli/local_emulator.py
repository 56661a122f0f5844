"""The Lambda Runtime Interface Emulator (aws-lambda-rie, shipped in the aws-sam-cli package)
running one function as `python -m awslambdaric HANDLER`: found for this machine, started,
invoked over its HTTP API, stopped."""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from lambdarun_cli.local_template import Function
from lambdarun_cli.local_up import LocalError

ROOT = Path(__file__).resolve().parent.parent
INVOCATIONS = "/2015-03-31/functions/function/invocations"
_ELF_MACHINES = {0x3E: "x86_64", 0xB7: "arm64"}
ARCHITECTURES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}


def find_emulator() -> tuple[Path | None, str]:
    """aws-lambda-rie for this machine: on PATH, or the one aws-sam-cli ships (in .tools/sam or
    beside the `sam` on PATH). (None, why) when there is none that runs here."""
    machine = platform.machine().lower()
    arch = ARCHITECTURES.get(machine)
    if not sys.platform.startswith("linux") or arch is None:
        return None, f"the emulator runs on Linux x86_64 or arm64, not {sys.platform} {machine}"
    candidates: list[Path] = []
    on_path = shutil.which("aws-lambda-rie")
    if on_path:
        candidates.append(Path(on_path))
    homes = [ROOT / ".tools" / "sam"]
    sam = shutil.which("sam")
    if sam:
        homes.append(Path(sam).resolve().parent.parent)
    rapid = "site-packages/samcli/local/rapid"
    for home in homes:
        candidates += sorted(home.glob(f"lib/python3*/{rapid}/aws-lambda-rie-{arch}"))
    for candidate in candidates:
        if os.access(candidate, os.X_OK) and _elf_arch(candidate) == arch:
            return candidate, ""
    return None, f"no aws-lambda-rie for {arch} found (install aws-sam-cli: `make tools`)"


def _elf_arch(path: Path) -> str | None:
    with path.open("rb") as binary:
        header = binary.read(20)
    if header[:4] != b"\x7fELF":
        return None
    return _ELF_MACHINES.get(int.from_bytes(header[18:20], "little"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True, slots=True)
class Result:
    payload: bytes
    error: str | None  # why the invocation failed (function error, timeout), None when it did not


class Emulator:
    """aws-lambda-rie serving one function (`python -m awslambdaric HANDLER`), its log (START,
    END, REPORT and the function's own output) written to `log`."""

    def __init__(self, binary: Path, function: Function, env: dict[str, str], log: TextIO) -> None:
        self.function = function
        self.url = f"http://127.0.0.1:{_free_port()}{INVOCATIONS}"
        runtime_api = f"127.0.0.1:{_free_port()}"
        self.command = [
            str(binary),
            "--log-level",
            "error",
            "--runtime-interface-emulator-address",
            self.url.split("/")[2],
            "--runtime-api-address",
            runtime_api,
            sys.executable,
            "-m",
            "awslambdaric",
            function.handler,
        ]
        self.env = env
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Emulator:
        self.log.flush()
        self.process = subprocess.Popen(  # noqa: S603 - our own command line
            self.command,
            cwd=self.function.code_dir,
            env=self.env,
            stdout=self.log.fileno(),
            stderr=self.log.fileno(),
            start_new_session=True,  # stopped as a group with its runtime process
        )
        address = self.url.split("/")[2].split(":")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise LocalError(f"the emulator exited with status {self.process.returncode}")
            try:
                socket.create_connection((address[0], int(address[1])), timeout=1).close()
            except OSError:
                time.sleep(0.02)
            else:
                return self
        self.stop()
        raise LocalError("the emulator did not listen within 10 s")

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def invoke(self, event: bytes) -> Result:
        request = urllib.request.Request(self.url, data=event, method="POST")  # noqa: S310 - loopback
        # The emulator answers "timed out" itself after the function's Timeout.
        try:
            with urllib.request.urlopen(request, timeout=self.function.timeout + 30) as answer:  # noqa: S310
                status, payload = answer.status, answer.read()
        except urllib.error.HTTPError as exc:  # 502: the runtime failed to start or died
            status, payload = exc.code, exc.read()
            exc.close()
        return Result(payload, _invoke_error(status, payload))

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)  # Lambda's shutdown: the runtime gets SIGTERM too
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _invoke_error(status: int, payload: bytes) -> str | None:
    """What the emulator's answer says went wrong: it answers 200 even for a function error,
    with Lambda's error document as the body."""
    if status != 200:
        return f"the emulator answered {status} ({_describe(payload) or 'the runtime failed'})"
    if payload.startswith(b"Task timed out"):
        return payload.decode(errors="replace")
    return _describe(payload)


def _describe(payload: bytes) -> str | None:
    """ "Type: message" when the payload is Lambda's error document."""
    try:
        document = json.loads(payload)
    except ValueError:
        return None
    if isinstance(document, dict) and {"errorMessage", "errorType"} <= set(document):
        return f"{document['errorType']}: {document['errorMessage']}"
    return None
