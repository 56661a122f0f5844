"""The SQS worker handler: every record runs the shared job runner; failures are reported one by
one in `batchItemFailures` and the rest succeed once, in whatever order and however often they
arrive; a SnapStart snapshot closes connections."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import ModuleType

import pytest

from adapters.records import JobMessage, JobRecord, JobStatus, UserRecord
from api.ids import new_id
from api.runtime import UnknownSchedule
from tests.support.lambda_events import LambdaContext
from tests.support.lambda_module import lambda_module
from tests.support.sqs_events import event, failures, job_record, record
from tests.support.stores import a_job


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    db = tmp_path_factory.mktemp("worker") / "worker.db"
    with lambda_module(
        "handlers.aws_worker",
        DATABASE_URL=f"sqlite:///{db}",
        AWS_LAMBDA_INITIALIZATION_TYPE="snap-start",
    ) as module:
        yield module


def submit(worker: ModuleType, task: str, payload: dict[str, object]) -> JobMessage:
    """Record a queued job in the worker's store, as the API does before sending its message."""
    now = datetime.now(UTC)
    job = JobRecord(
        id=new_id(),
        task=task,
        payload=payload,
        status=JobStatus.QUEUED,
        created_at=now,
        updated_at=now,
    )
    worker.environment.run(worker.runtime.adapters.store.create_job(job))
    return JobMessage(
        job_id=job.id, task=task, payload=payload, attributes={"traceparent": "00-ab-cd-01"}
    )


def new_user(worker: ModuleType) -> UserRecord:
    now = datetime.now(UTC)
    user = UserRecord(
        id=new_id(), email=f"{new_id()[-8:]}@example.com", name="A", created_at=now, updated_at=now
    )
    return worker.environment.run(worker.runtime.adapters.store.create_user(user))


def job(worker: ModuleType, job_id: str) -> JobRecord:
    found = worker.environment.run(worker.runtime.adapters.store.get_job(job_id))
    assert found is not None
    return found


def test_a_batch_reports_only_its_failures(worker: ModuleType) -> None:
    users = [new_user(worker) for _ in range(8)]
    good = [job_record(submit(worker, "users.welcome", {"user_id": u.id})) for u in users]
    poison = record("not json at all")
    unknown_version = record(
        '{"job_id": "x", "task": "users.welcome", "payload": {}, "version": 9}'
    )
    bad_payload = job_record(submit(worker, "users.welcome", {"user_id": 42}))
    response = worker.handler(event(*good, poison, unknown_version, bad_payload), LambdaContext())
    assert failures(response) == {
        poison["messageId"],
        unknown_version["messageId"],
        bad_payload["messageId"],
    }
    for user in users:
        fetched = worker.environment.run(worker.runtime.adapters.store.get_user(user.id))
        assert fetched is not None
        assert fetched.welcomed_at is not None


def test_a_duplicate_delivery_of_a_finished_job_is_acknowledged_without_running_again(
    worker: ModuleType,
) -> None:
    user = new_user(worker)
    message = submit(worker, "users.welcome", {"user_id": user.id})
    first = worker.handler(event(job_record(message)), LambdaContext())
    assert failures(first) == set()
    done = job(worker, message.job_id)
    again = worker.handler(
        event(job_record(message, receive_count=2), job_record(message)), LambdaContext()
    )
    assert failures(again) == set()
    after = job(worker, message.job_id)
    assert (after.status, after.attempts, after.finished_at) == (
        JobStatus.SUCCEEDED,
        1,
        done.finished_at,
    )


def deliver_until_settled(worker: ModuleType, records: list[dict[str, object]]) -> int:
    """Deliver a batch and, as SQS does, redeliver what it reports failed until nothing is;
    how many deliveries that took."""
    deliveries = 0
    while records:
        deliveries += 1
        assert deliveries <= 5, "still failing after five deliveries"
        failed = failures(worker.handler(event(*records), LambdaContext()))
        records = [r for r in records if r["messageId"] in failed]
    return deliveries


def test_out_of_order_and_repeated_deliveries_run_each_job_once(worker: ModuleType) -> None:
    users = [new_user(worker) for _ in range(3)]
    first, second, third = (submit(worker, "users.welcome", {"user_id": u.id}) for u in users)
    # The last submitted arrives first; the first twice in one batch (a redelivery racing the
    # original: one of them finds the job running and is reported for a retry), the second
    # after both; then a stale copy of the first long after it finished.
    deliver_until_settled(worker, [job_record(third)])
    deliver_until_settled(worker, [job_record(first, receive_count=2), job_record(first)])
    deliver_until_settled(worker, [job_record(second)])
    finished = job(worker, first.job_id).finished_at
    assert deliver_until_settled(worker, [job_record(first, receive_count=3)]) == 1

    for message, user in zip((first, second, third), users, strict=True):
        done = job(worker, message.job_id)
        assert (done.status, done.attempts) == (JobStatus.SUCCEEDED, 1)
        fetched = worker.environment.run(worker.runtime.adapters.store.get_user(user.id))
        assert fetched is not None
        assert fetched.welcomed_at is not None
    assert job(worker, first.job_id).finished_at == finished  # the stale copy changed nothing


