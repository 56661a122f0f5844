"""Schedule expressions as EventBridge Scheduler writes them, `rate(5 minutes)` or
`cron(0 12 ? * MON-FRI *)`, with the unix-cron form Cloud Scheduler takes for each.

Only expressions that mean exactly the same on both clouds are accepted: a rate that unix cron
cannot state (rate(7 minutes)) or a cron field unix cron lacks (L, W, #, a year) is refused
when the task registers, naming what to write instead, rather than running at other times on
one of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

_RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
_CRON = re.compile(r"^cron\(([^()]+)\)$")
_FIELD = re.compile(r"^[0-9A-Z*,/-]+$")
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
# (name, lowest, highest) of EventBridge's first five fields; day of week is 1-7 from Sunday.
_RANGES = (("minutes", 0, 59), ("hours", 0, 23), ("day of month", 1, 31), ("month", 1, 12))


class InvalidSchedule(ValueError):
    """A schedule expression both clouds cannot run alike; the message says why."""


@dataclass(frozen=True, slots=True)
class ScheduleExpression:
    text: str  # as EventBridge Scheduler takes it (template.yaml)
    unix_cron: str  # as Cloud Scheduler takes it
    every: timedelta | None  # a rate's period; None for cron()

    def next_after(self, moment: datetime) -> datetime:
        """The first time after `moment` this runs (a rate counts from `moment`)."""
        if self.every is not None:
            return moment + self.every
        from croniter import croniter  # only a process running cron() schedules itself pays

        following: datetime = croniter(self.unix_cron, moment).get_next(datetime)
        return following


def parse(text: str) -> ScheduleExpression:
    text = text.strip()
    rate = _RATE.match(text)
    if rate:
        return _rate(text, int(rate[1]), rate[2].rstrip("s"))
    cron = _CRON.match(text)
    if cron:
        return ScheduleExpression(text, _unix_cron(text, cron[1].split()), None)
    raise InvalidSchedule(
        f"{text!r}: write rate(N minutes|hours|days) or cron(minutes hours day-of-month month "
        "day-of-week year), as EventBridge Scheduler does"
    )


def _rate(text: str, value: int, unit: str) -> ScheduleExpression:
    if value < 1 or (value == 1) != (not text.endswith("s)")):
        raise InvalidSchedule(f"{text!r}: write rate(1 {unit}) or rate(N {unit}s) with N > 1")
    minutes = value * {"minute": 1, "hour": 60, "day": 1440}[unit]
    if minutes < 60 and 60 % minutes == 0:
        cron = "*" if minutes == 1 else f"*/{minutes}"
        unix = f"{cron} * * * *"
    elif minutes % 60 == 0 and minutes < 1440 and 24 % (minutes // 60) == 0:
        hours = minutes // 60
        unix = "0 * * * *" if hours == 1 else f"0 */{hours} * * *"
    elif minutes == 1440:
        unix = "0 0 * * *"
    else:
        raise InvalidSchedule(
            f"{text!r}: unix cron (Cloud Scheduler) cannot run it at exactly that rate; use a "
            "divisor of an hour or of a day, rate(1 day), or a cron() expression"
        )
    return ScheduleExpression(text, unix, timedelta(minutes=minutes))


def _unix_cron(text: str, fields: list[str]) -> str:
    if len(fields) != 6:
        raise InvalidSchedule(f"{text!r}: cron() takes six fields, the last the year")
    if fields[5] != "*":
        raise InvalidSchedule(f"{text!r}: unix cron has no year; use * there")
    day_of_month, day_of_week = fields[2], fields[4]
    if (day_of_month == "?") == (day_of_week == "?"):
        raise InvalidSchedule(f"{text!r}: exactly one of day-of-month and day-of-week is ?")
    converted = []
    for (name, low, high), given in zip(_RANGES, fields[:4], strict=True):
        field = "*" if given == "?" else given
        converted.append(_field(text, name, field, low, high, _MONTHS if name == "month" else ()))
    if day_of_week == "?":
        converted.append("*")
    else:
        # EventBridge counts Sunday as 1, unix cron as 0.
        converted.append(_field(text, "day of week", day_of_week, 1, 7, _DAYS, shift=-1))
    return " ".join(converted)


def _field(
    text: str,
    name: str,
    field: str,
    low: int,
    high: int,
    names: tuple[str, ...],
    shift: int = 0,
) -> str:
    """One field, names turned into numbers (and shifted), every number checked in range."""
    if not _FIELD.match(field):
        raise InvalidSchedule(f"{text!r}: the {name} field {field!r} uses what unix cron lacks")

    def number(token: str) -> str:
        if token in names:
            value = names.index(token) + low
        elif token.isdigit():
            value = int(token)
        else:
            raise InvalidSchedule(f"{text!r}: {token!r} in the {name} field is not understood")
        if not low <= value <= high:
            raise InvalidSchedule(f"{text!r}: {value} is outside {low}-{high} for the {name}")
        return str(value + shift)

    parts = []
    for part in field.split(","):
        base, _, step = part.partition("/")
        if step and not step.isdigit():
            raise InvalidSchedule(f"{text!r}: the step {step!r} in the {name} field is no number")
        converted = "*" if base == "*" else "-".join(map(number, base.split("-", 1)))
        parts.append(f"{converted}/{step}" if step else converted)
    return ",".join(parts)
