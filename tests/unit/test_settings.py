"""Settings: embedded defaults, and bad values refused with the setting named."""

from __future__ import annotations

import pytest

from api.settings import SettingsError, load_settings


def test_the_defaults_need_no_services() -> None:
    settings = load_settings()
    assert settings.database_url.startswith("sqlite:///")
    assert (settings.queue_url, settings.cache_url, settings.rate_limit_url) == (
        "inprocess://",
        "memory://",
        "memory://",
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DATABASE_URL", "mysql://localhost/db"),
        ("DATABASE_URL", "no scheme at all"),
        ("QUEUE_URL", "kafka://broker"),
        ("CACHE_URL", "memcached://x"),
        ("RATE_LIMIT", "lots"),
        ("JOB_LEASE_SECONDS", "0"),
        ("CACHE_TTL_SECONDS", "soon"),
        ("OUTBOX_GRACE_SECONDS", "0"),
        ("JOB_RESEND_SECONDS", "-1"),
        ("LOCAL_SWEEP_SECONDS", "never"),
        ("SWEEP_BATCH", "0"),
    ],
)
def test_a_bad_value_names_the_setting(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=variable):
        load_settings()


def test_the_outbox_resends_soon_in_process_and_late_on_a_real_queue() -> None:
    assert load_settings().outbox_times == (2.0, 2.0)
    sqs = "https://sqs.eu-west-1.amazonaws.com/123456789012/jobs"
    assert load_settings(queue_url=sqs).outbox_times == (10.0, 900.0)
    given = load_settings(queue_url=sqs, outbox_grace_seconds=1, job_resend_seconds=60)
    assert given.outbox_times == (1.0, 60.0)


def test_the_rate_limiter_shares_the_caches_redis() -> None:
    settings = load_settings(cache_url="redis://127.0.0.1:6379/0", rate_limit="10/second")
    assert settings.rate_limit_url == "redis://127.0.0.1:6379/0"
    assert settings.rate_limit_parsed == (10, 1)


def test_the_public_development_cursor_key_is_refused_on_a_deployed_stage() -> None:
    from api.settings import check_cursor_secret

    with pytest.raises(SettingsError, match="CURSOR_SECRET"):
        check_cursor_secret(load_settings(stage="prod"))
    check_cursor_secret(
        load_settings(stage="prod", cursor_secret="a-real-secret-of-32-bytes-or-more")
    )
    check_cursor_secret(load_settings(stage="local"))
    check_cursor_secret(load_settings(stage="test"))
