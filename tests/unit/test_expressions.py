"""Schedule expressions: the EventBridge form a team writes, the unix-cron form Cloud Scheduler
gets, and a refusal for anything the two clouds would run at different times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from api.tasks.expressions import InvalidSchedule, parse


@pytest.mark.parametrize(
    ("text", "unix", "every"),
    [
        ("rate(1 minute)", "* * * * *", timedelta(minutes=1)),
        ("rate(5 minutes)", "*/5 * * * *", timedelta(minutes=5)),
        ("rate(30 minutes)", "*/30 * * * *", timedelta(minutes=30)),
        ("rate(60 minutes)", "0 * * * *", timedelta(hours=1)),
        ("rate(1 hour)", "0 * * * *", timedelta(hours=1)),
        ("rate(6 hours)", "0 */6 * * *", timedelta(hours=6)),
        ("rate(1 day)", "0 0 * * *", timedelta(days=1)),
    ],
)
def test_a_rate_gets_the_cron_that_fires_at_the_same_times(
    text: str, unix: str, every: timedelta
) -> None:
    parsed = parse(text)
    assert (parsed.text, parsed.unix_cron, parsed.every) == (text, unix, every)


@pytest.mark.parametrize(
    ("text", "unix"),
    [
        ("cron(0 12 * * ? *)", "0 12 * * *"),
        ("cron(15 10 ? * MON-FRI *)", "15 10 * * 1-5"),
        ("cron(0 8 ? * 1,7 *)", "0 8 * * 0,6"),  # EventBridge's Sunday is 1, unix cron's 0
        ("cron(0/10 * ? * SUN *)", "0/10 * * * 0"),
        ("cron(0 0 1 JAN,JUL ? *)", "0 0 1 1,7 *"),
        ("cron(30 2 ? * */2 *)", "30 2 * * */2"),
    ],
)
def test_a_cron_expression_is_written_for_unix_cron(text: str, unix: str) -> None:
    assert parse(text).unix_cron == unix
    assert parse(text).every is None


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("rate(7 minutes)", "cannot run it at exactly that rate"),
        ("rate(2 days)", "cannot run it at exactly that rate"),
        ("rate(1 minutes)", "rate(1 minute)"),
        ("rate(5 minute)", "rate(N minutes)"),
        ("rate(0 minutes)", "rate(1 minute)"),
        ("every 5 minutes", "write rate("),
        ("cron(0 12 * * *)", "six fields"),
        ("cron(0 12 * * ? 2027)", "no year"),
        ("cron(0 12 * * MON *)", "exactly one of"),
        ("cron(0 12 ? * ? *)", "exactly one of"),
        ("cron(0 12 L * ? *)", "L"),
        ("cron(0 12 ? * 6#3 *)", "unix cron lacks"),
        ("cron(0 24 * * ? *)", "outside 0-23"),
        ("cron(0 12 ? * 8 *)", "outside 1-7"),
    ],
)
def test_what_the_clouds_would_run_differently_is_refused(text: str, why: str) -> None:
    with pytest.raises(InvalidSchedule) as refused:
        parse(text)
    assert why in str(refused.value)


def test_a_rate_runs_next_one_period_later() -> None:
    start = datetime(2026, 12, 4, 10, 0, 30, tzinfo=UTC)
    assert parse("rate(5 minutes)").next_after(start) == start + timedelta(minutes=5)


def test_a_cron_runs_next_at_its_next_matching_minute() -> None:
    friday = datetime(2026, 12, 4, 10, 20, tzinfo=UTC)  # a Friday
    weekdays = parse("cron(15 10 ? * MON-FRI *)")
    assert weekdays.next_after(friday) == datetime(2026, 12, 7, 10, 15, tzinfo=UTC)  # Monday
    assert parse("cron(0/10 * ? * SUN *)").next_after(friday) == datetime(
        2026, 12, 6, 0, 0, tzinfo=UTC
    )
