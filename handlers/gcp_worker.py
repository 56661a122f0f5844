"""Cloud Run worker: a functions-framework CloudEvent target for the Pub/Sub `messagePublished`
events Eventarc delivers. Each event is one job message for the shared job runner.

    functions-framework --target on_job_message --source handlers/gcp_worker.py \
        --signature-type cloudevent

Returning answers 200 and Pub/Sub acknowledges. `JobNotDone` answers 500: Pub/Sub delivers the
message again with backoff and dead-letters it after the subscription's maximum delivery
attempts. A malformed event answers 400 (`MalformedEvent`): Pub/Sub treats that as a failure
too, so the message reaches the dead-letter topic without ever running. Duplicate deliveries
(the same ce-id) are safe: the runner acknowledges a finished job without running it again.
"""

from __future__ import annotations

import gc

gc.disable()  # see handlers/aws_http.py

import asyncio  # noqa: E402
import atexit  # noqa: E402
import base64  # noqa: E402
import binascii  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import threading  # noqa: E402
from typing import TYPE_CHECKING, Any  # noqa: E402

import functions_framework  # noqa: E402
from werkzeug.exceptions import BadRequest, InternalServerError  # noqa: E402

from adapters.messages import decode_body  # noqa: E402
from adapters.ports import Disposition  # noqa: E402
from adapters.records import JobMessage, ScheduleTick  # noqa: E402
from api.cloud_logging import trace_scope  # noqa: E402
from api.logs import configure_logging  # noqa: E402
from api.runtime import Runtime, UnknownSchedule  # noqa: E402
from api.settings import load_settings  # noqa: E402

if TYPE_CHECKING:
    from cloudevents.http import CloudEvent

MESSAGE_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"
logger = logging.getLogger(__name__)


class MalformedEvent(BadRequest):
    """An event no run of this worker can use: wrong type, no message, undecodable data."""


class JobNotDone(InternalServerError):
    """The job asked to be delivered again (it failed, or another worker holds it)."""


class ProcessRuntime:
    """One Runtime and one event loop per process, the loop on a thread of its own.

    functions-framework calls the target from gunicorn's worker threads, and gunicorn forks
    its worker after this module was imported: so the loop and the open connections are made
    on the first event in the serving process, and every call is handed to that loop."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid: int | None = None

    def handle(self, item: JobMessage | ScheduleTick) -> Disposition:
        future = asyncio.run_coroutine_threadsafe(self._handle(item), self._started())
        return future.result()

    async def _handle(self, item: JobMessage | ScheduleTick) -> Disposition:
        traceparent = item.attributes.get("traceparent") if isinstance(item, JobMessage) else None
        with trace_scope(traceparent):
            return await self.runtime.deliver(item)

    def _started(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is not None and self._pid == os.getpid():
                return self._loop
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="job-runner", daemon=True)
            thread.start()
            try:
                asyncio.run_coroutine_threadsafe(self.runtime.start(), loop).result()
            except BaseException:
                _close(loop, thread)
                raise  # this event fails (Pub/Sub retries it); the next one tries again
            self._loop, self._thread, self._pid = loop, thread, os.getpid()
            atexit.register(self.stop)
            return loop

    def stop(self) -> None:
        """Close the connections at exit (gunicorn's worker exits on SIGTERM)."""
        with self._lock:
            loop, self._loop = self._loop, None
            if loop is None or self._pid != os.getpid():
                return
            try:
                asyncio.run_coroutine_threadsafe(self.runtime.stop(), loop).result(timeout=5)
            except Exception:
                logger.exception("closing the runtime failed")
            finally:
                _close(loop, self._thread)


def _close(loop: asyncio.AbstractEventLoop, thread: threading.Thread | None) -> None:
    """Stop the loop and close it, so its self-pipe sockets do not outlive it."""
    loop.call_soon_threadsafe(loop.stop)
    if thread is not None:
        thread.join(timeout=5)
    if not loop.is_running():
        loop.close()


settings = load_settings()
configure_logging(settings.log_level, json_lines=settings.stage != "local")
process = ProcessRuntime(Runtime.build(settings))

gc.freeze()
gc.enable()


def job_message_from(event: CloudEvent) -> JobMessage | ScheduleTick:
    """The job message (or Cloud Scheduler's tick) a messagePublished event carries;
    `MalformedEvent` if there is none."""
    if event["type"] != MESSAGE_PUBLISHED:
        raise MalformedEvent(f"expected a {MESSAGE_PUBLISHED} event, got {event['type']!r}")
    data: Any = event.get_data()
    message = data.get("message") if isinstance(data, dict) else None
    if not isinstance(message, dict):
        raise MalformedEvent("the event data holds no Pub/Sub message")
    attributes = message.get("attributes") or {}
    if not isinstance(attributes, dict) or not all(
        isinstance(value, str) for value in attributes.values()
    ):
        raise MalformedEvent("the message attributes are not strings")
    try:
        body = base64.b64decode(message.get("data") or "", validate=True)
        return decode_body(body, attributes)
    except (binascii.Error, ValueError) as exc:  # PoisonMessage is a ValueError
        raise MalformedEvent(f"the message is not a job message: {exc}") from exc


@functions_framework.cloud_event
def on_job_message(cloud_event: CloudEvent) -> None:
    try:
        message = job_message_from(cloud_event)
    except MalformedEvent as exc:
        logger.error(
            "event %s (%s) refused, it will be dead-lettered: %s",
            cloud_event["id"],
            cloud_event["type"],
            exc.description,
        )
        raise
    try:
        disposition = process.handle(message)
    except UnknownSchedule as exc:
        logger.error("event %s: no scheduled task %s here; dead-lettered", cloud_event["id"], exc)
        raise MalformedEvent(f"no scheduled task {exc}") from exc
    if disposition is Disposition.RETRY:
        what = message.schedule if isinstance(message, ScheduleTick) else message.job_id
        logger.warning("%s not done; Pub/Sub will deliver it again", what)
        raise JobNotDone(f"{what} is not done; deliver it again")
