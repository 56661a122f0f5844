"""Secrets on Lambda (handlers/lambda_secrets.py) against moto's SSM Parameter Store and Secrets
Manager in server mode: values reach the settings, a missing one stops start-up naming the
variable, values are cached, and no value reaches a log line or the output."""

from __future__ import annotations

import logging
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from api.settings import load_settings
from handlers import lambda_secrets
from handlers.lambda_secrets import SecretsError, references, resolve_secrets
from tests.support.lambda_module import lambda_module
from tests.support.moto_server import MotoServer, aws_env, moto_server

__all__ = ["aws_env", "moto_server"]  # fixtures, used by name

ROOT = Path(__file__).resolve().parents[2]
CURSOR_VALUE = "cursor-" + uuid.uuid4().hex  # unique, so finding it anywhere means a leak
PASSWORD = "pw-" + uuid.uuid4().hex
DATABASE_VALUE = f"postgresql://lambdarun:{PASSWORD}@db.internal:5432/lambdarun"


@pytest.fixture(autouse=True)
def fresh_providers() -> Iterator[None]:
    lambda_secrets.forget()
    yield
    lambda_secrets.forget()


@pytest.fixture
def stored(aws_env: pytest.MonkeyPatch) -> dict[str, str]:
    """A SecureString parameter and a Secrets Manager string secret, under fresh names."""
    suffix = uuid.uuid4().hex[:12]
    parameter, secret = f"/lambdarun/test-{suffix}/cursor-secret", f"lambdarun/test-{suffix}/db"
    boto3.client("ssm").put_parameter(Name=parameter, Value=CURSOR_VALUE, Type="SecureString")
    boto3.client("secretsmanager").create_secret(Name=secret, SecretString=DATABASE_VALUE)
    return {"CURSOR_SECRET_PARAMETER": parameter, "DATABASE_URL_SECRET_ID": secret}


def targets(recorded: list[dict[str, object]]) -> list[str]:
    """The AWS operations among recorded requests (JSON protocols name them in X-Amz-Target)."""
    found = []
    for request in recorded:
        headers = request.get("headers")
        if isinstance(headers, dict) and "X-Amz-Target" in headers:
            found.append(str(headers["X-Amz-Target"]).rsplit(".", 1)[-1])
    return found


# ---- resolution -------------------------------------------------------------------------------


def test_a_securestring_and_a_secret_string_reach_the_settings(
    aws_env: pytest.MonkeyPatch, stored: dict[str, str]
) -> None:
    for name, value in stored.items():
        aws_env.setenv(name, value)
    # As template.yaml's Globals do: a plain value, which the reference replaces.
    aws_env.setenv("DATABASE_URL", "dynamodb://placeholder")
    aws_env.setenv("CURSOR_SECRET", "placeholder")  # so the fixture's undo restores it

    assert resolve_secrets() == ["CURSOR_SECRET", "DATABASE_URL"]

    settings = load_settings()
    assert settings.cursor_secret.get_secret_value() == CURSOR_VALUE
    assert settings.database_url == DATABASE_VALUE


def test_a_binary_secret_is_read_as_text(aws_env: pytest.MonkeyPatch) -> None:
    name = f"lambdarun/test-{uuid.uuid4().hex[:12]}/binary"
    boto3.client("secretsmanager").create_secret(Name=name, SecretBinary=CURSOR_VALUE.encode())
    environ = {"CURSOR_SECRET_SECRET_ID": name}
    resolve_secrets(environ)
    assert environ["CURSOR_SECRET"] == CURSOR_VALUE


@pytest.mark.parametrize(
    ("variable", "error_code"),
    [
        ("CURSOR_SECRET_PARAMETER", "ParameterNotFound"),
        ("DATABASE_URL_SECRET_ID", "ResourceNotFoundException"),
    ],
)
def test_a_missing_secret_stops_start_up_naming_the_variable(
    aws_env: pytest.MonkeyPatch, variable: str, error_code: str
) -> None:
    missing = f"/lambdarun/missing-{uuid.uuid4().hex[:12]}"
    environ = {variable: missing}
    with pytest.raises(SecretsError) as raised:
        resolve_secrets(environ)
    message = str(raised.value)
    assert message.startswith(f"{variable}: cannot read the ")
    assert missing in message
    assert error_code in message
    assert environ == {variable: missing}  # nothing was set


