"""uvicorn's httptools protocol, with a deadline on a request's headers.

uvicorn has none: a client that sends one header byte every few seconds keeps a connection (and
its slot under `limit_concurrency`) forever, because any byte cancels the keep-alive timer
(Slowloris). This protocol answers 408 and closes a connection whose request headers are not
complete `deadline` seconds after it opened, or after its previous response. The body has its
own deadline in the app (api/limits.py), where a 408 can be problem+json.

The methods extended here are uvicorn's protocol callbacks (0.30-0.55); a test serves a slow
client through the real server (tests/integration/test_cloudrun_server.py), so an upgrade that
changes them fails there, not in production.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 34\r\nconnection: close\r\n\r\nThe request headers came too slow."
)


def with_header_deadline(deadline: float) -> type[HttpToolsProtocol]:
    """The protocol class for uvicorn's `Config(http=...)`, closing after `deadline` seconds."""

    class HeaderDeadlineProtocol(HttpToolsProtocol):
        _timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            idle = not self.pipeline  # a pipelined request's headers are in already
            super().on_response_complete()
            if idle and not self.transport.is_closing():
                self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._timer = self.loop.call_later(deadline, self._expired)

        def _disarm(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

        def _expired(self) -> None:
            self._timer = None
            if not self.transport.is_closing():
                self.transport.write(TIMEOUT_RESPONSE)
                self.transport.close()

    return HeaderDeadlineProtocol
