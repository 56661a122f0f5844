"""API v1: one router per resource, each included by the app under `PREFIX`.

Not a `/v1` router that includes them: since FastAPI 0.137 every level of `include_router`
is resolved again on each request (see api/routes/health.py), so one level is cheaper than
two (measured in docs/cloudrun.md)."""

from __future__ import annotations

from api.routes.v1 import jobs, users

PREFIX = "/v1"
routers = (users.router, jobs.router)
