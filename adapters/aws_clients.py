"""Botocore clients shared by the AWS adapters: created on first use, then kept for the life of
the process (one execution environment on Lambda), never at import."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, TypeVar, cast

import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from adapters.errors import Unavailable

if TYPE_CHECKING:
    from botocore.client import BaseClient
    from botocore.session import Session
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_sqs import SQSClient

T = TypeVar("T")

_lock = threading.Lock()
_session: Session | None = None
_clients: dict[tuple[str, str | None, str | None, float], BaseClient] = {}


def client(
    service: str, *, timeout: float, region_name: str | None = None, endpoint_url: str | None = None
) -> BaseClient:
    """The process's client for these arguments. Everything else (credentials, region,
    AWS_ENDPOINT_URL[_<SERVICE>], AWS_RETRY_MODE, AWS_MAX_ATTEMPTS) is the SDK's own
    configuration. A bare botocore session: cheaper to import and build than boto3
    (figures in docs/dynamodb.md)."""
    key = (service, region_name, endpoint_url, timeout)
    with _lock:  # botocore sessions are not thread-safe; clients are
        found = _clients.get(key)
        if found is None:
            found = _clients[key] = _create(service, timeout, region_name, endpoint_url)
        return found


def _create(
    service: str, timeout: float, region_name: str | None, endpoint_url: str | None
) -> BaseClient:
    global _session  # noqa: PLW0603 - one session per process is the point
    if _session is None:
        _session = botocore.session.get_session()
    # botocore reads only AWS_DEFAULT_REGION; the other SDKs (and Lambda) also set AWS_REGION.
    region = region_name or _session.get_config_variable("region") or os.environ.get("AWS_REGION")
    config = Config(connect_timeout=timeout, read_timeout=timeout)
    return _session.create_client(
        service, region_name=region, endpoint_url=endpoint_url, config=config
    )


def dynamodb(*, timeout: float) -> DynamoDBClient:
    return cast("DynamoDBClient", client("dynamodb", timeout=timeout))


def sqs(*, timeout: float, region_name: str | None, endpoint_url: str | None) -> SQSClient:
    return cast(
        "SQSClient",
        client("sqs", timeout=timeout, region_name=region_name, endpoint_url=endpoint_url),
    )


def forget() -> None:
    """Close and drop every client and the session, so a changed environment takes effect
    (tests; a running process never needs it)."""
    global _session  # noqa: PLW0603
    with _lock:
        for found in _clients.values():
            found.close()
        _clients.clear()
        _session = None


async def call(component: str, request: Callable[[], T], *, expected: Collection[str] = ()) -> T:
    """Run one blocking SDK request in the default thread pool, so the event loop keeps serving
    (other requests, the worker's batch, readiness timeouts), and translate what went wrong:
    a ClientError whose code is in `expected` is re-raised for the adapter to interpret, every
    other failure to reach or use the service becomes `Unavailable(component)`."""
    try:
        return await asyncio.to_thread(request)
    except ClientError as exc:
        code = error_code(exc)
        if code in expected:
            raise
        raise Unavailable(component, f"{component}: AWS answered {code}: {exc}") from exc
    except ParamValidationError:
        raise  # our own bug, not an outage
    except BotoCoreError as exc:  # no connection, timeout, no credentials or region
        raise Unavailable(component, f"{component}: {exc}") from exc


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
