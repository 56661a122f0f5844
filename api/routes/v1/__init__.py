"""API v1."""

from __future__ import annotations

from fastapi import APIRouter

from api.routes.v1 import jobs, users

router = APIRouter(prefix="/v1")
router.include_router(users.router)
router.include_router(jobs.router)
