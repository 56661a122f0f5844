"""One task registry, every cloud's schedules: template.yaml's ScheduleV2 events and
cloudrun/schedules.yaml's Cloud Scheduler jobs must be what `lambdarun schedules` writes from
the registry, and what they deliver must be what the workers accept."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from adapters.messages import decode_body, decode_object
from adapters.records import ScheduleTick
from api.tasks import tasks
from api.tasks.registry import SWEEP
from lambdarun_cli.schedules import cloud_scheduler_jobs, gcloud_commands, sam_events
from tests.support.cfn import load_template

ROOT = Path(__file__).resolve().parents[2]
LAMBDARUN = str(Path(sys.executable).parent / "lambdarun")


def worker_schedules() -> dict[str, Any]:
    worker = load_template(ROOT / "template.yaml")["Resources"]["WorkerFunction"]["Properties"]
    return {k: v for k, v in worker["Events"].items() if v["Type"] == "ScheduleV2"}


def test_the_templates_schedules_are_the_registrys() -> None:
    assert worker_schedules() == sam_events(tasks), (
        "template.yaml's ScheduleV2 events differ from the registry: paste "
        "`lambdarun schedules --format sam` into WorkerFunction's Events"
    )


def test_cloud_schedulers_jobs_are_the_registrys() -> None:
    spec = yaml.safe_load((ROOT / "cloudrun" / "schedules.yaml").read_text())
    assert spec == cloud_scheduler_jobs(tasks), (
        "cloudrun/schedules.yaml differs from the registry: write it again with "
        "`lambdarun schedules --format cloud-scheduler`"
    )


def test_the_sweeper_runs_every_minute_on_both_clouds() -> None:
    [sweep] = [e for e in worker_schedules().values() if SWEEP in e["Properties"]["Input"]]
    assert sweep["Properties"]["ScheduleExpression"] == "rate(1 minute)"
    [job] = [j for j in cloud_scheduler_jobs(tasks) if j["name"] == "lambdarun-jobs-sweep"]
    assert job["schedule"] == "* * * * *"


def test_what_each_scheduler_delivers_is_a_tick_the_workers_accept() -> None:
    for event in worker_schedules().values():
        # EventBridge Scheduler fills in the time before it invokes the worker.
        given = event["Properties"]["Input"].replace(
            "<aws.scheduler.scheduled-time>", "2026-12-04T12:00:00Z"
        )
        tick = decode_object(json.loads(given))
        assert isinstance(tick, ScheduleTick)
        assert tasks.scheduled(tick.schedule) is not None
        assert tick.scheduled_time is not None
    for job in cloud_scheduler_jobs(tasks):
        tick = decode_body(base64.b64decode(job["pubsubTarget"]["data"]))
        assert isinstance(tick, ScheduleTick)
        assert tasks.scheduled(tick.schedule) is not None
    sample = decode_object(json.loads((ROOT / "events" / "schedule.json").read_text()))
    assert sample == ScheduleTick(SWEEP, sample.scheduled_time)  # type: ignore[union-attr]


def test_the_command_prints_every_format() -> None:
    def run(*args: str) -> str:
        result = subprocess.run(
            [LAMBDARUN, "schedules", *args], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    table = run()
    assert SWEEP in table
    assert "rate(1 minute)" in table
    assert yaml.safe_load(run("--format", "sam")) == sam_events(tasks)
    assert yaml.safe_load(run("--format", "cloud-scheduler")) == cloud_scheduler_jobs(tasks)
    assert run("--format", "gcloud").splitlines() == gcloud_commands(tasks)
    assert "--format" in run("--help")
