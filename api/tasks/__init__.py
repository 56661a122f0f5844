"""Background tasks. Import a task module here so its tasks register."""

from __future__ import annotations

from api.tasks import users  # noqa: F401 - registers users.* tasks
from api.tasks.tasks import tasks

__all__ = ["tasks"]
