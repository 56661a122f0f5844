"""Conditional requests (RFC 9110 section 13): ETags from record versions."""

from __future__ import annotations

import re

from adapters.errors import VersionConflict

_TAG = re.compile(r'\s*(W/)?"([^"]*)"\s*(?:,|$)')


def etag(version: int) -> str:
    return f'"v{version}"'


def _tags(header: str) -> list[str]:
    return [m[2] for m in _TAG.finditer(header)]


def none_match(header: str | None, version: int) -> bool:
    """True when `If-None-Match` matches the current version (weak comparison): answer 304."""
    if header is None:
        return False
    if header.strip() == "*":
        return True
    return f"v{version}" in _tags(header)


def expected_version(header: str | None) -> int | None:
    """From `If-Match`: None when absent or `*`, else the one version it names.
    `VersionConflict` (412) when it names none we could have issued."""
    if header is None or header.strip() == "*":
        return None
    versions = [int(t[1:]) for t in _tags(header) if re.fullmatch(r"v\d{1,18}", t)]
    if len(versions) != 1:
        raise VersionConflict("If-Match names no single version of this resource")
    return versions[0]
