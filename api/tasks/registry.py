"""Background tasks registered by name: an async function taking a pydantic payload."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar, get_type_hints

from pydantic import BaseModel

from adapters.ports import Cache, Store

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


TaskFunction = Callable[[Any, TaskContext], Awaitable[TaskResult]]


@dataclass(frozen=True, slots=True)
class Task:
    name: str
    payload_model: type[BaseModel]
    run: TaskFunction


class TaskRegistry:
    def __init__(self) -> None:
        self._tasks: dict[str, Task] = {}

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
            if name in self._tasks:
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

    def get(self, name: str) -> Task | None:
        return self._tasks.get(name)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._tasks))
