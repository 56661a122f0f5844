"""POST /internal/pubsub/push: Pub/Sub push delivery into the API service itself, for
deployments that want one service instead of a separate worker.

Pub/Sub acknowledges a push on 102, 200, 201, 202 or 204 and retries anything else, then
dead-letters it after the subscription's maximum delivery attempts. So: done (or nothing left
to do) → 204; the job asked for redelivery → 500, the same status the functions-framework worker
answers, counted as an error by Cloud Run's metrics (a job did fail) and distinct from the
platform's own 429/503; a message no run could use → 400 (also retried, then dead-lettered
without ever running); a missing or bad token → 401, a good token from another account → 403.
"""

from __future__ import annotations

import base64
import binascii
import logging
from typing import Protocol

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from adapters.messages import PoisonMessage, decode_body
from adapters.ports import Disposition
from adapters.records import JobMessage, ScheduleTick
from api.cloud_logging import trace_scope
from api.deps import RuntimeDep
from api.errors import Problem, problem_type
from api.runtime import Runtime, UnknownSchedule

PUSH_PATH = "/internal/pubsub/push"
logger = logging.getLogger(__name__)


class PushVerifier(Protocol):
    """Authenticates a push request from its Authorization header."""

    async def check(self, authorization: str | None) -> tuple[int, str] | None:
        """None when the request may pass; else (401 or 403, why)."""


class PubSubMessage(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    data: str = ""  # base64
    attributes: dict[str, str] = Field(default_factory=dict)
    message_id: str | None = Field(default=None, alias="messageId")
    publish_time: str | None = Field(default=None, alias="publishTime")


class PushEnvelope(BaseModel):
    """The body of a push request (and the data of Eventarc's messagePublished CloudEvent)."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    message: PubSubMessage
    subscription: str | None = None
    delivery_attempt: int | None = Field(default=None, alias="deliveryAttempt")


def job_message_from(message: PubSubMessage) -> JobMessage | ScheduleTick:
    """Decode a Pub/Sub message into a job message (or Cloud Scheduler's tick); `PoisonMessage`
    if no run could use it."""
    try:
        body = base64.b64decode(message.data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise PoisonMessage("message data is not base64") from exc
    return decode_body(body, message.attributes)


def build_router(verifier: PushVerifier) -> APIRouter:
    """The push endpoint, every request authenticated by `verifier` before its body is read."""
    router = APIRouter(tags=["internal"])

    @router.post(PUSH_PATH, status_code=204, include_in_schema=False)
    async def pubsub_push(request: Request, runtime: RuntimeDep) -> Response:
        refusal = await verifier.check(request.headers.get("authorization"))
        if refusal is not None:
            status, reason = refusal
            headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'} if status == 401 else {}
            raise Problem(status, reason, type=problem_type("push-auth"), headers=headers)
        raw = await request.body()
        try:
            envelope = PushEnvelope.model_validate_json(raw)
            message = job_message_from(envelope.message)
        except (ValidationError, PoisonMessage) as exc:
            logger.error(
                "pubsub push: unusable message refused (it will be dead-lettered): %s", exc
            )
            raise Problem(
                400, f"Not a usable job message: {exc}", type=problem_type("poison-message")
            ) from exc
        if isinstance(message, ScheduleTick):
            return await _tick(runtime, message)
        with trace_scope(message.attributes.get("traceparent")):
            disposition = await runtime.deliver(message)
        if disposition is Disposition.RETRY:
            logger.warning("pubsub push: job %s not done; Pub/Sub will redeliver", message.job_id)
            raise Problem(
                500,
                "The job is not done; the message will be delivered again.",
                type=problem_type("job-retry"),
                job_id=message.job_id,
            )
        return Response(status_code=204)

    return router


async def _tick(runtime: Runtime, tick: ScheduleTick) -> Response:
    """Cloud Scheduler's tick, published to the jobs topic: run that scheduled task."""
    try:
        disposition = await runtime.deliver(tick)
    except UnknownSchedule as exc:
        logger.error("pubsub push: no scheduled task %s here; it will be dead-lettered", exc)
        raise Problem(
            400, f"No scheduled task {exc} here.", type=problem_type("poison-message")
        ) from exc
    if disposition is Disposition.RETRY:
        raise Problem(
            500,
            "The scheduled task could not run; the tick will be delivered again.",
            type=problem_type("job-retry"),
        )
    return Response(status_code=204)
