"""Powertools Logger and Metrics for the Lambda entry points."""

from __future__ import annotations

import logging
import os

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers


def make_logger() -> Logger:
    """A Powertools Logger whose JSON format and Lambda context the app's own loggers share."""
    logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "lambdarun"))
    for name in ("api", "adapters", "handlers"):
        logging.getLogger(name)  # register them, so the copy below finds them
    copy_config_to_registered_loggers(source_logger=logger, include={"api", "adapters", "handlers"})
    return logger


def make_metrics() -> Metrics:
    # Without a namespace Powertools refuses to flush; default to the project's name.
    return Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "lambdarun"))
