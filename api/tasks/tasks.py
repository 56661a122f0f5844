"""The application's task registry; task modules register into it with `@tasks.register`."""

from __future__ import annotations

from api.tasks.registry import TaskRegistry

tasks = TaskRegistry()
