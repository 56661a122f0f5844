"""`lambdarun local up / invoke / start-worker` as a developer runs them, against moto in server
mode: the template's resources with the template's properties, sample events through the Runtime
Interface Emulator and in process, Lambda's rules for deleting a batch, and clear errors."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from adapters.dynamodb_store import DynamoDBStore
from lambdarun_cli.local_emulator import find_emulator
from lambdarun_cli.local_polling import Signals
from lambdarun_cli.local_template import SqsEvent
from lambdarun_cli.local_worker import EventSourceMapping, reported_failures
from tests.support.cfn import load_template
from tests.support.moto_server import (
    MotoServer,
    aws_env,
    aws_environment,
    dynamodb_client,
    moto_server,
    sqs_client,
)
from tests.support.services import service_missing
from tests.support.stores import a_job

__all__ = ["aws_env", "moto_server"]  # fixtures, used by name

ROOT = Path(__file__).resolve().parents[2]
LAMBDARUN = str(Path(sys.executable).parent / "lambdarun")
RESOURCES: dict[str, Any] = load_template(ROOT / "template.yaml")["Resources"]
STAGE = "Stage=test"
HEALTHZ_SAMPLES = [
    "http_v1_get_healthz.json",
    "alb_get_healthz.json",
    "function_url_get_healthz.json",
]


def lambdarun(*args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LAMBDARUN, *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def local_up(state: Path, stack: str, *more: str) -> subprocess.CompletedProcess[str]:
    """`local up`, on Stage test unless `more` gives parameters (Stage has no default)."""
    more = more if "--parameter-overrides" in more else ("--parameter-overrides", STAGE, *more)
    result = lambdarun("local", "up", "--stack-name", stack, "--state", str(state), *more)
    assert result.returncode == 0, result.stderr
    return result


def queue_attributes(url: str) -> dict[str, str]:
    with sqs_client() as sqs:
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return {str(k): v for k, v in attributes.items()}


def stack_of(state: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(state.read_text())
    return data


@pytest.fixture(scope="module")
def invoke_stack(
    moto_server: MotoServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """One local stack for the invoke tests; the environment points at moto for the module."""
    state = tmp_path_factory.mktemp("local") / "state.json"
    with aws_environment(moto_server):
        # Stage "test": the stage the app accepts without authentication configured.
        local_up(state, f"inv-{uuid.uuid4().hex[:8]}", "--parameter-overrides", STAGE)
        yield state


# The template's API function checks bearer tokens (AUTH=jwt) and leaves the issuer to
# deployment parameters; a local run turns it off, which the app allows on Stage test only.
LOCAL_ENV = {"ApiFunction": {"AUTH": "off"}}


def invoke(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`local invoke` on the module's stack, with LOCAL_ENV as --env-vars unless given one."""
    if "--env-vars" not in args:
        env_vars = state.parent / "local-env.json"
        env_vars.write_text(json.dumps(LOCAL_ENV))
        args = (*args, "--env-vars", str(env_vars))
    return lambdarun("local", "invoke", "--state", str(state), *args)


def emulator_or_skip() -> None:
    binary, why = find_emulator()
    if binary is None:
        service_missing("aws-lambda-rie", why)
    import importlib.util

    if importlib.util.find_spec("awslambdaric") is None:
        service_missing("awslambdaric", "not installed in this virtualenv")


# ------------------------------------------------------------------------------ up ----


