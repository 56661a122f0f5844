"""Background tasks registered by name: an async function taking a pydantic payload, and
scheduled tasks: an async function run on a schedule (`@tasks.schedule("rate(5 minutes)")`).

One registry feeds every runtime: the workers run its tasks and schedules, `make dev` runs the
schedules in-process, and `lambdarun schedules` writes them out as template.yaml's ScheduleV2
events and Cloud Scheduler jobs (a test keeps those in step with it)."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar, get_type_hints

from pydantic import BaseModel

from adapters.ports import Cache, Store
from api.tasks.expressions import ScheduleExpression, parse

if TYPE_CHECKING:
    from api.jobs.outbox import Outbox

P = TypeVar("P", bound=BaseModel)
TaskResult = dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class TaskContext:
    """What a running task may use: the store and cache, the job's id and attempt, and the time."""

    store: Store
    cache: Cache
    job_id: str
    attempt: int
    now: datetime


@dataclass(frozen=True, slots=True)
class ScheduleContext:
    """What a scheduled task may use: the store, the cache, the outbox (to send due jobs), the
    time it runs and the time its scheduler meant it to."""

    store: Store
    cache: Cache
    outbox: Outbox
    now: datetime
    scheduled_for: datetime


TaskFunction = Callable[[Any, TaskContext], Awaitable[TaskResult]]
ScheduledFunction = Callable[[ScheduleContext], Awaitable[TaskResult]]


@dataclass(frozen=True, slots=True)
class Task:
    name: str
    payload_model: type[BaseModel]
    run: TaskFunction


@dataclass(frozen=True, slots=True)
class Schedule:
    name: str
    expression: ScheduleExpression
    run: ScheduledFunction
    description: str


# The outbox's sweeper (api/jobs/outbox.py), in every registry: a deployment without it could
# lose jobs, so it is not something a team opts into.
SWEEP = "jobs.sweep"
SWEEP_EVERY = "rate(1 minute)"


async def _sweep(ctx: ScheduleContext) -> TaskResult:
    """Send every job whose message is due: never sent, never started, or whose lease ran out."""
    report = await ctx.outbox.sweep(now=ctx.now)
    return dict(report.as_dict())


class TaskRegistry:
    def __init__(self) -> None:
        self._tasks: dict[str, Task] = {}
        self._schedules: dict[str, Schedule] = {}
        self.schedule(SWEEP_EVERY, name=SWEEP)(_sweep)

    def register(
        self, name: str
    ) -> Callable[
        [Callable[[P, TaskContext], Awaitable[TaskResult]]],
        Callable[[P, TaskContext], Awaitable[TaskResult]],
    ]:
        """Decorator: `@tasks.register("users.welcome")` on `async def f(payload: Model, ctx)`;
        the payload model is read from the first parameter's annotation."""

        def decorate(
            function: Callable[[P, TaskContext], Awaitable[TaskResult]],
        ) -> Callable[[P, TaskContext], Awaitable[TaskResult]]:
            if name in self._tasks or name in self._schedules:
                raise ValueError(f"task {name!r} is registered twice")
            if not inspect.iscoroutinefunction(function):
                raise TypeError(f"task {name!r} must be an async function")
            first = next(iter(inspect.signature(function).parameters))
            model = get_type_hints(function).get(first)
            if not (isinstance(model, type) and issubclass(model, BaseModel)):
                raise TypeError(
                    f"task {name!r}: annotate its first parameter with a pydantic model"
                )
            self._tasks[name] = Task(name=name, payload_model=model, run=function)
            return function

        return decorate

    def schedule(
        self, expression: str, *, name: str | None = None
    ) -> Callable[[ScheduledFunction], ScheduledFunction]:
        """Decorator: `@tasks.schedule("rate(5 minutes)")` on `async def f(ctx)`. The name
        defaults to `<module>.<function>` ("reports.daily"); the expression is EventBridge
        Scheduler's, and must mean the same in unix cron (api/tasks/expressions.py). A schedule
        may run twice for one tick (schedulers deliver at least once): make it idempotent."""
        parsed = parse(expression)

        def decorate(function: ScheduledFunction) -> ScheduledFunction:
            key = name or f"{function.__module__.rsplit('.', 1)[-1]}.{function.__name__}"
            if key in self._schedules or key in self._tasks:
                raise ValueError(f"{key!r} is registered twice")
            if not inspect.iscoroutinefunction(function):
                raise TypeError(f"scheduled task {key!r} must be an async function")
            description = (inspect.getdoc(function) or key).split("\n")[0]
            self._schedules[key] = Schedule(key, parsed, function, description)
            return function

        return decorate

    def get(self, name: str) -> Task | None:
        return self._tasks.get(name)

    def scheduled(self, name: str) -> Schedule | None:
        return self._schedules.get(name)

    def schedules(self) -> list[Schedule]:
        return [self._schedules[name] for name in sorted(self._schedules)]

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._tasks))
