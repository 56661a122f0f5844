"""`make deploy-check`: a deploy that would fail, or deploy the wrong thing, is stopped before it
starts, one line per missing value; and what CI deploys is filled in completely."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from lambdarun_cli.deploy_check import (
    GCP_PLACEHOLDERS,
    aws_problems,
    cursor_secret_problem,
    deploy_overrides,
    gcp_problems,
    parse_overrides,
    render,
    subscription_flags,
)
from tests.support.moto_server import aws_env, moto_server

__all__ = ["aws_env", "moto_server"]  # fixtures, used by name

ROOT = Path(__file__).resolve().parents[2]
SAMCONFIG, TEMPLATE = ROOT / "samconfig.toml", ROOT / "template.yaml"
ISSUER = {
    "REPLACE-ME.invalid/.well-known/jwks.json": "issuer.example.com/.well-known/jwks.json",
    "REPLACE-ME.invalid/": "issuer.example.com/",
    "REPLACE-ME": "https://api.example.com",
}


def filled_in(tmp_path: Path) -> Path:
    """samconfig.toml as a team has it once it chose its issuer."""
    text = SAMCONFIG.read_text()
    for placeholder, value in ISSUER.items():
        text = text.replace(placeholder, value)
    path = tmp_path / "samconfig.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_the_shipped_samconfig_is_refused_one_line_per_value(stage: str) -> None:
    result = subprocess.run(
        ["make", "--no-print-directory", "deploy-check", f"STAGE={stage}"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.startswith(f"{stage}:")]
    # prod must also say where its alarms go (template.yaml's ProdAlarmsHaveADestination).
    expected = ["JwtIssuer", "JwtAudience", "JwtJwksUrl"] + (
        ["AlarmEmail"] if stage == "prod" else []
    )
    assert [line.split()[1] for line in lines] == expected


@pytest.mark.parametrize("stage", ["default", "dev", "prod"])
def test_every_environment_gives_every_required_parameter(tmp_path: Path, stage: str) -> None:
    assert aws_problems(stage, filled_in(tmp_path), TEMPLATE) == []


def test_a_stage_that_lost_its_parameters_is_refused(tmp_path: Path) -> None:
    """What `--parameter-overrides JwtIssuer=...` on the command line does to the list."""
    path = filled_in(tmp_path)
    text = path.read_text().replace('Stage=\\"prod\\" ', "")
    path.write_text(text)
    problems = aws_problems("prod", path, TEMPLATE)
    assert "prod: Stage is required and samconfig.toml does not set it" in problems
    assert "prod: Stage is None, not 'prod'" in problems


def test_the_deploy_id_changes_with_the_commit_and_with_the_parameters(tmp_path: Path) -> None:
    path = filled_in(tmp_path)
    listed = parse_overrides(deploy_overrides("prod", path, "commit-a"))
    assert listed["Stage"] == "prod"
    assert listed["JwtIssuer"] == "https://issuer.example.com/"
    again = parse_overrides(deploy_overrides("prod", path, "commit-a"))["DeployId"]
    assert again == listed["DeployId"]
    assert parse_overrides(deploy_overrides("prod", path, "commit-b"))["DeployId"] != again
    path.write_text(path.read_text().replace('LogLevel=\\"INFO\\"', 'LogLevel=\\"DEBUG\\"'))
    assert parse_overrides(deploy_overrides("prod", path, "commit-a"))["DeployId"] != again


def test_a_missing_cursor_secret_is_found_before_the_deploy(
    aws_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import boto3

    path = filled_in(tmp_path)
    problem = cursor_secret_problem("prod", path)
    assert problem is not None
    assert "/lambdarun/prod/cursor-secret is missing" in problem
    assert "aws ssm put-parameter" in problem
    boto3.client("ssm").put_parameter(
        Name="/lambdarun/prod/cursor-secret", Type="SecureString", Value="x" * 64
    )
    assert cursor_secret_problem("prod", path) is None


def test_cloud_run_needs_a_value_for_every_placeholder(tmp_path: Path) -> None:
    problems = gcp_problems({}, ROOT / "cloudrun")
    named = {line.split()[1] for line in problems}
    assert {"PROJECT_ID", "REGION", "ISSUER_HOST", "API_AUDIENCE", "VPC_NETWORK"} <= named
    environ = {name: f"value-of-{name.lower()}" for name in GCP_PLACEHOLDERS}
    assert gcp_problems(environ, ROOT / "cloudrun") == []
    assert render(environ, ROOT / "cloudrun", tmp_path, tag="abc123") == []
    service = (tmp_path / "service.yaml").read_text()
    for name in GCP_PLACEHOLDERS:
        assert name not in service.replace("PROXY_HOPS", "")
    assert "https://value-of-issuer_host/" in service
    assert ":abc123" in service
    assert ":latest" not in service


def test_the_command_line_for_cloud_run(tmp_path: Path) -> None:
    environ = {**os.environ, **{name: "x" for name in GCP_PLACEHOLDERS}}
    del environ["ISSUER_HOST"]
    result = subprocess.run(
        ["make", "--no-print-directory", "deploy-check", "CLOUD=gcp"],
        cwd=ROOT, env=environ, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert [line for line in result.stderr.splitlines() if line.startswith("gcp:")] == [
        "gcp: ISSUER_HOST is not set: it fills cloudrun/service.yaml"
    ]


def test_the_subscription_settings_are_a_spec_the_docs_apply(tmp_path: Path) -> None:
    """Dead letters, attempts, backoff and ack deadline live in cloudrun/pubsub-subscription.json,
    and docs/cloudrun.md applies exactly that file; the ack deadline outlasts the worker's
    request timeout, or a job still running would be delivered again."""
    import json

    import yaml

    spec = json.loads((ROOT / "cloudrun" / "pubsub-subscription.json").read_text())
    worker = yaml.safe_load((ROOT / "cloudrun" / "worker.yaml").read_text())
    assert spec["ackDeadlineSeconds"] > worker["spec"]["template"]["spec"]["timeoutSeconds"]
    assert spec["deadLetterPolicy"]["deadLetterTopic"].endswith("/topics/lambdarun-jobs-dead")
    assert spec["deadLetterPolicy"]["maxDeliveryAttempts"] >= 5
    flags = subscription_flags(ROOT / "cloudrun", {"PROJECT_ID": "p1"}).split()
    assert flags == [
        "--dead-letter-topic=projects/p1/topics/lambdarun-jobs-dead",
        f"--max-delivery-attempts={spec['deadLetterPolicy']['maxDeliveryAttempts']}",
        "--min-retry-delay=10s",
        "--max-retry-delay=600s",
        f"--ack-deadline={spec['ackDeadlineSeconds']}",
    ]
    docs = (ROOT / "docs" / "cloudrun.md").read_text()
    assert "$(python3 -m lambdarun_cli.deploy_check gcp --subscription-flags)" in docs
