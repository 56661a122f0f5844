"""Request and response models of API v1."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic.json_schema import SkipJsonSchema

from adapters.records import JobRecord, JobStatus, UserRecord

# Shape only, as most services check: deliverability needs a mail round trip anyway.
# (pydantic's EmailStr would pull in email-validator and dnspython for the same answer.)
# Explicit ranges rather than \s, which Python and the JSON Schema (ECMA) dialect read
# differently: no ASCII space, no C0 or C1 control characters.
EMAIL_PATTERN = (
    r"^[^@\x00-\x20\x7f-\x9f]{1,64}@[^@.\x00-\x20\x7f-\x9f]+(\.[^@.\x00-\x20\x7f-\x9f]+)+$"
)
# No control characters: they break logs and terminals, and Postgres refuses NUL in text.
PRINTABLE = r"^[^\x00-\x1f\x7f-\x9f]+$"
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")


MAX_EMAIL = 254  # RFC 5321's limit on a path, less the angle brackets


def _lower(value: str) -> str:
    """Lower case, then the length again: lowering can lengthen ("İ" becomes "i̇", two code
    points), so 254 characters given could be 454 stored."""
    lowered = value.lower()
    if len(lowered) > MAX_EMAIL:
        raise ValueError(f"an email has at most {MAX_EMAIL} characters in lower case")
    return lowered


Email = Annotated[
    str,
    Field(max_length=MAX_EMAIL, pattern=EMAIL_PATTERN, examples=["ada@example.com"]),
    AfterValidator(_lower),
]
Name = Annotated[
    str, Field(min_length=1, max_length=200, pattern=PRINTABLE, examples=["Ada Lovelace"])
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UserCreate(Strict):
    email: Email
    name: Name


class UserUpdate(Strict):
    """A merge patch: the fields given change, absent ones stay; null is not a value of either
    (None here only means absent, so the schema leaves it out)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"minProperties": 1})

    email: Email | SkipJsonSchema[None] = None
    name: Name | SkipJsonSchema[None] = None

    @model_validator(mode="after")
    def _something_to_change(self) -> UserUpdate:
        if not self.model_fields_set:
            raise ValueError("give at least one field to change: email, name")
        for field in sorted(self.model_fields_set):
            if getattr(self, field) is None:
                raise ValueError(f"{field} cannot be null")
        return self


class FromRecord(BaseModel):
    """A response model read from a store record's attributes (records never leave as-is)."""

    model_config = ConfigDict(from_attributes=True)


class User(FromRecord):
    id: str
    email: str
    name: str
    version: int
    created_at: datetime
    updated_at: datetime
    welcomed_at: datetime | None

    @classmethod
    def of(cls, record: UserRecord) -> User:
        return cls.model_validate(record)


class UserPage(BaseModel):
    items: list[User]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null at the end."
    )


def _storable(value: Any, path: str = "payload") -> Any:
    """Refuse text no store keeps: a NUL (PostgreSQL's jsonb refuses it) or a lone surrogate
    (valid JSON, "\\ud800", but no UTF-8 encodes it), in a key or a value, at any depth."""
    if isinstance(value, str) and _UNSTORABLE.search(value):
        raise ValueError(f"{path} holds a NUL or a lone surrogate, which cannot be stored")
    if isinstance(value, dict):
        for key, item in value.items():
            _storable(key, f"{path} (a key)")
            _storable(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _storable(item, f"{path}[{index}]")
    return value


class JobCreate(Strict):
    task: str = Field(min_length=1, max_length=100, examples=["users.welcome"])
    payload: Annotated[dict[str, Any], AfterValidator(_storable)] = Field(default_factory=dict)


class Job(FromRecord):
    id: str
    task: str
    status: JobStatus
    attempts: int
    payload: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    result: dict[str, Any] | None
    error: str | None

    @classmethod
    def of(cls, record: JobRecord) -> Job:
        return cls.model_validate(record)


class ProblemDetail(BaseModel):
    """RFC 9457 problem details, the body of every error response."""

    model_config = ConfigDict(extra="allow")

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    request_id: str | None = None
