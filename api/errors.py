"""RFC 9457 problem+json: one shape for every error, raised as `Problem`, rendered by one
set of handlers."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from adapters.errors import AlreadyExists, NotFound, Unavailable, VersionConflict

PROBLEM_JSON = "application/problem+json"
logger = logging.getLogger(__name__)


class Problem(Exception):
    """An error with an HTTP answer. `type` is a URI naming the kind; "about:blank" means the
    status says it all."""

    def __init__(
        self,
        status: int,
        detail: str | None = None,
        *,
        title: str | None = None,
        type: str = "about:blank",  # the RFC 9457 member name
        headers: Mapping[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail or title or HTTPStatus(status).phrase)
        self.status = status
        self.title = title or HTTPStatus(status).phrase
        self.detail = detail
        self.type = type
        self.headers = dict(headers or {})
        self.extensions = extensions


def problem_type(slug: str) -> str:
    return f"urn:lambdarun:problem:{slug}"


def problem_response(problem: Problem, request: Request) -> JSONResponse:
    """The problem as a response. Its `X-Request-ID` header is the middleware's to add."""
    body: dict[str, Any] = {"type": problem.type, "title": problem.title, "status": problem.status}
    if problem.detail:
        body["detail"] = problem.detail
    body["instance"] = request.url.path
    body.update(problem.extensions)
    request_id = request.scope.get("state", {}).get("request_id")
    if request_id:
        body["request_id"] = request_id
    return JSONResponse(
        body, status_code=problem.status, headers=problem.headers, media_type=PROBLEM_JSON
    )


def _validation_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    # Only where and why: echoing the input back could repeat a huge or secret value.
    return [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors]


async def _on_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Problem)  # noqa: S101 - registered for Problem only
    return problem_response(exc, request)


_METHODS = ("DELETE", "GET", "PATCH", "POST", "PUT")


def _allowed_methods(request: Request) -> str:
    """Every method some route serves at this path, and HEAD wherever GET is (the edge layer,
    api/middleware.py, serves it). Starlette's own 405 names only the methods of the first
    route that matched the path, and FastAPI makes one route per operation."""
    routes = request.app.router.routes
    served = {
        method
        for method in _METHODS
        if any(r.matches({**request.scope, "method": method})[0] is Match.FULL for r in routes)
    }
    if "GET" in served:
        served.add("HEAD")
    return ", ".join(sorted(served))


async def _on_http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)  # noqa: S101
    detail: str | None = exc.detail if isinstance(exc.detail, str) else None
    if detail == HTTPStatus(exc.status_code).phrase:
        detail = None
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = _allowed_methods(request)
    return problem_response(Problem(exc.status_code, detail, headers=headers), request)


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)  # noqa: S101
    errors = exc.errors()
    if any(e["type"] == "json_invalid" for e in errors):
        problem = Problem(
            400,
            "The request body is not valid JSON.",
            title="Malformed JSON",
            type=problem_type("malformed-json"),
        )
    else:
        problem = Problem(
            422,
            "The request does not match the schema.",
            title="Validation failed",
            type=problem_type("validation"),
            errors=_validation_errors(errors),
        )
    return problem_response(problem, request)


async def _on_not_found(request: Request, exc: Exception) -> JSONResponse:
    return problem_response(Problem(404, str(exc)), request)


async def _on_already_exists(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AlreadyExists)  # noqa: S101
    problem = Problem(409, str(exc), type=problem_type("conflict"), field=exc.field)
    return problem_response(problem, request)


async def _on_version_conflict(request: Request, exc: Exception) -> JSONResponse:
    detail = "The resource changed since the version named in If-Match; fetch it and retry."
    return problem_response(Problem(412, detail), request)


async def _on_unavailable(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Unavailable)  # noqa: S101
    logger.warning("unavailable: %s", exc)
    problem = Problem(
        503,
        f"A backing service is unavailable ({exc.component}); retry shortly.",
        type=problem_type("unavailable"),
        headers={"Retry-After": "1"},
        component=exc.component,
    )
    return problem_response(problem, request)


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    response = problem_response(Problem(500, "An unexpected error occurred."), request)
    # Starlette answers unhandled errors outermost, past the request-id middleware.
    request_id = request.scope.get("state", {}).get("request_id")
    if request_id:
        response.headers["X-Request-ID"] = request_id
    return response


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(Problem, _on_problem)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(NotFound, _on_not_found)
    app.add_exception_handler(AlreadyExists, _on_already_exists)
    app.add_exception_handler(VersionConflict, _on_version_conflict)
    app.add_exception_handler(Unavailable, _on_unavailable)
    app.add_exception_handler(Exception, _on_unexpected)
