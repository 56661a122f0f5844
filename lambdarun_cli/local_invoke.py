"""`lambdarun local invoke`: one event through one function of template.yaml, as `sam local invoke`
does it but without Docker: the Lambda Runtime Interface Emulator (aws-lambda-rie, shipped in the
aws-sam-cli package) running `python -m awslambdaric HANDLER`, or the handler in this process."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import sys
import time
import traceback
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from lambdarun_cli.local_emulator import ARCHITECTURES, Emulator, find_emulator
from lambdarun_cli.local_template import (
    Function,
    Template,
    TemplateError,
    samconfig_stack_name,
)
from lambdarun_cli.local_up import LocalError, LocalState

ROOT = Path(__file__).resolve().parent.parent
# What a Lambda function sees besides its own variables: these pass through from the shell.
_PASS_THROUGH = ("PATH", "HOME", "LANG", "TMPDIR", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")


@dataclass(frozen=True, slots=True)
class Stack:
    template: Template
    state: LocalState | None
    endpoint: str | None


def open_stack(
    *,
    template_path: Path,
    stack_name: str | None,
    config_env: str,
    overrides: Mapping[str, str],
    state_path: Path,
    out: TextIO,
) -> Stack:
    """The template with references resolved to the local stack `local up` recorded, when
    AWS_ENDPOINT_URL names its endpoint (or is unset and the state file exists)."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL") or None
    state = LocalState.read(state_path)
    if endpoint and state is None:
        raise LocalError(
            f"AWS_ENDPOINT_URL is {endpoint} but there is no {state_path}: "
            "run `lambdarun local up` first"
        )
    if state is not None:
        if endpoint and endpoint.rstrip("/") != state.endpoint.rstrip("/"):
            raise LocalError(
                f"{state_path} was made on {state.endpoint}, not AWS_ENDPOINT_URL={endpoint}: "
                "run `lambdarun local up` again"
            )
        if stack_name and stack_name != state.stack_name:
            raise LocalError(
                f"{state_path} holds stack {state.stack_name}, not {stack_name}: "
                f"run `lambdarun local up --stack-name {stack_name}`"
            )
        if not endpoint:
            print(f"lambdarun: endpoint {state.endpoint} (from {state_path})", file=out)
    name = stack_name or (state.stack_name if state else None)
    name = name or samconfig_stack_name(template_path.resolve().parent, config_env) or "lambdarun"
    # The stack's parameters are those `local up` had, unless overridden again here.
    given = {**(state.parameters if state else {}), **overrides}
    template = Template(template_path, stack_name=name, overrides=given)
    if state is not None:
        template.region, template.account, template.lookup = (
            state.region,
            state.account,
            state.lookup,
        )
    return Stack(template, state, endpoint or (state.endpoint if state else None))


def read_env_vars(path: Path | None) -> dict[str, dict[str, str]]:
    """SAM's --env-vars file: {"FunctionLogicalId": {"VAR": "value"}, "Parameters": {...}}."""
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise LocalError(f"--env-vars {path}: {exc}") from exc
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise LocalError(f'--env-vars {path}: expected {{"FunctionId": {{"VAR": "value"}}}}')
    return {
        key: {k: "" if v is None else str(v) for k, v in values.items()}
        for key, values in data.items()
    }


def function_environment(
    function: Function,
    stack: Stack,
    env_vars: Mapping[str, Mapping[str, str]],
    shell: Mapping[str, str],
) -> dict[str, str]:
    """The environment Lambda gives the function: its runtime variables, the template's
    (Globals merged), then, as in `sam local invoke`, the shell's value of a variable the
    template declares, then --env-vars ("Parameters" for every function, then its own)."""
    region = stack.template.region
    environment = {k: shell[k] for k in _PASS_THROUGH if k in shell}
    environment.update({k: v for k, v in shell.items() if k.startswith("AWS_")})
    if stack.endpoint:
        environment["AWS_ENDPOINT_URL"] = stack.endpoint
        if not ({"AWS_ACCESS_KEY_ID", "AWS_PROFILE"} & set(shell)):
            # What `sam local invoke` gives when there are none; any value suits an emulator.
            environment["AWS_ACCESS_KEY_ID"] = "defaultkey"
            environment["AWS_SECRET_ACCESS_KEY"] = "defaultsecret"  # noqa: S105
    runtime_version = function.runtime.removeprefix("python") or "3"
    environment.update(
        {
            "_HANDLER": function.handler,
            "AWS_EXECUTION_ENV": f"AWS_Lambda_python{runtime_version}",
            "AWS_LAMBDA_FUNCTION_NAME": function.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory),
            "AWS_LAMBDA_FUNCTION_TIMEOUT": str(function.timeout),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_GROUP_NAME": function.log_group,
            "AWS_LAMBDA_LOG_STREAM_NAME": "$LATEST",
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
            "LAMBDA_TASK_ROOT": str(function.code_dir),
            "PYTHONPATH": str(function.code_dir),
            "TZ": ":UTC",
        }
    )
    environment.update(function.environment)
    environment.update({k: shell[k] for k in function.declared if k in shell})
    environment.update(env_vars.get("Parameters", {}))
    environment.update(env_vars.get(function.logical_id, {}))
    return environment


