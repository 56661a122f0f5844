"""User use cases: create (and welcome), read through the cache, update, delete."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from adapters.errors import NotFound
from adapters.ports import Cache, Store, UserChanges
from adapters.records import Page, UserRecord
from api.conditional import IfMatch, precondition_failed
from api.ids import is_id, new_id
from api.jobs.outbox import Outbox
from api.jobs.submit import new_job
from api.schemas import User, UserCreate, UserUpdate
from api.tasks.registry import TaskRegistry


def cache_key(user_id: str) -> str:
    return f"user:{user_id}"


WELCOME = "users.welcome"


async def create_user(
    *,
    store: Store,
    outbox: Outbox,
    registry: TaskRegistry,
    data: UserCreate,
    now: datetime,
    attributes: Mapping[str, str] | None = None,
    owner: str | None = None,
) -> UserRecord:
    """Create the user and its `users.welcome` job (owned by `owner`, the caller's subject) in
    one atomic write, then send the job's message. Either both exist or neither does, so a
    client that was told 503 finds no half-made user when it retries."""
    user = UserRecord(id=new_id(), email=data.email, name=data.name, created_at=now, updated_at=now)
    welcome = new_job(
        registry=registry,
        task=WELCOME,
        payload={"user_id": user.id},
        now=now,
        due_at=outbox.first_due(now),
        owner=owner,
    )
    await store.create_user(user, jobs=[welcome])
    await outbox.send(welcome, now=now, attributes=attributes)
    return user


async def get_user_json(*, store: Store, cache: Cache, user_id: str, ttl: int) -> tuple[int, bytes]:
    """(version, the user as JSON), read through the cache; `NotFound` for ids that do not exist
    (or cannot). The cache keeps the serialized answer, so a hit costs no model work at all."""
    if not is_id(user_id):
        raise NotFound(f"user {user_id[:64]} does not exist")
    cached = await cache.get(cache_key(user_id))
    if cached is not None:
        version, _, body = cached.partition(b"\n")
        return int(version), body
    record = await store.get_user(user_id)
    if record is None:
        raise NotFound(f"user {user_id} does not exist")
    body = User.of(record).model_dump_json().encode()
    await cache.set(cache_key(user_id), b"%d\n%s" % (record.version, body), ttl=ttl)
    return record.version, body


async def list_users(*, store: Store, limit: int, after: str | None) -> Page[UserRecord]:
    return await store.list_users(limit=limit, after=after)


async def update_user(
    *,
    store: Store,
    cache: Cache,
    user_id: str,
    data: UserUpdate,
    if_match: IfMatch | None,
    now: datetime,
) -> UserRecord:
    """Apply the change, under `if_match` when given: then a user that is not there, or not at
    a version it names, is 412 (RFC 9110 13.1.1), not 404."""
    if not is_id(user_id):
        if if_match is not None:
            raise precondition_failed()
        raise NotFound(f"user {user_id[:64]} does not exist")
    changes: UserChanges = {}
    if data.email is not None:
        changes["email"] = data.email
    if data.name is not None:
        changes["name"] = data.name
    try:
        return await store.update_user(
            user_id, changes, at=now, expected_version=await _expected(store, user_id, if_match)
        )
    except NotFound:
        if if_match is not None:
            raise precondition_failed() from None
        raise
    finally:
        await cache.delete(cache_key(user_id))


async def _expected(store: Store, user_id: str, if_match: IfMatch | None) -> int | None:
    """The version the conditional write must find: the one `if_match` names, or for a list
    (or `*`) the current one if it is among them, read now and checked again by the write."""
    if if_match is None:
        return None
    only = if_match.only()
    if only is not None and not if_match.any:
        return only
    current = await store.get_user(user_id)
    version = None if current is None else current.version
    if not if_match.holds(version):
        raise precondition_failed()
    return version


async def delete_user(*, store: Store, cache: Cache, user_id: str) -> None:
    if not is_id(user_id):
        raise NotFound(f"user {user_id[:64]} does not exist")
    try:
        await store.delete_user(user_id)
    finally:
        await cache.delete(cache_key(user_id))
