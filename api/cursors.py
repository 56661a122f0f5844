"""Opaque pagination cursors: the store's resume token, scoped to one listing and signed, so a
tampered, truncated or foreign cursor is refused instead of silently starting elsewhere."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json


class InvalidCursor(ValueError):
    """The cursor was not made by this deployment for this listing."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(secret: bytes, body: bytes) -> bytes:
    return hmac.new(secret, body, hashlib.sha256).digest()[:16]


def encode_cursor(token: str, *, scope: str, secret: bytes) -> str:
    body = json.dumps({"s": scope, "t": token}, separators=(",", ":")).encode()
    return f"{_b64(body)}.{_b64(_signature(secret, body))}"


def decode_cursor(cursor: str, *, scope: str, secret: bytes) -> str:
    """The store token inside `cursor`, or `InvalidCursor`."""
    body_part, _, sig_part = cursor.partition(".")
    try:
        body, signature = _unb64(body_part), _unb64(sig_part)
    except (binascii.Error, ValueError) as exc:
        raise InvalidCursor("cursor is not well-formed") from exc
    if not hmac.compare_digest(signature, _signature(secret, body)):
        raise InvalidCursor("cursor was not issued by this service")
    data = json.loads(body)
    if data.get("s") != scope or not isinstance(data.get("t"), str):
        raise InvalidCursor("cursor belongs to another listing")
    token: str = data["t"]
    return token
