"""/v1/jobs"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response, status

from adapters.errors import NotFound
from api.deps import NowDep, QueueDep, RegistryDep, StoreDep, TraceDep
from api.errors import Problem, problem_type
from api.ids import is_id
from api.jobs.submit import InvalidPayload, UnknownTask, submit_job
from api.media import require_json
from api.routes.problems import problems
from api.schemas import Job, JobCreate

router = APIRouter(prefix="/jobs", tags=["jobs"])


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Submit a background job",
    dependencies=[Depends(require_json)],
    responses=problems(400, 415, 422, 503),
)
async def create_job(
    data: JobCreate,
    request: Request,
    response: Response,
    store: StoreDep,
    queue: QueueDep,
    registry: RegistryDep,
    now: NowDep,
    trace: TraceDep,
) -> Job:
    try:
        job = await submit_job(
            store=store,
            queue=queue,
            registry=registry,
            task=data.task,
            payload=data.payload,
            now=now,
            attributes=trace,
        )
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


@router.get("/{job_id}", summary="A job's status", responses=problems(404, 503))
async def get_job(job_id: str, store: StoreDep) -> Job:
    job = await store.get_job(job_id) if is_id(job_id) else None
    if job is None:
        raise NotFound(f"job {job_id[:64]} does not exist")
    return Job.of(job)


def _invalid(loc: list[str], msg: str, kind: str) -> Problem:
    return Problem(
        422,
        "The request does not match the schema.",
        title="Validation failed",
        type=problem_type("validation"),
        errors=[{"loc": loc, "msg": msg, "type": kind}],
    )
