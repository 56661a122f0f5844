"""Cloud Run entry point: `python -m handlers.cloudrun` serves the app with uvicorn on $PORT.

uvloop and httptools; the client's address and scheme from the proxy headers the app trusts
(PROXY_HOPS: Cloud Run's front end appends one hop); on SIGTERM uvicorn stops accepting, lets
in-flight requests finish for up to GRACE_SECONDS, runs the lifespan shutdown (closing pools)
and the process exits 0, inside the 10 s Cloud Run allows before SIGKILL.
"""

from __future__ import annotations

import gc

gc.disable()  # no collections while importing: see docs/performance.md

import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402

import uvicorn  # noqa: E402

from api.app import create_app  # noqa: E402
from api.settings import SettingsError, load_settings  # noqa: E402
from handlers.http_deadlines import with_header_deadline  # noqa: E402

GRACE_SECONDS = 8  # Cloud Run sends SIGKILL 10 s after SIGTERM


def build_server(port: int) -> uvicorn.Server:
    settings = load_settings()
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host="0.0.0.0",  # noqa: S104 - Cloud Run routes to the container's interface
        port=port,
        loop="uvloop",
        http=with_header_deadline(settings.read_timeout_seconds),  # httptools, and a deadline
        lifespan="on",
        # Not uvicorn's: with every peer trusted it takes the leftmost X-Forwarded-For entry,
        # which the client writes. The app reads the hop PROXY_HOPS says (api/middleware.py).
        proxy_headers=False,
        timeout_graceful_shutdown=GRACE_SECONDS,
        # Cloud Run writes a request log for every request already, and the app's own
        # logging is set up by create_app (JSON lines there).
        access_log=False,
        log_config=None,
        server_header=False,
    )
    return uvicorn.Server(config)


def main() -> None:
    port = os.environ.get("PORT", "8080")
    try:
        if not port.isdigit():
            raise SettingsError(f"invalid settings: PORT: {port!r} is not a port number")
        server = build_server(int(port))
    except SettingsError as exc:
        # One line naming the variable, and a status the platform logs: no traceback to read.
        print(f"lambdarun: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    gc.freeze()  # what init made lives for the whole process: keep it out of collections
    gc.enable()
    # uvicorn re-raises SIGTERM once it has shut down, which would end the process with the
    # signal's default action (exit status 143) although the shutdown was clean.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    server.run()
    if not server.started:
        raise SystemExit(3)  # the lifespan startup failed; uvicorn has logged why


if __name__ == "__main__":
    main()
