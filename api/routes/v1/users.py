"""/v1/users"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Response, status
from pydantic import BeforeValidator

from api import conditional
from api.auth import USERS_READ, USERS_WRITE, require
from api.cursors import InvalidCursor, decode_cursor, encode_cursor
from api.deps import (
    CacheDep,
    CallerDep,
    NowDep,
    OutboxDep,
    RegistryDep,
    SettingsDep,
    StoreDep,
    TraceDep,
)
from api.errors import Problem, problem_type
from api.idempotency import idempotent
from api.media import require_json
from api.routes.problems import problems
from api.schemas import User, UserCreate, UserPage, UserUpdate
from api.services import users as service

router = APIRouter(prefix="/users", tags=["users"])


def plain_digits(value: object) -> object:
    """A count in a query is ASCII digits: Python's int() would also take "1_0", "+5", " 7" and
    other scripts' digits, which no client means and no cache key should treat as 10."""
    if isinstance(value, str) and not (value.isascii() and value.isdigit()):
        raise ValueError("must be a whole number written with the digits 0-9")
    return value


CURSOR_SCOPE = "users"
MAX_PAGE = 100
# First among a route's dependencies: a caller without the scope learns nothing else (415, 422).
READ = require(USERS_READ)
WRITE = require(USERS_WRITE)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Create a user (and enqueue their welcome)",
    dependencies=[WRITE, Depends(require_json), Depends(idempotent)],
    responses=problems(400, 409, 413, 415, 422, 503),
)
async def create_user(
    data: UserCreate,
    request: Request,
    response: Response,
    store: StoreDep,
    outbox: OutboxDep,
    registry: RegistryDep,
    now: NowDep,
    trace: TraceDep,
    caller: CallerDep,
) -> User:
    record = await service.create_user(
        store=store,
        outbox=outbox,
        registry=registry,
        data=data,
        now=now,
        attributes=trace,
        owner=caller.subject if caller else None,
    )
    response.headers["Location"] = str(request.url_for("get_user", user_id=record.id).path)
    response.headers["ETag"] = conditional.etag(record.version)
    return User.of(record)


@router.get(
    "",
    summary="List users in creation order",
    dependencies=[READ],
    responses=problems(400, 422, 503),
)
async def list_users(
    request: Request,
    response: Response,
    store: StoreDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE), BeforeValidator(plain_digits)] = 20,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> UserPage:
    secret = settings.cursor_secret.get_secret_value().encode()
    after = None
    if cursor is not None:
        try:
            after = decode_cursor(cursor, scope=CURSOR_SCOPE, secret=secret)
        except InvalidCursor as exc:
            raise Problem(
                400, str(exc), title="Invalid cursor", type=problem_type("cursor")
            ) from exc
    page = await service.list_users(store=store, limit=limit, after=after)
    next_cursor = (
        None
        if page.next_token is None
        else encode_cursor(page.next_token, scope=CURSOR_SCOPE, secret=secret)
    )
    if next_cursor is not None:
        next_url = request.url.include_query_params(cursor=next_cursor, limit=limit)
        response.headers["Link"] = f'<{next_url.path}?{next_url.query}>; rel="next"'
    return UserPage(items=[User.of(u) for u in page.items], next_cursor=next_cursor)


@router.get(
    "/{user_id}",
    response_model=User,
    summary="Read a user (ETag; If-None-Match answers 304)",
    dependencies=[READ],
    responses={304: {"description": "Not modified"}, **problems(404, 503)},
)
async def get_user(
    user_id: str,
    store: StoreDep,
    cache: CacheDep,
    settings: SettingsDep,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    version, body = await service.get_user_json(
        store=store, cache=cache, user_id=user_id, ttl=settings.cache_ttl_seconds
    )
    headers = {"ETag": conditional.etag(version)}
    if conditional.none_match(if_none_match, version):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    # Already the User schema, serialized once on a cache miss: no second validation pass.
    return Response(body, media_type="application/json", headers=headers)


@router.patch(
    "/{user_id}",
    summary="Change a user (If-Match for optimistic concurrency)",
    dependencies=[WRITE, Depends(require_json)],
    responses=problems(400, 404, 409, 412, 415, 422, 503),
)
async def update_user(
    user_id: str,
    data: UserUpdate,
    response: Response,
    store: StoreDep,
    cache: CacheDep,
    now: NowDep,
    if_match: Annotated[str | None, Header()] = None,
) -> User:
    record = await service.update_user(
        store=store,
        cache=cache,
        user_id=user_id,
        data=data,
        if_match=conditional.if_match(if_match),
        now=now,
    )
    response.headers["ETag"] = conditional.etag(record.version)
    return User.of(record)


@router.delete(
    "/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a user",
    dependencies=[WRITE],
    responses=problems(404, 503),
)
async def delete_user(user_id: str, store: StoreDep, cache: CacheDep) -> Response:
    await service.delete_user(store=store, cache=cache, user_id=user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
