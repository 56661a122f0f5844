"""A `lambdarun local up` stack on moto in server mode, driven by the `lambdarun local`
commands as a developer drives them: the AWS shape for the end-to-end tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.dynamodb_store import DynamoDBStore
from adapters.sqs_queue import SqsQueue
from tests.support.moto_server import sqs_client

ROOT = Path(__file__).resolve().parents[2]
LAMBDARUN = str(Path(sys.executable).parent / "lambdarun")


@dataclass
class LocalStack:
    """One `local up` stack on moto, its state file and what it made."""

    state: Path
    workdir: Path
    table: str
    queue_url: str
    dlq_url: str

    def run(self, *args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [LAMBDARUN, "local", *args, "--state", str(self.state)],
            cwd=ROOT,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return result

    def worker_command(self, *more: str) -> list[str]:
        return [
            LAMBDARUN,
            "local",
            "start-worker",
            "--state",
            str(self.state),
            "--wait-time-seconds",
            "0",  # moto's server here answers one request at a time: no long polls
            *more,
        ]

    def work_until_empty(self) -> str:
        """start-worker until the queue holds nothing visible, in flight or delayed."""
        result = subprocess.run(
            [*self.worker_command("--until-empty")],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return result.stderr

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        path = self.workdir / f"event-{uuid.uuid4().hex[:6]}.json"
        path.write_text(json.dumps(event))
        # The template's AUTH=jwt waits for an issuer given at deployment; locally, on Stage
        # test (the only stage besides local where the app allows it), authentication is off.
        return self.invoke_function("ApiFunction", path)

    def invoke_function(self, function: str, event: Path, **env: str) -> dict[str, Any]:
        """`lambdarun local invoke FUNCTION -e EVENT` on this stack; its response."""
        env_vars = self.workdir / "local-env.json"
        env_vars.write_text(json.dumps({"ApiFunction": {"AUTH": "off"}, "Parameters": env}))
        result = self.run("invoke", function, "-e", str(event), "--env-vars", str(env_vars))
        assert result.returncode == 0, result.stderr
        response: dict[str, Any] = json.loads(result.stdout)
        return response

    def store(self) -> DynamoDBStore:
        return DynamoDBStore(self.table, timeout=5.0)

    def queue(self) -> SqsQueue:
        return SqsQueue(self.queue_url)

    def counts(self, url: str) -> tuple[int, int]:
        """(visible, in flight) on a queue."""
        with sqs_client() as sqs:
            answer = sqs.get_queue_attributes(
                QueueUrl=url,
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                ],
            )["Attributes"]
        return (
            int(answer["ApproximateNumberOfMessages"]),
            int(answer["ApproximateNumberOfMessagesNotVisible"]),
        )

    def dead_letters(self) -> list[str]:
        bodies: list[str] = []
        with sqs_client() as sqs:
            while True:
                got = sqs.receive_message(QueueUrl=self.dlq_url, MaxNumberOfMessages=10)
                messages = got.get("Messages", [])
                if not messages:
                    return sorted(bodies)
                bodies += [m["Body"] for m in messages]


def local_stack(tmp_path: Path, *, max_receive_count: int, visibility_seconds: int) -> LocalStack:
    """`lambdarun local up` of template.yaml on the moto server AWS_ENDPOINT_URL names (Stage
    test: no authentication), its queue's visibility timeout shortened for tests."""
    state = tmp_path / "local-aws.json"
    name = f"shape-{uuid.uuid4().hex[:8]}"
    result = subprocess.run(
        [
            LAMBDARUN,
            "local",
            "up",
            "--stack-name",
            name,
            "--state",
            str(state),
            "--parameter-overrides",
            f"MaxReceiveCount={max_receive_count} Stage=test",  # test: no authentication
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    resources = json.loads(state.read_text())["Stack"]["Resources"]
    queue_url = resources["JobsQueue"]["QueueUrl"]
    # The template's 190 s suits Lambda; a test waits for redeliveries.
    with sqs_client() as sqs:
        sqs.set_queue_attributes(
            QueueUrl=queue_url, Attributes={"VisibilityTimeout": str(visibility_seconds)}
        )
    return LocalStack(
        state=state,
        workdir=tmp_path,
        table=resources["Table"]["Ref"],
        queue_url=queue_url,
        dlq_url=resources["JobsDeadLetterQueue"]["QueueUrl"],
    )
