from __future__ import annotations

import pytest

from api.conditional import IfMatch, etag, if_match, none_match


def test_if_none_match_compares_weakly() -> None:
    assert none_match(etag(3), 3)
    assert none_match('W/"v3"', 3)
    assert none_match('"a", "v3"', 3)
    assert none_match("*", 3)
    assert not none_match('"v2"', 3)
    assert not none_match(None, 3)


def test_if_match_compares_strongly_and_honours_a_list() -> None:
    assert if_match(None) is None
    assert if_match("*") == IfMatch(any=True, versions=frozenset())
    assert if_match('"v7"') == IfMatch(any=False, versions=frozenset({7}))
    assert if_match('"v9", "v7"') == IfMatch(any=False, versions=frozenset({7, 9}))
    listed = if_match('"v9", W/"v8", "v7"')
    assert listed is not None
    assert (listed.holds(7), listed.holds(8), listed.holds(None)) == (True, False, False)
    assert if_match("*").holds(1)  # type: ignore[union-attr]
    assert not if_match("*").holds(None)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "header", ['W/"v7"', '"v07"', '"v0"', '"x"', "v7", '"v99999999999999999999"', ""]
)
def test_what_we_never_issued_or_a_weak_tag_matches_nothing(header: str) -> None:
    parsed = if_match(header)
    assert parsed is not None
    assert not parsed.holds(7)
