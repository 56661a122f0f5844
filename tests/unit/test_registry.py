from __future__ import annotations

import pytest
from pydantic import BaseModel

from api.tasks import tasks
from api.tasks.expressions import InvalidSchedule
from api.tasks.registry import SWEEP, ScheduleContext, TaskContext, TaskRegistry


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


def test_every_registry_has_the_outbox_sweeper_every_minute() -> None:
    for registry in (TaskRegistry(), tasks):
        sweep = registry.scheduled(SWEEP)
        assert sweep is not None
        assert (sweep.expression.text, sweep.expression.unix_cron) == (
            "rate(1 minute)",
            "* * * * *",
        )


def test_a_schedule_is_named_after_its_module_and_function_unless_named() -> None:
    registry = TaskRegistry()

    @registry.schedule("rate(5 minutes)")
    async def remind(ctx: ScheduleContext) -> None:
        """Remind users who never came back.

        More words that stay out of the description."""

    @registry.schedule("cron(0 6 ? * MON *)", name="reports.weekly")
    async def weekly(ctx: ScheduleContext) -> None:
        return None

    assert [s.name for s in registry.schedules()] == [
        SWEEP,
        "reports.weekly",
        "test_registry.remind",
    ]
    remind_schedule = registry.scheduled("test_registry.remind")
    assert remind_schedule is not None
    assert remind_schedule.description == "Remind users who never came back."
    assert remind_schedule.run is remind


def test_schedule_mistakes_are_refused_at_registration() -> None:
    registry = TaskRegistry()

    async def run(ctx: ScheduleContext) -> None:
        return None

    with pytest.raises(InvalidSchedule, match="exactly that rate"):
        registry.schedule("rate(7 minutes)")
    with pytest.raises(ValueError, match="twice"):
        registry.schedule("rate(1 hour)", name=SWEEP)(run)
    with pytest.raises(TypeError, match="async"):
        registry.schedule("rate(1 hour)", name="sync")(lambda ctx: None)  # type: ignore[arg-type, return-value]

    @registry.register("shared.name")
    async def task(payload: Payload, ctx: TaskContext) -> None:
        return None

    with pytest.raises(ValueError, match="twice"):
        registry.schedule("rate(1 hour)", name="shared.name")(run)