def test_a_job_delivered_after_its_user_changed_or_was_deleted(worker: ModuleType) -> None:
    store = worker.runtime.adapters.store
    renamed, deleted = new_user(worker), new_user(worker)
    welcome_renamed = submit(worker, "users.welcome", {"user_id": renamed.id})
    welcome_deleted = submit(worker, "users.welcome", {"user_id": deleted.id})
    # Between submission and delivery the users moved on.
    worker.environment.run(
        store.update_user(renamed.id, {"name": "Renamed"}, at=datetime.now(UTC), expected_version=1)
    )
    worker.environment.run(store.delete_user(deleted.id))

    assert (
        deliver_until_settled(worker, [job_record(welcome_renamed), job_record(welcome_deleted)])
        == 1
    )

    user = worker.environment.run(store.get_user(renamed.id))
    assert user is not None
    assert (user.name, user.version) == ("Renamed", 3)  # the rename kept, then welcomed
    assert user.welcomed_at is not None
    skipped = job(worker, welcome_deleted.job_id)
    assert skipped.status is JobStatus.SUCCEEDED  # nothing left to do is not a failure
    assert skipped.result == {"skipped": "user no longer exists"}
    assert worker.environment.run(store.get_user(deleted.id)) is None


def test_a_batch_where_everything_fails_is_still_reported_record_by_record(
    worker: ModuleType,
) -> None:
    records = [record(f"poison {i}") for i in range(3)]
    response = worker.handler(event(*records), LambdaContext())
    assert failures(response) == {r["messageId"] for r in records}


def test_records_run_concurrently_on_one_loop(worker: ModuleType) -> None:
    users = [new_user(worker) for _ in range(10)]
    records = [job_record(submit(worker, "users.welcome", {"user_id": u.id})) for u in users]
    seen_tasks: set[int] = set()
    original = worker.runtime.runner.run

    async def spy(message: JobMessage) -> object:
        task = asyncio.current_task()
        assert task is not None
        seen_tasks.add(id(task))
        await asyncio.sleep(0)
        return await original(message)

    worker.runtime.runner.run = spy
    try:
        assert failures(worker.handler(event(*records), LambdaContext())) == set()
    finally:
        worker.runtime.runner.run = original
    assert len(seen_tasks) == 10  # one task per record, gathered


def test_snapstart_hooks_close_connections_before_the_snapshot_and_reopen_after(
    worker: ModuleType,
) -> None:
    from snapshot_restore_py import get_after_restore, get_before_snapshot

    before = [entry[0] for entry in get_before_snapshot()]
    after = [entry[0] for entry in get_after_restore()]
    assert worker.environment.stop in before
    assert worker.environment.start in after
    store = worker.runtime.adapters.store
    for hook in before:
        hook()
    assert store._db is None  # no connection goes into the snapshot
    for hook in after:
        hook()
    assert store._db is not None
    user = new_user(worker)
    message = submit(worker, "users.welcome", {"user_id": user.id})
    assert failures(worker.handler(event(job_record(message)), LambdaContext())) == set()


# ---- EventBridge Scheduler -------------------------------------------------------------------


def schedule_event(name: str = "jobs.sweep") -> dict[str, object]:
    """What template.yaml's ScheduleV2 event hands the worker, the time filled in."""
    return {"schedule": name, "version": 1, "time": datetime.now(UTC).isoformat()}


def test_the_schedule_event_sweeps_what_never_reached_the_queue(worker: ModuleType) -> None:
    user = new_user(worker)
    store = worker.runtime.adapters.store
    # Written with its outbox entry and never sent (the API process died, or the queue refused
    # it, after the commit), its grace now over.
    now = datetime.now(UTC)
    written = a_job(
        payload={"user_id": user.id}, created_at=now, updated_at=now,
        due_at=now - timedelta(seconds=1),
    )  # fmt: skip
    worker.environment.run(store.create_job(written))
    answer = worker.handler(schedule_event(), LambdaContext())
    assert answer == {"schedule": "jobs.sweep", "done": True}
    # The sweep sent it: this worker's queue (in-process here; SQS in the template) runs it.
    worker.environment.run(worker.runtime.adapters.queue.join())
    assert job(worker, written.id).status is JobStatus.SUCCEEDED
    welcomed = worker.environment.run(store.get_user(user.id))
    assert welcomed.welcomed_at is not None


def test_what_the_worker_cannot_serve_fails_loudly(worker: ModuleType) -> None:
    with pytest.raises(worker.UnsupportedEvent, match="SQS batch or a schedule"):
        worker.handler({"httpMethod": "GET", "path": "/"}, LambdaContext())
    with pytest.raises(worker.UnsupportedEvent, match="not a schedule event"):
        worker.handler({"schedule": "jobs.sweep", "version": 9}, LambdaContext())
    with pytest.raises(UnknownSchedule):
        worker.handler(schedule_event("reports.gone"), LambdaContext())
    # A tick belongs to the schedule, not the queue: on SQS it is a failed record.
    tick = record(body='{"schedule":"jobs.sweep","version":1}')
    assert failures(worker.handler(event(tick), LambdaContext())) == {tick["messageId"]}
