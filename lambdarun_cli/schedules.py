"""`lambdarun schedules`: the task registry's schedules as each cloud takes them.

The registry (api/tasks) is the one source: template.yaml's ScheduleV2 events on the worker and
cloudrun/schedules.yaml's Cloud Scheduler jobs are written from it, and a test fails when either
has drifted (tests/integration/test_schedules.py). Change a schedule in code, then paste
`lambdarun schedules --format sam` into template.yaml and `--format cloud-scheduler` into
cloudrun/schedules.yaml.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import shlex
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from api.tasks.registry import Schedule, TaskRegistry

# What EventBridge Scheduler hands the worker: a schedule tick (adapters/messages.py), with the
# time it meant to run filled in by the scheduler.
SCHEDULED_TIME = "<aws.scheduler.scheduled-time>"
TOPIC = "projects/PROJECT_ID/topics/lambdarun-jobs"
FORMATS = ("table", "sam", "cloud-scheduler", "gcloud")


def event_name(schedule: Schedule) -> str:
    """template.yaml's event key: "jobs.sweep" -> "ScheduleJobsSweep"."""
    return "Schedule" + "".join(
        part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", schedule.name)
    )


def job_name(schedule: Schedule) -> str:
    """Cloud Scheduler's job id: "jobs.sweep" -> "lambdarun-jobs-sweep"."""
    return "lambdarun-" + re.sub(r"[^a-z0-9-]+", "-", schedule.name.lower())


def max_event_age(schedule: Schedule) -> int:
    """A tick older than its period is superseded by the next: no point retrying it (within
    EventBridge Scheduler's 60 s - 24 h; an hour for a cron())."""
    every = schedule.expression.every
    seconds = int(every.total_seconds()) if every is not None else 3600
    return max(60, min(seconds, 86400))


def sam_events(registry: TaskRegistry) -> dict[str, Any]:
    from adapters.messages import MESSAGE_VERSION

    events: dict[str, Any] = {}
    for schedule in registry.schedules():
        tick = {"schedule": schedule.name, "version": MESSAGE_VERSION, "time": SCHEDULED_TIME}
        events[event_name(schedule)] = {
            "Type": "ScheduleV2",
            "Properties": {
                "Description": schedule.description[:512],
                # Schedule names are unique per account and region: a fixed one (SAM's default,
                # the event's logical id) would make a second stage's deploy fail.
                "OmitName": True,
                "ScheduleExpression": schedule.expression.text,
                "FlexibleTimeWindow": {"Mode": "OFF"},
                "Input": json.dumps(tick, separators=(",", ":")),
                "RetryPolicy": {
                    "MaximumRetryAttempts": 2,
                    "MaximumEventAgeInSeconds": max_event_age(schedule),
                },
            },
        }
    return events


def cloud_scheduler_jobs(registry: TaskRegistry, *, topic: str = TOPIC) -> list[dict[str, Any]]:
    """Cloud Scheduler's Job resources: a Pub/Sub target publishing the tick to the jobs topic,
    which delivers it to the worker like any job message (handlers/gcp_worker.py)."""
    from adapters.messages import encode_tick

    return [
        {
            "name": job_name(schedule),
            "description": schedule.description[:500],
            "schedule": schedule.expression.unix_cron,
            "timeZone": "Etc/UTC",
            "pubsubTarget": {
                "topicName": topic,
                "data": base64.b64encode(encode_tick(schedule.name).encode()).decode(),
            },
        }
        for schedule in registry.schedules()
    ]


def gcloud_commands(registry: TaskRegistry, *, topic: str = TOPIC) -> list[str]:
    """One `gcloud scheduler jobs create pubsub` per schedule; $REGION is left to the shell."""
    from adapters.messages import encode_tick

    return [
        " ".join(
            [
                "gcloud scheduler jobs create pubsub",
                job_name(schedule),
                '--location="$REGION"',
                *map(
                    shlex.quote,
                    [
                        f"--schedule={schedule.expression.unix_cron}",
                        "--time-zone=Etc/UTC",
                        f"--topic={topic}",
                        f"--message-body={encode_tick(schedule.name)}",
                        f"--description={schedule.description[:500]}",
                    ],
                ),
            ]
        )
        for schedule in registry.schedules()
    ]


def render(registry: TaskRegistry, output: str, *, topic: str = TOPIC) -> str:
    import yaml

    if output == "sam":
        return yaml.safe_dump(sam_events(registry), sort_keys=False, width=100)
    if output == "cloud-scheduler":
        return yaml.safe_dump(cloud_scheduler_jobs(registry, topic=topic), sort_keys=False)
    if output == "gcloud":
        return "\n".join(gcloud_commands(registry, topic=topic)) + "\n"
    rows = [("NAME", "EVENTBRIDGE", "CLOUD SCHEDULER", "WHAT")] + [
        (s.name, s.expression.text, s.expression.unix_cron, s.description)
        for s in registry.schedules()
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
        + f"  {row[3]}\n"
        for row in rows
    )


def command(args: argparse.Namespace) -> int:
    from api.tasks import tasks

    sys.stdout.write(render(tasks, args.format, topic=args.topic))
    return 0
