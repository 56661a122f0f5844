"""/v1/jobs"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response, status

from adapters.errors import NotFound
from adapters.records import JobRecord
from api.auth import JOBS_ADMIN, JOBS_WRITE, Principal, require
from api.deps import CallerDep, NowDep, OutboxDep, RegistryDep, SettingsDep, StoreDep, TraceDep
from api.errors import Problem, problem_type
from api.idempotency import idempotent
from api.ids import is_id
from api.jobs.submit import InvalidPayload, PayloadTooLarge, UnknownTask, submit_job
from api.media import require_json
from api.routes.problems import problems
from api.schemas import Job, JobCreate

router = APIRouter(prefix="/jobs", tags=["jobs"])


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Submit a background job",
    dependencies=[require(JOBS_WRITE), Depends(require_json), Depends(idempotent)],
    responses=problems(400, 409, 413, 415, 422, 503),
)
async def create_job(
    data: JobCreate,
    request: Request,
    response: Response,
    store: StoreDep,
    outbox: OutboxDep,
    registry: RegistryDep,
    now: NowDep,
    trace: TraceDep,
    caller: CallerDep,
    settings: SettingsDep,
) -> Job:
    try:
        job = await submit_job(
            store=store,
            outbox=outbox,
            registry=registry,
            task=data.task,
            payload=data.payload,
            now=now,
            attributes=trace,
            owner=caller.subject if caller else None,
            max_payload_bytes=settings.max_job_payload_bytes,
        )
    except PayloadTooLarge as exc:
        raise Problem(
            413,
            f"The payload is {exc.size} bytes as JSON; a job's payload may have {exc.limit}.",
            title="Payload too large",
            type=problem_type("payload-too-large"),
            limit=exc.limit,
        ) from exc
    except UnknownTask as exc:
        known = ", ".join(registry)
        raise _invalid(
            ["body", "task"], f"unknown task; registered tasks: {known}", "unknown_task"
        ) from exc
    except InvalidPayload as exc:
        errors = [
            {"loc": ["body", "payload", *e["loc"]], "msg": e["msg"], "type": e["type"]}
            for e in exc.error.errors()
        ]
        raise Problem(
            422,
            "The payload does not match the task.",
            title="Validation failed",
            type=problem_type("validation"),
            errors=errors,
        ) from exc
    response.headers["Location"] = str(request.url_for("get_job", job_id=job.id).path)
    return Job.of(job)


@router.get(
    "/{job_id}",
    summary="A job's status (its submitter's, or with jobs:admin)",
    responses=problems(404, 503),
)
async def get_job(job_id: str, store: StoreDep, caller: CallerDep) -> Job:
    job = await store.get_job(job_id) if is_id(job_id) else None
    # Someone else's job is as missing as one that never was: its id reveals nothing.
    if job is None or not may_read(caller, job):
        raise NotFound(f"job {job_id[:64]} does not exist")
    return Job.of(job)


def may_read(caller: Principal | None, job: JobRecord) -> bool:
    """Without authentication everyone may; else the submitter, or a holder of jobs:admin."""
    if caller is None or caller.has(JOBS_ADMIN):
        return True
    return job.owner is not None and job.owner == caller.subject


def _invalid(loc: list[str], msg: str, kind: str) -> Problem:
    return Problem(
        422,
        "The request does not match the schema.",
        title="Validation failed",
        type=problem_type("validation"),
        errors=[{"loc": loc, "msg": msg, "type": kind}],
    )
