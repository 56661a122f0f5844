"""Which X-Forwarded-For entry is the client: the one the trusted proxies appended, never one
the client wrote."""

from __future__ import annotations

import pytest

from api.middleware import forwarded_client


def scope(*headers: tuple[bytes, bytes]) -> dict[str, object]:
    return {"type": "http", "client": ("10.0.0.1", 5555), "scheme": "http", "headers": headers}


@pytest.mark.parametrize(
    ("header", "hops", "client"),
    [
        (b"198.51.100.9", 1, "198.51.100.9"),
        (b"203.0.113.1, 198.51.100.9", 1, "198.51.100.9"),
        (b"203.0.113.1,198.51.100.9, 35.191.0.1", 2, "198.51.100.9"),
        (b"2001:db8::1", 1, "2001:db8::1"),
        (b"198.51.100.9", 2, "10.0.0.1"),  # fewer entries than proxies: the peer it is
        (b"203.0.113.1, not-an-address", 1, "10.0.0.1"),
        (b"", 1, "10.0.0.1"),
    ],
)
def test_the_client_is_the_entry_the_trusted_proxies_appended(
    header: bytes, hops: int, client: str
) -> None:
    changed = forwarded_client(scope((b"x-forwarded-for", header)), hops)
    assert changed["client"][0] == client  # type: ignore[index]


def test_several_header_lines_are_one_list_and_the_nearest_proxy_names_the_scheme() -> None:
    changed = forwarded_client(
        scope(
            (b"x-forwarded-for", b"203.0.113.1"),
            (b"x-forwarded-for", b"198.51.100.9"),
            (b"x-forwarded-proto", b"http, https"),
        ),
        1,
    )
    assert (changed["client"], changed["scheme"]) == (("198.51.100.9", 0), "https")
    assert forwarded_client(scope((b"x-forwarded-proto", b"gopher")), 1)["scheme"] == "http"
