"""Settings: one class, read from the environment by `load_settings()` so tests can build
their own."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from adapters.bootstrap import (
    CACHE_SCHEMES,
    QUEUE_SCHEMES,
    RATE_LIMIT_SCHEMES,
    STORE_SCHEMES,
    scheme_of,
)

DEV_CURSOR_SECRET = "lambdarun-local-development-only"  # noqa: S105 - a known dev default
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(second|minute|hour|day)\s*$")
_PERIOD_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


class SettingsError(ValueError):
    """A setting has a value the app cannot start with; the message names the setting."""


def _check_scheme(value: str, allowed: frozenset[str], setting: str) -> str:
    scheme = scheme_of(value)
    if scheme not in allowed:
        choices = ", ".join(sorted(allowed))
        raise ValueError(
            f"unsupported scheme {scheme or '(none)'!r} in {setting}; use one of {choices}"
        )
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    # One URL per port; the scheme chooses the adapter (DESIGN.md, "Configuration").
    database_url: str = "sqlite:///./.lambdarun/dev.db"
    queue_url: str = "inprocess://"
    cache_url: str = "memory://"
    rate_limit_url: str | None = None  # defaults to the cache's Redis when there is one

    stage: str = "local"
    log_level: str = "INFO"
    # Signs pagination cursors so a tampered or foreign one is refused; every
    # instance of a deployment must share it.
    cursor_secret: SecretStr = SecretStr(DEV_CURSOR_SECRET)
    rate_limit: str | None = None  # e.g. "100/minute"; unset means no limit
    # Pub/Sub push into this service (POST /internal/pubsub/push): on when an audience is set;
    # every push must then carry a Google-signed OIDC token for it, from this account if given.
    pubsub_push_audience: str | None = None
    pubsub_push_service_account: str | None = None

    cache_ttl_seconds: Annotated[int, Field(ge=1, le=86400)] = 30
    job_lease_seconds: Annotated[int, Field(ge=1, le=43200)] = 300
    job_max_attempts: Annotated[int, Field(ge=1, le=100)] = 3
    readiness_timeout: Annotated[float, Field(gt=0, le=30)] = 2.0
    db_pool_max: Annotated[int, Field(ge=1, le=100)] = 5
    io_timeout: Annotated[float, Field(gt=0, le=30)] = 2.0

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        return _check_scheme(value, STORE_SCHEMES, "DATABASE_URL")

    @field_validator("queue_url")
    @classmethod
    def _queue_url(cls, value: str) -> str:
        return _check_scheme(value, QUEUE_SCHEMES, "QUEUE_URL")

    @field_validator("cache_url")
    @classmethod
    def _cache_url(cls, value: str) -> str:
        return _check_scheme(value, CACHE_SCHEMES, "CACHE_URL")

    @field_validator("rate_limit_url")
    @classmethod
    def _rate_limit_url(cls, value: str | None) -> str | None:
        return None if value is None else _check_scheme(value, RATE_LIMIT_SCHEMES, "RATE_LIMIT_URL")

    @field_validator("rate_limit")
    @classmethod
    def _rate_limit(cls, value: str | None) -> str | None:
        if value is not None and not _RATE.match(value):
            raise ValueError("RATE_LIMIT must look like '100/minute' (second, minute, hour or day)")
        return value

    @model_validator(mode="after")
    def _default_rate_limit_url(self) -> Settings:
        if self.rate_limit_url is None:
            shared = (
                self.cache_url if scheme_of(self.cache_url) in {"redis", "rediss"} else "memory://"
            )
            object.__setattr__(self, "rate_limit_url", shared)
        return self

    @property
    def rate_limit_parsed(self) -> tuple[int, int] | None:
        """(hits, window seconds) or None when rate limiting is off."""
        if self.rate_limit is None:
            return None
        match = _RATE.match(self.rate_limit)
        assert match is not None  # noqa: S101 - checked by the validator
        return int(match[1]), _PERIOD_SECONDS[match[2]]


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment (overrides win); a bad value raises `SettingsError`
    whose message names the environment variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = ".".join(str(part) for part in error["loc"]).upper() or "settings"
            message = error["msg"].removeprefix("Value error, ")
            problems.append(f"{name}: {message}")
        raise SettingsError("invalid settings: " + "; ".join(problems)) from None
