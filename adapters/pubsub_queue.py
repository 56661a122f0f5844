"""Pub/Sub queue: publishes job messages through Pub/Sub's REST API; Eventarc (or a push
subscription) delivers them to the worker.

A small REST publisher instead of google-cloud-pubsub: one message per submission needs no
batching, and the official client (gRPC) adds about 0.33 s of imports and client set-up to a
process against about 0.1 s for httpx, paid here on the first send rather than at start-up
(docs/cloudrun.md, "Why a REST publisher"). On Google Cloud the
access token comes from the metadata server; `PUBSUB_EMULATOR_HOST` (the emulator, or the
tests' fake) turns authentication off and speaks plain HTTP.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import re
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from adapters.errors import ConfigurationError, Unavailable
from adapters.messages import encode_body

if TYPE_CHECKING:
    import httpx

    from adapters.records import JobMessage

# httpx logs every request at INFO: a line per published job. Failures surface as Unavailable.
# (httpx itself is imported on the first call, not at start-up: ~0.025 s off every cold start.)
logging.getLogger("httpx").setLevel(logging.WARNING)

PUBLIC_ENDPOINT = "https://pubsub.googleapis.com"
METADATA_HOST = "metadata.google.internal"
_TOKEN_PATH = "/computeMetadata/v1/instance/service-accounts/default/token"  # noqa: S105 - a URL path
# pubsub://projects/PROJECT/topics/TOPIC; topic names per Pub/Sub's resource-name rules.
_URL = re.compile(
    r"^pubsub://projects/(?P<project>[^/\s]+)/topics/(?P<topic>[A-Za-z][\w.~+%-]{2,254})$"
)
_RETRYABLE = frozenset({429, 500, 502, 503, 504})
_ATTEMPTS = 3
_MAX_ATTRIBUTE_VALUE = 1024  # bytes, Pub/Sub's limit


class PubSubQueue:
    """The Queue port on one Pub/Sub topic. `endpoint` and `metadata_host` default to Google's
    (or the emulator's, from `PUBSUB_EMULATOR_HOST`); `client` defaults to one made on first use
    and kept for the life of the process."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 2.0,
        endpoint: str | None = None,
        metadata_host: str | None = None,
        authenticate: bool | None = None,
        client: httpx.AsyncClient | None = None,
        environ: Mapping[str, str] = os.environ,
    ) -> None:
        match = _URL.match(url)
        if match is None:
            raise ConfigurationError(
                f"QUEUE_URL: expected pubsub://projects/PROJECT/topics/TOPIC, got {url!r}"
            )
        self.topic = f"projects/{match['project']}/topics/{match['topic']}"
        self.timeout = timeout
        emulator = environ.get("PUBSUB_EMULATOR_HOST")
        self.emulated = bool(emulator) and endpoint is None
        default = f"http://{emulator}" if emulator else PUBLIC_ENDPOINT
        self.endpoint = (endpoint or default).rstrip("/")
        self.authenticate = (not self.emulated) if authenticate is None else authenticate
        # GCE_METADATA_HOST is google-auth's name for the same override.
        self.metadata_host = metadata_host or environ.get("GCE_METADATA_HOST") or METADATA_HOST
        self._given = client
        self._client = client
        self._token: tuple[str, float] | None = None  # (access token, monotonic expiry)
        self._token_lock: asyncio.Lock | None = None

    async def open(self) -> None:
        return None  # nothing to connect: the client is made on the first send

    async def close(self) -> None:
        client, self._client = self._client, self._given
        if client is not None and client is not self._given:
            await client.aclose()

    async def ping(self) -> None:
        if self.emulated or not self.authenticate:
            await self._call("GET", f"/v1/{self.topic}")
            return
        # Anyone may ask which permissions they hold; a publisher holds no topics.get.
        answer = await self._call(
            "POST",
            f"/v1/{self.topic}:testIamPermissions",
            {"permissions": ["pubsub.topics.publish"]},
        )
        if "pubsub.topics.publish" not in answer.get("permissions", []):
            raise Unavailable("queue", f"queue: no permission to publish to {self.topic}")

    async def send(self, message: JobMessage) -> None:
        attributes = {
            name: value
            for name, value in message.attributes.items()
            if value and len(value.encode()) <= _MAX_ATTRIBUTE_VALUE
        }
        attributes["job_id"] = message.job_id
        data = base64.b64encode(encode_body(message).encode()).decode("ascii")
        body = {"messages": [{"data": data, "attributes": attributes}]}
        await self._call("POST", f"/v1/{self.topic}:publish", body)

    async def _call(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """One API call with up to three attempts on throttling, 5xx and connection errors;
        every failure becomes `Unavailable`."""
        import httpx

        client = self._http
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                headers = await self._auth_headers()
                response = await client.request(
                    method, self.endpoint + path, json=body, headers=headers
                )
            except httpx.HTTPError as exc:
                if attempt == _ATTEMPTS:
                    raise Unavailable("queue", f"queue: Pub/Sub unreachable: {exc!r}") from exc
            else:
                if response.status_code == 401 and self.authenticate and attempt < _ATTEMPTS:
                    self._token = None  # revoked or expired early: fetch another
                    continue
                if response.is_success:
                    answer: dict[str, Any] = response.json() if response.content else {}
                    return answer
                error = httpx.HTTPStatusError(
                    f"{response.status_code} {response.text[:300]}",
                    request=response.request,
                    response=response,
                )
                if response.status_code not in _RETRYABLE or attempt == _ATTEMPTS:
                    raise Unavailable(
                        "queue", f"queue: Pub/Sub answered {response.status_code} on {path}"
                    ) from error
            await asyncio.sleep(0.05 * 2**attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _auth_headers(self) -> dict[str, str]:
        if not self.authenticate:
            return {}
        token = self._token
        if token is None or token[1] - time.monotonic() < 60:
            if self._token_lock is None:
                self._token_lock = asyncio.Lock()
            async with self._token_lock:
                token = self._token
                if token is None or token[1] - time.monotonic() < 60:
                    token = self._token = await self._fetch_token()
        return {"Authorization": f"Bearer {token[0]}"}

    async def _fetch_token(self) -> tuple[str, float]:
        """The service account's access token from the metadata server (Cloud Run, GCE, GKE)."""
        import httpx

        url = f"http://{self.metadata_host}{_TOKEN_PATH}"
        try:
            response = await self._http.get(url, headers={"Metadata-Flavor": "Google"})
            response.raise_for_status()
            answer = response.json()
            return answer["access_token"], time.monotonic() + float(answer["expires_in"])
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            raise Unavailable(
                "queue", f"queue: no access token from the metadata server: {exc!r}"
            ) from exc

    @property
    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            import httpx

            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.timeout),
                limits=httpx.Limits(max_keepalive_connections=10, keepalive_expiry=60),
            )
        return self._client
