"""Tasks about users."""

from __future__ import annotations

from pydantic import BaseModel

from adapters.errors import VersionConflict
from api.tasks.registry import TaskContext, TaskResult
from api.tasks.tasks import tasks


class WelcomePayload(BaseModel):
    user_id: str


# A rename racing the welcome changes the version between our read and our write: read again.
TRIES = 3


@tasks.register("users.welcome")
async def welcome(payload: WelcomePayload, ctx: TaskContext) -> TaskResult:
    """Welcome a new user once: a second run, or one racing the first, finds `welcomed_at` set
    and changes nothing."""
    for _ in range(TRIES):
        user = await ctx.store.get_user(payload.user_id)
        if user is None:
            return {"skipped": "user no longer exists"}
        if user.welcomed_at is not None:
            return {"welcomed_at": user.welcomed_at.isoformat(), "already": True}
        # A real service would send the e-mail here; the visible effect is the timestamp.
        try:
            welcomed = await ctx.store.update_user(
                user.id, {"welcomed_at": ctx.now}, at=ctx.now, expected_version=user.version
            )
        except VersionConflict:
            continue
        await ctx.cache.delete(f"user:{user.id}")
        assert welcomed.welcomed_at is not None  # noqa: S101
        return {"welcomed_at": welcomed.welcomed_at.isoformat()}
    raise VersionConflict(f"user {payload.user_id} kept changing; the queue will retry")
