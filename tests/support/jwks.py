"""An issuer for tests: signing keys generated per run, a JWKS served over real HTTP on
127.0.0.1, and tokens signed with `cryptography` alone, not with the library under test, so
the tests can also forge what a good library refuses (alg none, HS256 with a public key)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

ISSUER = "https://issuer.lambdarun.test/"
AUDIENCE = "https://api.lambdarun.test"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _uint(value: int, size: int | None = None) -> str:
    size = size or (value.bit_length() + 7) // 8
    return b64url(value.to_bytes(size, "big"))


@dataclass(frozen=True)
class SigningKey:
    """One key pair of the issuer: RS256 (RSA 2048) or ES256 (P-256)."""

    kid: str
    alg: str
    private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

    @classmethod
    def rsa(cls, kid: str) -> SigningKey:
        return cls(kid, "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))

    @classmethod
    def ec(cls, kid: str) -> SigningKey:
        return cls(kid, "ES256", ec.generate_private_key(ec.SECP256R1()))

    def public_jwk(self) -> dict[str, str]:
        if isinstance(self.private, rsa.RSAPrivateKey):
            numbers = self.private.public_key().public_numbers()
            return {
                "kty": "RSA",
                "kid": self.kid,
                "use": "sig",
                "alg": self.alg,
                "n": _uint(numbers.n),
                "e": _uint(numbers.e),
            }
        point = self.private.public_key().public_numbers()
        return {
            "kty": "EC",
            "kid": self.kid,
            "use": "sig",
            "alg": self.alg,
            "crv": "P-256",
            "x": _uint(point.x, 32),
            "y": _uint(point.y, 32),
        }

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, data: bytes) -> bytes:
        if isinstance(self.private, rsa.RSAPrivateKey):
            return self.private.sign(data, padding.PKCS1v15(), hashes.SHA256())
        r, s = decode_dss_signature(self.private.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def claims(
    subject: str = "alice", scope: str | None = None, *, lifetime: int = 300, **extra: Any
) -> dict[str, Any]:
    """Claims of a good access token; `extra` adds or replaces (None removes)."""
    now = int(time.time())
    values: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": subject,
        "iat": now,
        "exp": now + lifetime,
    }
    if scope is not None:
        values["scope"] = scope
    values.update(extra)
    return {name: value for name, value in values.items() if value is not None}


def token(
    key: SigningKey,
    payload: Mapping[str, Any],
    *,
    header: Mapping[str, Any] | None = None,
) -> str:
    """A compact JWS signed by `key`, its header `{"alg", "kid", "typ"}` changed by `header`."""
    head = {"alg": key.alg, "kid": key.kid, "typ": "at+jwt", **(header or {})}
    signing_input = _segments(head, payload)
    return f"{signing_input}.{b64url(key.sign(signing_input.encode()))}"


def unsigned_token(payload: Mapping[str, Any], kid: str) -> str:
    """`alg: none`: no signature at all."""
    return _segments({"alg": "none", "kid": kid, "typ": "JWT"}, payload) + "."


def hmac_token(secret: bytes, payload: Mapping[str, Any], kid: str) -> str:
    """HS256 with `secret`: the classic forgery when the secret is the issuer's public key."""
    signing_input = _segments({"alg": "HS256", "kid": kid, "typ": "JWT"}, payload)
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def _segments(header: Mapping[str, Any], payload: Mapping[str, Any]) -> str:
    parts = (json.dumps(dict(header)).encode(), json.dumps(dict(payload)).encode())
    return ".".join(b64url(part) for part in parts)


class JwksServer:
    """GET /jwks.json on 127.0.0.1: the public half of `keys`, which a test may change (key
    rotation); `requests` counts the fetches; `stop()` takes it down (connection refused)."""

    def __init__(self, keys: list[SigningKey]) -> None:
        self.keys = list(keys)
        self.requests = 0
        self.raw: bytes | None = None  # sent as it is instead of an HTTP answer: `misbehave`
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with server._lock:
                    server.requests += 1
                    body = json.dumps({"keys": [k.public_jwk() for k in server.keys]}).encode()
                    raw = server.raw
                if raw is not None:
                    self.wfile.write(raw)
                    return
                if self.path != "/jwks.json":
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._http.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}/jwks.json"
        # A short poll so shutdown() returns at once rather than after the default 0.5 s.
        self._thread = threading.Thread(target=self._http.serve_forever, args=(0.02,), daemon=True)
        self._running = False

    def start(self) -> None:
        self._thread.start()
        self._running = True

    def stop(self) -> None:
        if self._running:
            self._running = False
            self._http.shutdown()
        self._http.server_close()

    def publish(self, *keys: SigningKey) -> None:
        with self._lock:
            self.keys = list(keys)
            self.raw = None

    def misbehave(self, raw: bytes) -> None:
        """Answer every request with `raw` on the socket, whatever it is: not HTTP at all, or an
        HTTP answer whose body no JSON parser survives."""
        with self._lock:
            self.raw = raw


@contextmanager
def running_jwks(*keys: SigningKey) -> Iterator[JwksServer]:
    server = JwksServer(list(keys))
    server.start()
    try:
        yield server
    finally:
        server.stop()