def test_values_are_cached_so_a_second_call_makes_no_request(
    moto_server: MotoServer, stored: dict[str, str]
) -> None:
    with moto_server.recording() as first:
        resolve_secrets(dict(stored))
    with moto_server.recording() as second:
        again = dict(stored)
        resolve_secrets(again)
    lambda_secrets.forget()
    with moto_server.recording() as uncached:
        resolve_secrets(dict(stored), max_age=0)
        resolve_secrets(dict(stored), max_age=0)

    assert sorted(targets(first)) == ["GetParameter", "GetSecretValue"]
    assert targets(second) == []  # served from Powertools' cache
    assert again["CURSOR_SECRET"] == CURSOR_VALUE
    # The recorder does see every request: kept for 0 s, each call fetches both again.
    assert sorted(targets(uncached)) == ["GetParameter"] * 2 + ["GetSecretValue"] * 2


def test_no_secret_value_reaches_the_logs_even_at_debug(
    stored: dict[str, str], caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)  # the root logger: botocore logs response bodies at DEBUG
    parsers = logging.getLogger("botocore.parsers")
    level = parsers.level
    environ = dict(stored)
    resolve_secrets(environ)
    assert environ["CURSOR_SECRET"] == CURSOR_VALUE

    assert any(record.name.startswith("botocore") for record in caplog.records), (
        "botocore logged nothing at DEBUG: this test would prove nothing"
    )
    assert "settings read from secrets: CURSOR_SECRET, DATABASE_URL" in caplog.text
    out, err = capfd.readouterr()
    for value in (CURSOR_VALUE, DATABASE_VALUE, PASSWORD):
        assert value not in caplog.text
        assert value not in out + err
    assert parsers.level == level  # restored


# ---- the handlers -----------------------------------------------------------------------------


def test_the_http_handler_reads_its_secrets_before_the_settings(
    tmp_path: Path,
    stored: dict[str, str],
    capfd: pytest.CaptureFixture[str],
) -> None:
    with lambda_module(
        "handlers.aws_http",
        DATABASE_URL=f"sqlite:///{tmp_path}/secrets.db",
        CURSOR_SECRET_PARAMETER=stored["CURSOR_SECRET_PARAMETER"],
        POWERTOOLS_LOG_LEVEL="DEBUG",
    ) as module:
        settings = module.app.state.runtime.settings
        assert settings.cursor_secret.get_secret_value() == CURSOR_VALUE
    out, err = capfd.readouterr()
    assert CURSOR_VALUE not in out + err


def test_the_worker_stops_at_init_naming_a_missing_parameter(
    tmp_path: Path, aws_env: pytest.MonkeyPatch
) -> None:
    missing = f"/lambdarun/missing-{uuid.uuid4().hex[:12]}"
    with (
        pytest.raises(SecretsError, match=r"^CURSOR_SECRET_PARAMETER: cannot read .*not found"),
        lambda_module(
            "handlers.aws_worker",
            DATABASE_URL=f"sqlite:///{tmp_path}/worker.db",
            CURSOR_SECRET_PARAMETER=missing,
        ),
    ):
        pytest.fail("the module imported")


# ---- references, without AWS ------------------------------------------------------------------


def test_references_are_named_after_the_setting_they_fill() -> None:
    found = references(
        {"CURSOR_SECRET_PARAMETER": " /a ", "DATABASE_URL_SECRET_ID": "arn:x", "_PARAMETER": "/b"}
    )
    assert [(r.variable, r.setting, r.source, r.name) for r in found] == [
        ("CURSOR_SECRET_PARAMETER", "CURSOR_SECRET", "ssm", "/a"),
        ("DATABASE_URL_SECRET_ID", "DATABASE_URL", "secretsmanager", "arn:x"),
    ]


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"CURSOR_SECRETS_PARAMETER": "/a"}, "CURSOR_SECRETS_PARAMETER: CURSOR_SECRETS is not a"),
        ({"CURSOR_SECRET_PARAMETER": " "}, "CURSOR_SECRET_PARAMETER is empty"),
        (
            {"CURSOR_SECRET_PARAMETER": "/a", "CURSOR_SECRET_SECRET_ID": "b"},
            "CURSOR_SECRET_PARAMETER and CURSOR_SECRET_SECRET_ID both fill CURSOR_SECRET",
        ),
        (
            {"CURSOR_SECRET_PARAMETER": "/a", "POWERTOOLS_PARAMETERS_MAX_AGE": "5m"},
            "POWERTOOLS_PARAMETERS_MAX_AGE must be whole seconds",
        ),
    ],
)
def test_a_bad_reference_fails_before_any_request(environ: dict[str, str], message: str) -> None:
    with pytest.raises(SecretsError, match=message):
        resolve_secrets(dict(environ))


def test_without_references_nothing_is_imported() -> None:
    """The cold start of a configuration without secrets pays nothing for them."""
    code = (
        "import sys; from handlers.lambda_secrets import resolve_secrets\n"
        "assert resolve_secrets({'DATABASE_URL': 'sqlite://'}) == []\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] in "
        "{'boto3', 'botocore', 'aws_lambda_powertools', 'api', 'adapters'}]\n"
        "assert not loaded, loaded"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
