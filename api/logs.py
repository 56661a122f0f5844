"""Logging: readable lines locally, one JSON object per line when deployed, with the request id."""

from __future__ import annotations

import json
import logging
import sys

from api import cloud_logging
from api.middleware import request_id_var


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "severity": record.levelname,
            "message": record.getMessage(),
            "logger": record.name,
            "request_id": getattr(record, "request_id", None),
        }
        trace = cloud_logging.trace_of_line()
        if trace is not None:
            entry["trace_id"] = trace.trace_id
            entry["span_id"] = trace.span_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str, *, json_lines: bool) -> None:
    """Install one handler on the root logger, once; later calls only change the level."""
    root = logging.getLogger()
    root.setLevel(level.upper())
    if any(getattr(h, "_lambdarun", False) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler._lambdarun = True  # type: ignore[attr-defined]
    handler.addFilter(_RequestIdFilter())
    if cloud_logging.on_cloud_run():
        cloud_logging.install(handler)
    elif json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s [%(request_id)s] %(message)s")
        )
    root.addHandler(handler)
