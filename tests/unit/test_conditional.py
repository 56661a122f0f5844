from __future__ import annotations

import pytest

from adapters.errors import VersionConflict
from api.conditional import etag, expected_version, none_match


def test_if_none_match_compares_weakly() -> None:
    assert none_match(etag(3), 3)
    assert none_match('W/"v3"', 3)
    assert none_match('"a", "v3"', 3)
    assert none_match("*", 3)
    assert not none_match('"v2"', 3)
    assert not none_match(None, 3)


def test_if_match_names_one_version() -> None:
    assert expected_version(None) is None
    assert expected_version("*") is None
    assert expected_version('"v7"') == 7


@pytest.mark.parametrize("header", ['"x"', "v7", '"v1", "v2"', '"v99999999999999999999"', ""])
def test_an_if_match_we_never_issued_cannot_match(header: str) -> None:
    with pytest.raises(VersionConflict):
        expected_version(header)
