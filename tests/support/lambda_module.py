"""Importing a Lambda handler module as the Lambda runtime does: once, with its environment."""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def lambda_module(name: str, **environment: str) -> Iterator[ModuleType]:
    """The handler module imported afresh with `environment` (plus what the Lambda runtime
    sets), its execution environment stopped and everything restored afterwards."""
    saved = dict(os.environ)
    os.environ.update(
        POWERTOOLS_SERVICE_NAME="lambdarun-test",
        POWERTOOLS_METRICS_NAMESPACE="lambdarun-test",
        LAMBDA_TASK_ROOT=str(ROOT),
        **environment,
    )
    sys.modules.pop(name, None)
    # Powertools copies its handler onto the app's loggers; the next module brings its own.
    loggers = [logging.getLogger(n) for n in ("api", "adapters", "handlers")]
    handlers = [list(logger.handlers) for logger in loggers]
    try:
        module = importlib.import_module(name)
        try:
            yield module
        finally:
            module.environment.stop()
            module.environment.loop.close()
    finally:
        for logger, kept in zip(loggers, handlers, strict=True):
            logger.handlers[:] = kept
        sys.modules.pop(name, None)
        os.environ.clear()
        os.environ.update(saved)
