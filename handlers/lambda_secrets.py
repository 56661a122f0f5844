"""Secret settings for the Lambda entry points, read from AWS Secrets Manager or SSM Parameter
Store before the settings are loaded.

For every environment variable `X_SECRET_ID` (a Secrets Manager secret name or ARN) or
`X_PARAMETER` (an SSM parameter name; SecureStrings are decrypted) the value is fetched through
Powertools parameters, cached for `max_age` seconds, and set as `X`, where pydantic-settings
reads it like any other setting. `api/` never learns where a value came from and imports no AWS
SDK. Without such a variable nothing is imported and nothing is fetched: a configuration
without secrets pays nothing at cold start. See docs/secrets.md.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.parameters import BaseProvider

Source = Literal["secretsmanager", "ssm"]
SUFFIXES: tuple[tuple[str, Source], ...] = (("_SECRET_ID", "secretsmanager"), ("_PARAMETER", "ssm"))
DEFAULT_MAX_AGE = 300  # seconds; POWERTOOLS_PARAMETERS_MAX_AGE overrides it
TIMEOUT = 2.0  # seconds per connect/read: Lambda's init phase has 10 s in all
_DESCRIBED = {"secretsmanager": "Secrets Manager secret", "ssm": "SSM parameter"}

logger = logging.getLogger(__name__)
_providers: dict[Source, BaseProvider] = {}


class SecretsError(RuntimeError):
    """A secret the environment refers to cannot be read; the message names the variable."""


@dataclass(frozen=True, slots=True)
class SecretReference:
    """`variable` (e.g. CURSOR_SECRET_PARAMETER) names where the value of `setting` is kept."""

    variable: str
    setting: str
    source: Source
    name: str


def references(environ: Mapping[str, str]) -> list[SecretReference]:
    """The secret references in `environ`, in a stable order."""
    found = []
    for variable, name in environ.items():
        for suffix, source in SUFFIXES:
            if variable.endswith(suffix) and len(variable) > len(suffix):
                setting = variable.removesuffix(suffix)
                found.append(SecretReference(variable, setting, source, name.strip()))
    return sorted(found, key=lambda reference: reference.variable)


def resolve_secrets(
    environ: MutableMapping[str, str] | None = None, *, max_age: int | None = None
) -> list[str]:
    """Set each referenced setting in `environ` (default: the process environment) from its
    secret and return the settings' names; `SecretsError` names the variable that failed."""
    environ = os.environ if environ is None else environ
    found = references(environ)
    if not found:
        return []
    _check(found)
    from aws_lambda_powertools.utilities.parameters import GetParameterError

    age = max_age if max_age is not None else _max_age(environ)
    with _response_bodies_unlogged():
        for reference in found:
            what = f"{_DESCRIBED[reference.source]} {reference.name!r}"
            try:
                value = _fetch(reference, age)
            except GetParameterError as exc:
                raise SecretsError(
                    f"{reference.variable}: cannot read the {what} for {reference.setting}: {exc}"
                ) from exc
            if not value:
                raise SecretsError(f"{reference.variable}: the {what} is empty")
            environ[reference.setting] = value
    settings = [reference.setting for reference in found]
    # Names only: a value never reaches a log line.
    logger.info("settings read from secrets: %s", ", ".join(settings))
    return settings


def forget() -> None:
    """Drop the providers and their caches, so a changed environment takes effect (tests)."""
    _providers.clear()


def _check(found: list[SecretReference]) -> None:
    from api.settings import Settings

    known = {name.upper() for name in Settings.model_fields}
    seen: dict[str, str] = {}
    for reference in found:
        if reference.setting.upper() not in known:
            raise SecretsError(
                f"{reference.variable}: {reference.setting} is not a setting; a secret reference "
                "is named after the setting it fills (CURSOR_SECRET_PARAMETER, "
                "DATABASE_URL_SECRET_ID, ...)"
            )
        if not reference.name:
            raise SecretsError(f"{reference.variable} is empty; name the secret or unset it")
        other = seen.setdefault(reference.setting, reference.variable)
        if other != reference.variable:
            raise SecretsError(
                f"{other} and {reference.variable} both fill {reference.setting}; keep one"
            )


def _max_age(environ: Mapping[str, str]) -> int:
    text = environ.get("POWERTOOLS_PARAMETERS_MAX_AGE", "")
    try:
        return int(text) if text else DEFAULT_MAX_AGE
    except ValueError:
        raise SecretsError(
            f"POWERTOOLS_PARAMETERS_MAX_AGE must be whole seconds, not {text!r}"
        ) from None


def _fetch(reference: SecretReference, max_age: int) -> str:
    provider = _provider(reference.source)
    if reference.source == "ssm":
        value = provider.get(reference.name, max_age=max_age, decrypt=True)
    else:
        value = provider.get(reference.name, max_age=max_age)
    if isinstance(value, bytes):  # a binary secret (SecretBinary)
        try:
            return value.decode()
        except UnicodeDecodeError:
            raise SecretsError(f"{reference.variable}: the secret is binary, not text") from None
    if not isinstance(value, str):
        raise SecretsError(f"{reference.variable}: expected text, got {type(value).__name__}")
    return value


def _provider(source: Source) -> BaseProvider:
    """One provider per service for the process, so its cache serves later calls. Its client
    comes from the session the DynamoDB and SQS adapters share: credentials resolve once."""
    found = _providers.get(source)
    if found is None:
        from aws_lambda_powertools.utilities.parameters import SecretsProvider, SSMProvider

        from adapters import aws_clients

        client = aws_clients.client(source, timeout=TIMEOUT)
        if source == "ssm":
            found = SSMProvider(boto3_client=client)
        else:
            found = SecretsProvider(boto3_client=client)
        _providers[source] = found
    return found


@contextlib.contextmanager
def _response_bodies_unlogged() -> Iterator[None]:
    """botocore logs every response body at DEBUG (`botocore.parsers`): with LOG_LEVEL=DEBUG on
    the root logger the secret values would be in the logs. Quiet it while they are fetched."""
    parsers = logging.getLogger("botocore.parsers")
    saved = parsers.level
    if parsers.getEffectiveLevel() < logging.INFO:
        parsers.setLevel(logging.INFO)
    try:
        yield
    finally:
        parsers.setLevel(saved)