def test_up_creates_what_the_template_declares(aws_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    state, stack = tmp_path / "state.json", f"up-{uuid.uuid4().hex[:8]}"
    result = local_up(state, stack)
    for logical_id in ("JobsQueue", "JobsDeadLetterQueue", "Table"):
        assert re.search(rf"created +AWS::\S+ +{logical_id} +{stack}-{logical_id}\n", result.stdout)

    table = dynamodb_client().describe_table(TableName=f"{stack}-Table")["Table"]
    declared = RESOURCES["Table"]["Properties"]
    assert table["KeySchema"] == declared["KeySchema"]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    [index] = table["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "gsi1"
    assert index["KeySchema"] == declared["GlobalSecondaryIndexes"][0]["KeySchema"]
    assert index["Projection"] == {"ProjectionType": "ALL"}
    ttl = dynamodb_client().describe_time_to_live(TableName=f"{stack}-Table")
    assert ttl["TimeToLiveDescription"]["AttributeName"] == "expires_at"
    assert ttl["TimeToLiveDescription"]["TimeToLiveStatus"] == "ENABLED"

    resources = stack_of(state)["Stack"]["Resources"]
    queue, dlq = resources["JobsQueue"], resources["JobsDeadLetterQueue"]
    attributes = queue_attributes(queue["QueueUrl"])
    props = RESOURCES["JobsQueue"]["Properties"]
    assert attributes["VisibilityTimeout"] == str(props["VisibilityTimeout"])
    assert attributes["MessageRetentionPeriod"] == str(props["MessageRetentionPeriod"])
    assert attributes["MaximumMessageSize"] == str(props["MaximumMessageSize"])
    redrive = json.loads(attributes["RedrivePolicy"])
    assert redrive == {"deadLetterTargetArn": dlq["Arn"], "maxReceiveCount": 5}
    dlq_props = RESOURCES["JobsDeadLetterQueue"]["Properties"]
    retention = queue_attributes(dlq["QueueUrl"])["MessageRetentionPeriod"]
    assert retention == str(dlq_props["MessageRetentionPeriod"])

    # The --env-vars part: what `sam local invoke --env-vars` could read as well.
    data = stack_of(state)
    for function in ("ApiFunction", "WorkerFunction"):
        assert data[function] == {
            "DATABASE_URL": f"dynamodb://{stack}-Table",
            "QUEUE_URL": queue["QueueUrl"],
        }


def cursor_secret() -> str:
    """The API function reads CURSOR_SECRET at init from the SSM parameter its
    CURSOR_SECRET_PARAMETER names (stage test: /lambdarun/test/cursor-secret)."""
    import botocore.session

    ssm: Any = botocore.session.get_session().create_client("ssm")
    try:
        answer = ssm.get_parameter(Name="/lambdarun/test/cursor-secret", WithDecryption=True)
    finally:
        ssm.close()
    value: str = answer["Parameter"]["Value"]
    assert answer["Parameter"]["Type"] == "SecureString"
    assert len(value) >= 32
    return value


def test_up_twice_is_fine_and_brings_back_the_template(
    aws_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    state, stack = tmp_path / "state.json", f"again-{uuid.uuid4().hex[:8]}"
    made = local_up(state, stack)
    first = stack_of(state)
    secret = cursor_secret()
    second = local_up(state, stack)
    assert "created" not in second.stdout
    lines = re.compile(r"^  (?:created|exists|updated) ", re.MULTILINE)
    assert len(lines.findall(second.stdout)) == len(lines.findall(made.stdout)) >= 4
    assert second.stdout.count("exists") == len(lines.findall(second.stdout))
    assert stack_of(state) == first
    assert cursor_secret() == secret  # a development secret is made once, never replaced

    url = first["Stack"]["Resources"]["JobsQueue"]["QueueUrl"]
    with sqs_client() as sqs:
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "7"})
    third = local_up(state, stack)
    assert "updated   AWS::SQS::Queue        JobsQueue" in third.stdout
    assert queue_attributes(url)["VisibilityTimeout"] == "190"


def test_parameter_overrides_reach_the_redrive_policy(
    aws_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    state, stack = tmp_path / "state.json", f"over-{uuid.uuid4().hex[:8]}"
    local_up(state, stack, "--parameter-overrides", "MaxReceiveCount=2 Stage=test")
    url = stack_of(state)["Stack"]["Resources"]["JobsQueue"]["QueueUrl"]
    assert json.loads(queue_attributes(url)["RedrivePolicy"])["maxReceiveCount"] == 2


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("MaxReceiveCount=0", "outside [1, 1000]"),
        ("", "parameter Stage has no default"),
        ("Stage=Not_Allowed", "does not match"),
        ("NoSuchParameter=1", "not among the template's parameters"),
        ("novalue", "expected Key=Value"),
    ],
)
def test_a_bad_parameter_override_is_refused(
    aws_env: pytest.MonkeyPatch, tmp_path: Path, override: str, message: str
) -> None:
    given = override if override.startswith("Stage=") or not override else f"{STAGE} {override}"
    result = lambdarun(
        "local", "up", "--state", str(tmp_path / "s.json"), "--parameter-overrides", given
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert not (tmp_path / "s.json").exists()


def test_up_needs_a_local_endpoint(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
    result = subprocess.run(
        [LAMBDARUN, "local", "up", "--state", str(tmp_path / "s.json")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "AWS_ENDPOINT_URL" in result.stderr


# -------------------------------------------------------------------------- invoke ----


@pytest.mark.parametrize("emulator", [True, False], ids=["emulator", "in-process"])
@pytest.mark.parametrize("sample", HEALTHZ_SAMPLES)
def test_invoke_answers_the_sample_events(invoke_stack: Path, sample: str, emulator: bool) -> None:
    if emulator:
        emulator_or_skip()
    mode = [] if emulator else ["--no-emulator"]
    result = invoke(invoke_stack, "ApiFunction", "-e", f"events/{sample}", *mode)
    assert result.returncode == 0, result.stderr
    response = json.loads(result.stdout)  # stdout holds the response and nothing else
    assert response["statusCode"] == 200
    assert json.loads(response["body"]) == {"status": "ok"}
    used = "Runtime Interface Emulator" if emulator else "in this process (--no-emulator)"
    assert used in result.stderr
    for line in ("START RequestId: ", "END RequestId: ", "REPORT RequestId: "):
        assert line in result.stderr


@pytest.mark.parametrize("emulator", [True, False], ids=["emulator", "in-process"])
def test_invoke_reaches_the_local_table_and_queue(invoke_stack: Path, emulator: bool) -> None:
    if emulator:
        emulator_or_skip()
    mode = [] if emulator else ["--no-emulator"]
    created = invoke(invoke_stack, "ApiFunction", "-e", "events/http_v2_create_user.json", *mode)
    assert created.returncode == 0, created.stderr
    status = json.loads(created.stdout)["statusCode"]
    assert status in {201, 409}  # the sample's e-mail: whichever mode ran first created it
    stack = stack_of(invoke_stack)["Stack"]
    table = stack["Resources"]["Table"]["Ref"]
    users = dynamodb_client().scan(TableName=table)["Items"]
    assert any(item.get("email", {}).get("S") == "ada@example.com" for item in users)


@pytest.mark.parametrize("emulator", [True, False], ids=["emulator", "in-process"])
def test_a_function_error_exits_non_zero(invoke_stack: Path, emulator: bool) -> None:
    if emulator:
        emulator_or_skip()
    mode = [] if emulator else ["--no-emulator"]
    result = invoke(invoke_stack, "ApiFunction", "-e", "events/sqs_job.json", *mode)
    assert result.returncode == 1
    error = json.loads(result.stdout)
    assert error["errorType"] == "UnsupportedEvent"
    assert "expected an API Gateway" in error["errorMessage"]
    assert "ApiFunction failed: UnsupportedEvent" in result.stderr


@pytest.mark.parametrize("emulator", [True, False], ids=["emulator", "in-process"])
def test_the_worker_sweeps_on_the_schedule_event(invoke_stack: Path, emulator: bool) -> None:
    """events/schedule.json is what EventBridge Scheduler hands the worker every minute: a job
    whose outbox entry is due (written, never sent) reaches the stack's queue."""
    if emulator:
        emulator_or_skip()
    resources = stack_of(invoke_stack)["Stack"]["Resources"]
    job_id = asyncio.run(due_job(resources["Table"]["Ref"]))
    mode = [] if emulator else ["--no-emulator"]
    result = invoke(invoke_stack, "WorkerFunction", "-e", "events/schedule.json", *mode)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"schedule": "jobs.sweep", "done": True}
    queue_url = resources["JobsQueue"]["QueueUrl"]
    with sqs_client() as sqs:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
        for message in messages:  # leave the queue as it was for the other tests
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    assert job_id in {json.loads(m["Body"])["job_id"] for m in messages}


async def due_job(table: str) -> str:
    """A job written with its outbox entry and never sent, its grace over."""
    store = DynamoDBStore(table)
    now = datetime.now(UTC)
    job = a_job(
        payload={"user_id": "nobody"}, created_at=now, updated_at=now,
        due_at=now - timedelta(seconds=1),
    )  # fmt: skip
    await store.create_job(job)
    return job.id


def test_env_vars_override_the_template(invoke_stack: Path, tmp_path: Path) -> None:
    database = tmp_path / "from-env-vars.db"
    env_vars = tmp_path / "env.json"
    env_vars.write_text(
        json.dumps(
            {"ApiFunction": {**LOCAL_ENV["ApiFunction"], "DATABASE_URL": f"sqlite:///{database}"}}
        )
    )
    result = invoke(
        invoke_stack,
        "ApiFunction",
        "--no-emulator",
        "-e",
        "events/http_v2_create_user.json",
        "--env-vars",
        str(env_vars),
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["statusCode"] == 201
    assert database.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["NoSuchFunction", "-e", "events/http_v1_get_healthz.json"],
            "no function 'NoSuchFunction'",
        ),
        (["JobsQueue"], "no function 'JobsQueue'"),
        (["ApiFunction", "-e", "events/missing.json"], "events/missing.json: No such file"),
        (["ApiFunction", "-e", "README.md"], "README.md: not JSON"),
        (["ApiFunction", "--env-vars", "events/missing.json"], "--env-vars events/missing.json"),
        (["ApiFunction", "--parameter-overrides", "LogLevel=LOUD"], "allowed values"),
    ],
)
def test_invoke_errors_are_clear(invoke_stack: Path, args: list[str], message: str) -> None:
    result = invoke(invoke_stack, *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    if "no function" in message:
        assert "ApiFunction, WorkerFunction" in result.stderr  # what it could have been


def test_invoke_refuses_a_state_from_another_endpoint(invoke_stack: Path) -> None:
    result = lambdarun(
        "local",
        "invoke",
        "ApiFunction",
        "--state",
        str(invoke_stack),
        AWS_ENDPOINT_URL="http://127.0.0.1:9",
    )
    assert result.returncode == 2
    assert "run `lambdarun local up` again" in result.stderr


@pytest.mark.parametrize(
    ("command", "words"),
    [
        (["local"], ["up", "invoke", "start-worker"]),
        (["local", "up"], ["--parameter-overrides", "--stack-name", "--endpoint-url"]),
        (["local", "invoke"], ["--event", "--env-vars", "--no-emulator", "FUNCTION"]),
        (["local", "start-worker"], ["--queue-url", "--max-batches", "--until-empty"]),
    ],
)
def test_help_is_there(command: list[str], words: list[str]) -> None:
    result = lambdarun(*command, "--help")
    assert result.returncode == 0
    for word in words:
        assert word in result.stdout


# -------------------------------------------------------- the event source mapping ----


@pytest.fixture
def mapping(aws_env: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[EventSourceMapping]:
    """An event source mapping on a fresh queue (visibility 1 s) holding three messages."""
    import botocore.session

    sqs: Any = botocore.session.get_session().create_client("sqs")
    url = sqs.create_queue(
        QueueName=f"esm-{uuid.uuid4().hex[:8]}", Attributes={"VisibilityTimeout": "1"}
    )["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
    for n in range(3):
        sqs.send_message(
            QueueUrl=url,
            MessageBody=f"m{n}",
            MessageAttributes={
                "traceparent": {"DataType": "String", "StringValue": f"t{n}"},
                "raw": {"DataType": "Binary", "BinaryValue": b"\x00\x01"},
            },
        )
    event = SqsEvent("Jobs", arn["QueueArn"], 10, 0, True, True, None)
    with (tmp_path / "log").open("w") as log:
        yield EventSourceMapping(
            sqs,
            queue_url=url,
            queue_arn=arn["QueueArn"],
            region=sqs.meta.region_name,
            event=event,
            wait_seconds=0,
            log=log,
        )
    sqs.close()


def test_records_are_built_as_lambda_builds_them(mapping: EventSourceMapping) -> None:
    messages = mapping.receive_batch(Signals(sys.stderr))
    assert len(messages) == 3
    records = mapping.event_of(messages)["Records"]
    record = records[0]
    assert list(record) == [
        "messageId",
        "receiptHandle",
        "body",
        "attributes",
        "messageAttributes",
        "md5OfBody",
        "md5OfMessageAttributes",
        "eventSource",
        "eventSourceARN",
        "awsRegion",
    ]
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == mapping.queue_arn
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert {"SentTimestamp", "SenderId", "ApproximateFirstReceiveTimestamp"} <= set(
        record["attributes"]
    )
    assert record["messageAttributes"]["traceparent"] == {
        "stringValue": record["body"].replace("m", "t"),
        "stringListValues": [],
        "binaryListValues": [],
        "dataType": "String",
    }
    assert record["messageAttributes"]["raw"]["binaryValue"] == "AAE="
    # The same shape the sample event has, so the handler's tests hold for what it gets here.
    sample = json.loads((ROOT / "events" / "sqs_job.json").read_text())["Records"][0]
    assert set(record) == set(sample)


def drain(mapping: EventSourceMapping, deadline: float = 10) -> list[str]:
    """Bodies that come back after the visibility timeout (bounded wait)."""
    back: list[str] = []
    end = time.monotonic() + deadline
    while time.monotonic() < end and not mapping.drained():
        for message in mapping.receive_batch(Signals(sys.stderr)):
            back.append(message["Body"])
            mapping.settle([message], None, None)
    return sorted(back)


@pytest.mark.parametrize(
    ("response", "error", "kept"),
    [
        (None, None, []),
        ({}, None, []),
        ({"batchItemFailures": []}, None, []),
        ({"batchItemFailures": ["m1"]}, None, ["m0", "m1", "m2"]),  # not objects
        ({"batchItemFailures": [{"itemIdentifier": ""}]}, None, ["m0", "m1", "m2"]),
        ({"batchItemFailures": [{"itemIdentifier": "nope"}]}, None, ["m0", "m1", "m2"]),
        ({"batchItemFailures": [{"messageId": "m1"}]}, None, ["m0", "m1", "m2"]),
        ("ok", None, ["m0", "m1", "m2"]),
        ({"statusCode": 200}, "ValueError: boom", ["m0", "m1", "m2"]),
        ("FAILED_M1", None, ["m1"]),
    ],
)
def test_deletes_follow_lambdas_rules(
    mapping: EventSourceMapping, response: Any, error: str | None, kept: list[str]
) -> None:
    messages = mapping.receive_batch(Signals(sys.stderr))
    if response == "FAILED_M1":
        failed = next(m["MessageId"] for m in messages if m["Body"] == "m1")
        response = {"batchItemFailures": [{"itemIdentifier": failed}]}
    mapping.settle(messages, response, error)
    assert drain(mapping) == kept


def test_reported_failures_without_report_batch_item_failures_deletes_all(
    mapping: EventSourceMapping,
) -> None:
    mapping.event = SqsEvent("Jobs", mapping.queue_arn, 10, 0, False, True, None)
    messages = mapping.receive_batch(Signals(sys.stderr))
    failed = messages[0]["MessageId"]
    mapping.settle(messages, {"batchItemFailures": [{"itemIdentifier": failed}]}, None)
    assert drain(mapping) == []
    assert reported_failures({"batchItemFailures": None}, {"a"}) == set()


def test_the_batching_window_gathers_a_batch(mapping: EventSourceMapping) -> None:
    mapping.event = SqsEvent("Jobs", mapping.queue_arn, 3, 1, True, True, None)
    started = time.monotonic()
    messages = mapping.receive_batch(Signals(sys.stderr))
    assert len(messages) == 3
    assert time.monotonic() - started < 1  # a full batch does not wait out the window


def test_start_worker_stops_at_once_on_sigterm_when_idle(
    aws_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    state = tmp_path / "state.json"
    local_up(state, f"sig-{uuid.uuid4().hex[:8]}")
    worker = subprocess.Popen(
        [LAMBDARUN, "local", "start-worker", "--state", str(state), "--wait-time-seconds", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert worker.stderr is not None
        line = ""
        deadline = time.monotonic() + 30
        while "polling" not in line and time.monotonic() < deadline:
            line = worker.stderr.readline()  # the handler is imported, the signals are ours
        worker.send_signal(signal.SIGTERM)
        _, rest = worker.communicate(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert worker.returncode == 0, rest
    assert "stopped after 0 batches" in rest
