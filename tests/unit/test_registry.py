from __future__ import annotations

import pytest
from pydantic import BaseModel

from api.tasks import tasks
from api.tasks.registry import TaskContext, TaskRegistry


class Payload(BaseModel):
    n: int


def test_the_payload_model_comes_from_the_annotation() -> None:
    registry = TaskRegistry()

    @registry.register("t.one")
    async def one(payload: Payload, ctx: TaskContext) -> None:
        return None

    task = registry.get("t.one")
    assert task is not None
    assert task.payload_model is Payload
    assert list(registry) == ["t.one"]


def test_mistakes_are_refused_at_registration() -> None:
    registry = TaskRegistry()

    @registry.register("dup")
    async def first(payload: Payload, ctx: TaskContext) -> None:
        return None

    with pytest.raises(ValueError, match="twice"):
        registry.register("dup")(first)
    with pytest.raises(TypeError, match="async"):
        registry.register("sync")(lambda payload, ctx: None)  # type: ignore[arg-type,return-value]

    async def untyped(payload, ctx):  # type: ignore[no-untyped-def]
        return None

    with pytest.raises(TypeError, match="pydantic"):
        registry.register("untyped")(untyped)


def test_the_app_ships_the_welcome_task() -> None:
    assert "users.welcome" in list(tasks)
