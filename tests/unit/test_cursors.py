from __future__ import annotations

import pytest

from api.cursors import InvalidCursor, decode_cursor, encode_cursor

KEY = b"k"


def test_a_cursor_round_trips_within_its_scope() -> None:
    cursor = encode_cursor("token/with+odd=chars", scope="users", secret=KEY)
    assert decode_cursor(cursor, scope="users", secret=KEY) == "token/with+odd=chars"


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "abc",
        "abc.def",
        "%%%.###",
        encode_cursor("t", scope="jobs", secret=KEY),
        encode_cursor("t", scope="users", secret=b"other"),
    ],
)
def test_anything_else_is_invalid(cursor: str) -> None:
    with pytest.raises(InvalidCursor):
        decode_cursor(cursor, scope="users", secret=KEY)