class LambdaContext:
    """The context object the Python runtime passes a handler."""

    def __init__(self, function: Function, region: str, account: str) -> None:
        self.aws_request_id = str(uuid.uuid4())
        self.function_name = function.name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:{region}:{account}:function:{function.name}"
        self.memory_limit_in_mb = str(function.memory)
        self.log_group_name = function.log_group
        self.log_stream_name = "$LATEST"
        self.identity = None
        self.client_context = None
        self.tenant_id = None
        self._deadline = time.monotonic() + function.timeout

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class InProcess:
    """The function's handler imported into this process, its environment applied first (with
    LAMBDA_TASK_ROOT set, as Lambda sets it); log lines like the runtime's on `log`."""

    def __init__(self, function: Function, env: dict[str, str], stack: Stack, log: TextIO) -> None:
        self.function, self.env, self.log = function, env, log
        self.region, self.account = stack.template.region, stack.template.account
        self.handler: Callable[[Any, Any], Any] | None = None
        self.init_ms: float | None = None

    def start(self) -> None:
        import importlib

        os.environ.clear()
        os.environ.update(self.env)
        sys.path.insert(0, str(self.function.code_dir))
        os.chdir(self.function.code_dir)
        module_name, _, attribute = self.function.handler.rpartition(".")
        started = time.perf_counter()
        module = importlib.import_module(module_name)
        self.handler = getattr(module, attribute)
        self.init_ms = (time.perf_counter() - started) * 1000

    def invoke(self, event: Any) -> tuple[Any, str | None]:
        """(what the handler returned, or Lambda's error document; the error or None)."""
        context = LambdaContext(self.function, self.region, self.account)
        rid = context.aws_request_id
        error: str | None = None
        started = time.perf_counter()
        try:
            if self.handler is None:
                self.start()  # init, then the invocation (whose Duration leaves init out)
            print(f"START RequestId: {rid} Version: $LATEST", file=self.log, flush=True)
            started = time.perf_counter()
            assert self.handler is not None  # noqa: S101 - set by start()
            result = self.handler(event, context)
        except Exception as exc:
            if self.handler is None:  # init failed: no START was written
                print(f"START RequestId: {rid} Version: $LATEST", file=self.log, flush=True)
            error = f"{type(exc).__name__}: {exc}"
            # The function's frames, not this runner's or the import machinery's.
            frames = traceback.extract_tb(exc.__traceback__)
            ours = ("lambdarun_cli", "importlib")
            trace = traceback.format_list(
                [f for f in frames if not any(o in f.filename for o in ours)]
            )
            print(f"[ERROR] {error}\n{''.join(trace)}", file=self.log, flush=True)
            result = {"errorMessage": str(exc), "errorType": type(exc).__name__, "requestId": rid}
            result["stackTrace"] = trace
        print(f"END RequestId: {rid}", file=self.log)
        self._report(rid, (time.perf_counter() - started) * 1000)
        return result, error

    def _report(self, rid: str, duration_ms: float) -> None:
        import math
        import resource

        init, self.init_ms = self.init_ms, None
        used = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        fields = [
            f"REPORT RequestId: {rid}",
            *([f"Init Duration: {init:.2f} ms"] if init is not None else []),
            f"Duration: {duration_ms:.2f} ms",
            f"Billed Duration: {math.ceil(duration_ms)} ms",
            f"Memory Size: {self.function.memory} MB",
            f"Max Memory Used: {used} MB",
        ]
        print("\t".join(fields), file=self.log, flush=True)

    def stop(self) -> None:
        """What Lambda's shutdown does: SIGTERM to the runtime, whose hooks close connections."""
        hook = signal.getsignal(signal.SIGTERM)
        if callable(hook) and self.handler is not None:
            with contextlib.suppress(SystemExit):
                hook(signal.SIGTERM, None)


