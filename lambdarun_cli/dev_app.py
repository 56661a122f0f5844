"""The app as `lambdarun dev` serves it: `create_app()`, in a reload worker that dies with the
reloader.

uvicorn's reloader runs the server in a child process. SIGKILL the reloader (a closed terminal
tab, `kill -9`, an IDE's stop button) and that child goes on serving, holding the port, so the
next `lambdarun dev` fails with "address already in use". On Linux the child asks the kernel
for SIGTERM when its parent dies (prctl PR_SET_PDEATHSIG), and shuts down as on Ctrl-C.
Elsewhere nothing changes.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

from fastapi import FastAPI

from api.app import create_app

PARENT = "LAMBDARUN_DEV_RELOADER_PID"  # set by `lambdarun dev` before it starts the reloader
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent() -> None:
    parent = os.environ.get(PARENT)
    if sys.platform != "linux" or parent is None or int(parent) == os.getpid():
        return  # not a reload worker (--no-reload), or no prctl here
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        return
    if os.getppid() != int(parent):  # it died before we asked: go now
        os.kill(os.getpid(), signal.SIGTERM)


def app() -> FastAPI:
    die_with_parent()
    return create_app()
