"""Conditional requests (RFC 9110 section 13): ETags from record versions."""

from __future__ import annotations

import re
from dataclasses import dataclass

from adapters.errors import VersionConflict

_TAG = re.compile(r'\s*(W/)?"([^"]*)"\s*(?:,|$)')
# The tags we issue, exactly: "v" and a version without leading zeros ("v02" is not "v2").
_OURS = re.compile(r"v[1-9][0-9]{0,17}")


def etag(version: int) -> str:
    return f'"v{version}"'


def _tags(header: str) -> list[tuple[bool, str]]:
    """(weak, opaque tag) for each entity tag in a list."""
    return [(bool(m[1]), m[2]) for m in _TAG.finditer(header)]


def none_match(header: str | None, version: int) -> bool:
    """True when `If-None-Match` matches the current version (weak comparison): answer 304."""
    if header is None:
        return False
    if header.strip() == "*":
        return True
    return f"v{version}" in (tag for _, tag in _tags(header))


@dataclass(frozen=True, slots=True)
class IfMatch:
    """An `If-Match` precondition: `*` (any current representation), or the versions its
    strong tags name. Empty means none could match: 412."""

    any: bool
    versions: frozenset[int]

    def holds(self, version: int | None) -> bool:
        """Whether a resource at `version` (None: there is none) meets it."""
        return version is not None and (self.any or version in self.versions)

    def only(self) -> int | None:
        """The one version a conditional write must find, when the header names just one."""
        return next(iter(self.versions)) if len(self.versions) == 1 else None


def if_match(header: str | None) -> IfMatch | None:
    """`If-Match` with the strong comparison it requires (RFC 9110 13.1.1): a weak tag never
    matches, nor a tag we could not have issued; a list matches when any of its tags does."""
    if header is None:
        return None
    if header.strip() == "*":
        return IfMatch(any=True, versions=frozenset())
    versions = frozenset(
        int(tag[1:]) for weak, tag in _tags(header) if not weak and _OURS.fullmatch(tag)
    )
    return IfMatch(any=False, versions=versions)


def precondition_failed() -> VersionConflict:
    return VersionConflict("If-Match names no current version of this resource")
