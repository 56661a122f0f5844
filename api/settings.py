"""Settings: one class, read from the environment by `load_settings()` so tests can build
their own."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
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
_ORIGIN = re.compile(r"^https?://[^/\s?#]+$")
# Asymmetric signatures only: "none" proves nothing, and an HS* token would be checked with the
# issuer's public key as its HMAC secret, which anyone can fetch (docs/auth.md).
JWT_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
# Where AUTH=off may serve: a laptop and the test suite, never a deployment (api/auth.py).
OPEN_STAGES = frozenset({"local", "test"})
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})


class SettingsError(ValueError):
    """A setting has a value the app cannot start with; the message names the setting."""


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


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

    # One URL per port; the scheme chooses the adapter (docs/architecture.md, "Settings").
    database_url: str = "sqlite:///./.lambdarun/dev.db"
    queue_url: str = "inprocess://"
    cache_url: str = "memory://"
    rate_limit_url: str | None = None  # defaults to the cache's Redis when there is one

    stage: str = "local"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    # OpenTelemetry (docs/observability.md): FastAPI's request spans and metrics, a span per job
    # send and run joined into one trace across the queue, job metrics. `otel` installs SDK
    # providers from the standard OTEL_* variables unless one is installed already. Off unless
    # asked for: the SDK is then never imported, and looking for a provider costs every
    # request (~3 us of a ~40 us /healthz; docs/cloudrun.md).
    telemetry: Literal["otel", "off"] = "off"
    # Signs pagination cursors so a tampered or foreign one is refused; every
    # instance of a deployment must share it.
    cursor_secret: SecretStr = SecretStr(DEV_CURSOR_SECRET)
    rate_limit: str | None = None  # e.g. "100/minute"; unset means no limit
    # How many proxies in front append to X-Forwarded-For: the client is the entry this many
    # from the right (api/middleware.py). 0 trusts no header: the peer (or, on Lambda, API
    # Gateway's sourceIp) is the client. Cloud Run: 1; behind an external load balancer: 2.
    proxy_hops: Annotated[int, Field(ge=0, le=10)] = 0
    # Pub/Sub push into this service (POST /internal/pubsub/push): on when an audience is set;
    # every push must then carry a Google-signed OIDC token for it, from this account if given.
    pubsub_push_audience: str | None = None
    pubsub_push_service_account: str | None = None
    # Bearer tokens on /v1 (docs/auth.md): OAuth2 access tokens as JWTs, checked against the
    # issuer's JWKS. "off" lets everyone in and is refused outside OPEN_STAGES.
    auth: Literal["jwt", "off"] = "off"
    jwt_jwks_url: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_algorithms: str = "RS256,ES256"  # comma-separated, a subset of JWT_ALGORITHMS
    jwt_leeway_seconds: Annotated[int, Field(ge=0, le=300)] = 30  # clock skew on exp, nbf, iat

    cache_ttl_seconds: Annotated[int, Field(ge=1, le=86400)] = 30
    # A running job holds its claim this long; the runner renews it every third of it while
    # the task runs, so a dead worker's job is taken over soon after (docs/jobs.md).
    job_lease_seconds: Annotated[float, Field(gt=0, le=43200)] = 30
    job_max_attempts: Annotated[int, Field(ge=1, le=100)] = 3
    # The outbox (docs/jobs.md): a committed job waits OUTBOX_GRACE_SECONDS for its request to
    # send its message before the sweeper sends it; a sent job that has not started by
    # JOB_RESEND_SECONDS is sent again. The in-process queue's messages die with its process and
    # a resend of one still waiting there is dropped, so 2 s and 2 s; SQS's and Pub/Sub's
    # outlive a whole retry cycle of the queue, and a backlog should not be doubled: 10 s, 900 s.
    outbox_grace_seconds: Annotated[float | None, Field(gt=0, le=3600)] = None
    job_resend_seconds: Annotated[float | None, Field(gt=0, le=86400)] = None
    # In-process (make dev): the sweeper runs at start-up and then this often. In the cloud it
    # runs on its schedule (jobs.sweep: every minute).
    local_sweep_seconds: Annotated[float, Field(gt=0, le=3600)] = 5
    sweep_batch: Annotated[int, Field(ge=1, le=10000)] = 500
    readiness_timeout: Annotated[float, Field(gt=0, le=30)] = 2.0
    db_pool_max: Annotated[int, Field(ge=1, le=100)] = 5
    io_timeout: Annotated[float, Field(gt=0, le=30)] = 2.0

    # Abuse limits (docs/limits.md). A job payload stays well under SQS's 256 KiB message.
    max_body_bytes: Annotated[int, Field(ge=1024, le=10 * 1024 * 1024)] = 64 * 1024
    max_job_payload_bytes: Annotated[int, Field(ge=256, le=240 * 1024)] = 32 * 1024
    max_url_bytes: Annotated[int, Field(ge=256, le=65536)] = 8192
    max_header_bytes: Annotated[int, Field(ge=1024, le=65536)] = 16 * 1024
    # A client has this long for its request's headers (the Cloud Run server) and then for its
    # body (408 and the connection closed): a slow client (Slowloris) holds nothing for long.
    read_timeout_seconds: Annotated[float, Field(gt=0, le=300)] = 10
    # Browsers' cross-origin access: comma-separated origins ("https://app.example.com"), or *.
    cors_origins: str = ""
    cors_allow_credentials: bool = False
    # Idempotency-Key records: kept this long; a claim whose request never finished (the
    # instance died) blocks its key this long. Must exceed the longest request.
    idempotency_ttl_seconds: Annotated[int, Field(ge=60, le=7 * 86400)] = 86400
    idempotency_lock_seconds: Annotated[int, Field(ge=1, le=900)] = 60

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
        match = None if value is None else _RATE.match(value)
        if value is not None and match is None:
            raise ValueError("RATE_LIMIT must look like '100/minute' (second, minute, hour or day)")
        if match is not None and int(match[1]) < 1:
            raise ValueError("RATE_LIMIT allows at least 1 request a period; unset it for none")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("database_url", mode="after")
    @classmethod
    def _sqlite_folder(cls, value: str) -> str:
        """A SQLite file's folder is made at start-up; refuse a path under a file now."""
        if scheme_of(value) != "sqlite":
            return value
        path = urlsplit(value).path.removeprefix("/")
        if path in {"", ":memory:"}:
            return value
        for folder in Path(path).parents:
            if folder.exists():
                if not folder.is_dir():
                    raise ValueError(f"{folder} is a file, so {path} cannot be a database in it")
                break
        return value

    @field_validator("auth", mode="before")
    @classmethod
    def _auth(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("jwt_jwks_url", "jwt_issuer", "jwt_audience", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # A template parameter left empty arrives as "": the same as not set.
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("jwt_jwks_url")
    @classmethod
    def _jwt_jwks_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        loopback_http = parts.scheme == "http" and parts.hostname in _LOOPBACK
        if not parts.hostname or not (parts.scheme == "https" or loopback_http):
            raise ValueError("must be an https:// URL (http:// only on a loopback address)")
        return value

    @field_validator("jwt_algorithms")
    @classmethod
    def _jwt_algorithms(cls, value: str) -> str:
        names = [name.strip() for name in value.split(",") if name.strip()]
        refused = sorted(set(names) - JWT_ALGORITHMS)
        if not names or refused:
            allowed = ", ".join(sorted(JWT_ALGORITHMS))
            raise ValueError(
                f"{', '.join(refused) or 'no algorithm given'}: not accepted; "
                f"asymmetric algorithms only: {allowed}"
            )
        return ",".join(dict.fromkeys(names))

    @model_validator(mode="after")
    def _jwt_needs_its_settings(self) -> Settings:
        if self.auth == "jwt":
            given = {
                "JWT_JWKS_URL": self.jwt_jwks_url,
                "JWT_ISSUER": self.jwt_issuer,
                "JWT_AUDIENCE": self.jwt_audience,
            }
            missing = [name for name, value in given.items() if value is None]
            if missing:
                raise ValueError(f"AUTH=jwt needs {', '.join(missing)}")
        return self

    @field_validator("cors_origins")
    @classmethod
    def _cors_origins(cls, value: str) -> str:
        for origin in _split(value):
            if origin != "*" and not _ORIGIN.match(origin):
                raise ValueError(
                    f"{origin!r} is not an origin; use scheme://host[:port], no path or "
                    "trailing slash (a browser's Origin never has one), or *"
                )
        return value

    @field_validator("cors_allow_credentials")
    @classmethod
    def _cors_credentials(cls, value: bool, info: ValidationInfo) -> bool:
        # Browsers refuse `*` with credentials anyway; Starlette would echo any Origin instead,
        # which lets every site make credentialed calls. Refused here, at start-up.
        if value and "*" in _split(info.data.get("cors_origins", "")):
            raise ValueError("cannot be true while CORS_ORIGINS allows every origin (*)")
        return value

    @property
    def cors_origin_list(self) -> tuple[str, ...]:
        return _split(self.cors_origins)

    @model_validator(mode="after")
    def _default_rate_limit_url(self) -> Settings:
        if self.rate_limit_url is None:
            shared = (
                self.cache_url if scheme_of(self.cache_url) in {"redis", "rediss"} else "memory://"
            )
            object.__setattr__(self, "rate_limit_url", shared)
        return self

    @model_validator(mode="after")
    def _default_outbox_times(self) -> Settings:
        local = scheme_of(self.queue_url) == "inprocess"
        if self.outbox_grace_seconds is None:
            object.__setattr__(self, "outbox_grace_seconds", 2.0 if local else 10.0)
        if self.job_resend_seconds is None:
            object.__setattr__(self, "job_resend_seconds", 2.0 if local else 900.0)
        return self

    @property
    def outbox_times(self) -> tuple[float, float]:
        """(OUTBOX_GRACE_SECONDS, JOB_RESEND_SECONDS), their defaults filled in."""
        grace, resend = self.outbox_grace_seconds, self.job_resend_seconds
        if grace is None or resend is None:  # filled in by the validator above
            raise SettingsError("outbox times were not filled in")
        return grace, resend

    @property
    def rate_limit_parsed(self) -> tuple[int, int] | None:
        """(hits, window seconds) or None when rate limiting is off."""
        if self.rate_limit is None:
            return None
        match = _RATE.match(self.rate_limit)
        assert match is not None  # noqa: S101 - checked by the validator
        return int(match[1]), _PERIOD_SECONDS[match[2]]

    @property
    def jwt_algorithm_list(self) -> tuple[str, ...]:
        return tuple(self.jwt_algorithms.split(","))


MIN_CURSOR_SECRET_BYTES = 32  # 256 bits: an HMAC-SHA256 key as long as its output


def check_cursor_secret(settings: Settings) -> None:
    """The development cursor key is public (it is in this file), and a short one can be
    guessed: either is refused at start-up of the API on any stage but local and test, where
    cursors signed with it could be forged."""
    if settings.stage in OPEN_STAGES:
        return
    secret = settings.cursor_secret.get_secret_value()
    if secret == DEV_CURSOR_SECRET:
        problem = "set a secret of your own"
    elif len(secret.encode()) < MIN_CURSOR_SECRET_BYTES:
        problem = f"use at least {MIN_CURSOR_SECRET_BYTES} bytes (openssl rand -hex 32)"
    else:
        return
    raise SettingsError(
        f"invalid settings: CURSOR_SECRET: {problem} on STAGE {settings.stage!r} (on Lambda "
        "CURSOR_SECRET_PARAMETER names it in SSM; on Cloud Run a Secret Manager reference; "
        "docs/secrets.md)"
    )


def check_startup(settings: Settings) -> None:
    """What the API refuses to start with beyond the values themselves; `SettingsError`."""
    from api.auth import check_auth_allowed

    check_auth_allowed(settings)
    check_cursor_secret(settings)


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
