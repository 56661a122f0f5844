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
    # Powertools configures its service logger once per process (a second Logger with the
    # same service reuses the first one's handler, bound to the sys.stdout of that moment) and
    # copies that handler onto the app's loggers. Each import here is a new execution
    # environment: it starts from bare loggers, and what was there comes back afterwards.
    service = logging.getLogger(os.environ["POWERTOOLS_SERVICE_NAME"])
    loggers = [service, *(logging.getLogger(n) for n in ("api", "adapters", "handlers"))]
    kept_state = [(list(lg.handlers), vars(lg).copy()) for lg in loggers]
    for logger in loggers:
        logger.handlers.clear()
    vars(service).pop("init", None)  # Powertools' "already configured" mark
    try:
        module = importlib.import_module(name)
        try:
            yield module
        finally:
            module.environment.stop()
            module.environment.loop.close()
    finally:
        for logger, (handlers, attributes) in zip(loggers, kept_state, strict=True):
            vars(logger).clear()
            vars(logger).update(attributes)  # level, propagate, filters, Powertools' marks
            logger.handlers[:] = handlers
            logger.setLevel(logger.level)  # drops the level cache of the loggers below
        sys.modules.pop(name, None)
        os.environ.clear()
        os.environ.update(saved)