def read_event(path: str | None) -> bytes:
    if path is None:
        return b"{}"
    try:
        data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as exc:
        raise LocalError(f"--event {path}: {exc.strerror or exc}") from exc
    try:
        json.loads(data)
    except ValueError as exc:
        raise LocalError(f"--event {path}: not JSON: {exc}") from exc
    return data


def describe(function: Function, stack: Stack, log: TextIO) -> None:
    here = ARCHITECTURES.get(platform.machine().lower(), platform.machine())
    version = "python{}.{}".format(*sys.version_info[:2])
    notes = []
    if function.runtime and function.runtime != version:
        notes.append(f"template runtime {function.runtime}, running {version}")
    if function.architectures and here not in function.architectures:
        notes.append(f"template architecture {'/'.join(function.architectures)}, running {here}")
    print(
        f"lambdarun: {function.logical_id} ({function.handler}) as {function.name}"
        + (f"; {'; '.join(notes)}" if notes else ""),
        file=log,
    )
    if function.unresolved:
        print(
            f"lambdarun: no local value for {', '.join(function.unresolved)} (left empty): "
            "set AWS_ENDPOINT_URL and run `lambdarun local up`, or pass --env-vars",
            file=log,
        )


def invoke(
    stack: Stack,
    function_id: str,
    *,
    event: bytes,
    env_vars: Mapping[str, Mapping[str, str]],
    emulator: bool,
    out: TextIO,
    log: TextIO,
) -> int:
    """Run one invocation; its response on `out`, logs on `log`. 0, or 1 when it failed."""
    try:
        function = stack.template.function(function_id)
    except TemplateError as exc:
        raise LocalError(str(exc)) from exc
    env = function_environment(function, stack, env_vars, os.environ)
    describe(function, stack, log)
    binary, why = find_emulator() if emulator else (None, "--no-emulator")
    if binary is not None and not _has_runtime_client():
        binary, why = None, "awslambdaric is not installed in this Python"
    if binary is None:
        print(f"lambdarun: running the handler in this process ({why})", file=log, flush=True)
        return _invoke_in_process(function, env, stack, event, out, log)
    print(f"lambdarun: Runtime Interface Emulator {binary}", file=log, flush=True)
    try:
        with Emulator(binary, function, env, log) as rie:
            result = rie.invoke(event)
    except (OSError, urllib.error.URLError) as exc:
        raise LocalError(f"the emulator: {exc}") from exc
    out.write(result.payload.decode(errors="replace") + "\n")
    out.flush()
    if result.error:
        print(f"lambdarun: {function_id} failed: {result.error}", file=log)
        return 1
    return 0


def _has_runtime_client() -> bool:
    import importlib.util

    return importlib.util.find_spec("awslambdaric") is not None


def _invoke_in_process(
    function: Function, env: dict[str, str], stack: Stack, event: bytes, out: TextIO, log: TextIO
) -> int:
    # The function's own output goes to the log, as on Lambda; stdout carries only the response.
    out.flush()
    response_fd = os.dup(out.fileno())
    os.dup2(log.fileno(), out.fileno())
    runner = InProcess(function, env, stack, log)
    result, error = runner.invoke(json.loads(event))
    runner.stop()
    sys.stdout.flush()
    with os.fdopen(response_fd, "w") as response:
        response.write(json.dumps(result) + "\n")
    if error:
        print(f"lambdarun: {function.logical_id} failed: {error}", file=log)
        return 1
    return 0


def stack_from_args(args: Any, log: TextIO) -> Stack:
    from lambdarun_cli.local_template import parse_parameter_overrides

    return open_stack(
        template_path=Path(args.template_file),
        stack_name=args.stack_name,
        config_env=args.config_env,
        overrides=parse_parameter_overrides(args.parameter_overrides or []),
        state_path=Path(args.state),
        out=log,
    )


def command(args: Any) -> int:
    """`lambdarun local invoke`."""
    try:
        event = read_event(args.event)
        env_vars = read_env_vars(Path(args.env_vars) if args.env_vars else None)
        stack = stack_from_args(args, sys.stderr)
        return invoke(
            stack,
            args.function,
            event=event,
            env_vars=env_vars,
            emulator=args.emulator,
            out=sys.stdout,
            log=sys.stderr,
        )
    except (LocalError, TemplateError) as exc:
        print(f"lambdarun local invoke: {exc}", file=sys.stderr)
        return 2
