"""Shared fixtures: a clean environment for every test."""

from __future__ import annotations

import os

import pytest

# Settings read these; a developer's shell must not leak into a test.
SETTING_NAMES = (
    "DATABASE_URL",
    "QUEUE_URL",
    "CACHE_URL",
    "RATE_LIMIT_URL",
    "RATE_LIMIT",
    "STAGE",
    "CURSOR_SECRET",
    "LOG_LEVEL",
    "PORT",
    "PUBSUB_PUSH_AUDIENCE",
    "PUBSUB_PUSH_SERVICE_ACCOUNT",
    # Cloud Run and Google SDK conventions the Cloud Run code reads
    "K_SERVICE",
    "GOOGLE_CLOUD_PROJECT",
    "GCLOUD_PROJECT",
    "GCP_PROJECT",
    "PUBSUB_EMULATOR_HOST",
    "GCE_METADATA_HOST",
)


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SETTING_NAMES:
        monkeypatch.delenv(name, raising=False)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}
