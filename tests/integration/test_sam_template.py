"""template.yaml: linted as SAM and CloudFormation would lint it, built as `sam build` builds it,
and holding the properties the queue, the worker and the table must have."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.cfn import load_template
from tests.support.services import service_missing

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".tools" / "sam" / "bin"
TEMPLATE = load_template(ROOT / "template.yaml")
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]


def tool(name: str) -> str:
    path = TOOLS / name
    if not path.exists():
        service_missing(name, f"{path} is missing; `make tools` installs it")
    return str(path)


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "SAM_CLI_TELEMETRY": "0", **env}
    return subprocess.run(
        args, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=600, check=False
    )


def test_cfn_lint_with_the_serverless_rules_is_clean() -> None:
    result = run(
        tool("cfn-lint"), "--append-rules", "cfn_lint_serverless.rules", "--", "template.yaml"
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_sam_validate_lint_is_clean() -> None:
    result = run(tool("sam"), "validate", "--lint")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_worker_reports_partial_batch_failures() -> None:
    worker = RESOURCES["WorkerFunction"]["Properties"]
    (event,) = [e for e in worker["Events"].values() if e["Type"] == "SQS"]
    assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert event["Properties"]["ScalingConfig"]["MaximumConcurrency"]


def test_the_queue_outlasts_six_worker_timeouts_and_dead_letters() -> None:
    queue = RESOURCES["JobsQueue"]["Properties"]
    timeout = RESOURCES["WorkerFunction"]["Properties"].get(
        "Timeout", TEMPLATE["Globals"]["Function"]["Timeout"]
    )
    assert queue["VisibilityTimeout"] >= 6 * timeout
    assert queue["MaximumMessageSize"] <= 262144
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {
        "Fn::GetAtt": ["JobsDeadLetterQueue", "Arn"]
    }


def test_the_table_has_the_keys_the_store_uses() -> None:
    table = RESOURCES["Table"]["Properties"]
    assert {k["AttributeName"]: k["KeyType"] for k in table["KeySchema"]} == {
        "pk": "HASH",
        "sk": "RANGE",
    }
    (index,) = table["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "gsi1"
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True


def test_no_policy_grants_every_action_or_resource() -> None:
    text = json.dumps(TEMPLATE)
    assert '"Action": "*"' not in text
    assert '"Resource": "*"' not in text


def test_sam_build_ships_only_runtime_code_compiled(tmp_path: Path) -> None:
    python312 = Path("/root/.pyenv/versions/3.12.1/bin")
    path = f"{python312}:{os.environ['PATH']}" if python312.exists() else os.environ["PATH"]
    build = tmp_path / "build"
    result = run(tool("sam"), "build", "--build-dir", str(build), PATH=path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for function in ("ApiFunction", "WorkerFunction"):
        root = build / function
        top = {p.name for p in root.iterdir()}
        assert {"api", "adapters", "handlers", "fastapi", "mangum"} <= top
        assert top.isdisjoint({"tests", "bench", "cloudrun", "lambdarun_cli", "docs", "events"})
        assert not list(root.glob("handlers/gcp_*"))
        assert list(root.glob("api/__pycache__/*.cpython-312.pyc"))
        size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
        print(f"{function}: {size / 1e6:.1f} MB unpacked", file=sys.stderr)
