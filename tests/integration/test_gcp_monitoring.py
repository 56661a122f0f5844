"""cloudrun/monitoring/ (docs/monitoring.md): the dashboard, alert policies and SLOs parse, read
only metrics Cloud Run, Pub/Sub and the app's metric contract really write (with their labels), hold
only placeholders the documented render fills, burn-rate alerts watch SLOs that are defined with
the windows the docs promise, thresholds follow what they guard, and the docs apply every file."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from lambdarun_cli.deploy_check import GCP_PLACEHOLDERS

ROOT = Path(__file__).resolve().parents[2]
FOLDER = ROOT / "cloudrun" / "monitoring"
FILES = sorted(FOLDER.glob("*.json"))
DOCS = (ROOT / "docs" / "monitoring.md").read_text()
# Placeholders of these files beyond deploy_check's: the jobs subscription's ID (Eventarc names
# it; with one service, lambdarun-jobs-push).
NEW_PLACEHOLDERS = {"JOBS_SUBSCRIPTION"}

# Google Cloud's metrics these files may read: resource type and metric labels.
PLATFORM = {
    "run.googleapis.com/request_count": (
        "cloud_run_revision",
        {"response_code", "response_code_class", "route"},
    ),
    "run.googleapis.com/request_latencies": (
        "cloud_run_revision",
        {"response_code", "response_code_class", "route"},
    ),
    "pubsub.googleapis.com/subscription/num_undelivered_messages": ("pubsub_subscription", set()),
    "pubsub.googleapis.com/subscription/oldest_unacked_message_age": ("pubsub_subscription", set()),
}
RESOURCE_LABELS = {
    "cloud_run_revision": {"project_id", "service_name", "revision_name", "location"},
    "pubsub_subscription": {"project_id", "subscription_id"},
}
# The app's metric contract, as the Collector's googlecloud exporter names it: a metric under
# workload.googleapis.com/, every non-alphanumeric character of an attribute turned into "_".
CONTRACT = {
    "http.server.request.duration": {
        "http.route",
        "http.request.method",
        "http.response.status_code",
    },
    "job.duration": {"job.task", "job.outcome"},
    "job.queue_lag": {"job.task"},
}
ENUM_KEYS = {
    "perSeriesAligner",
    "crossSeriesReducer",
    "comparison",
    "combiner",
    "plotType",
    "scale",
    "mimeType",
    "severity",
    "targetAxis",
}
PROSE_KEYS = {"content", "displayName", "title", "label", "legendTemplate"}


def sanitized(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", name)


def promql_name(metric: str) -> str:
    """Cloud Monitoring's PromQL name: the first "/" becomes ":", other specials "_"."""
    domain, _, path = metric.partition("/")
    return f"{sanitized(domain)}:{sanitized(path)}"


APP_METRICS = {f"workload.googleapis.com/{name}": labels for name, labels in CONTRACT.items()}
PROMQL = {promql_name(metric): metric for metric in APP_METRICS}


def load(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((FOLDER / name).read_text())
    return document


def strings(node: Any, key: str = "") -> list[tuple[str, str]]:
    """Every (key, string) in a JSON document."""
    if isinstance(node, dict):
        return [pair for k, v in node.items() for pair in strings(v, k)]
    if isinstance(node, list):
        return [pair for item in node for pair in strings(item, key)]
    return [(key, node)] if isinstance(node, str) else []


FILTER_KEYS = {
    "filter",
    "denominatorFilter",
    "badServiceFilter",
    "totalServiceFilter",
    "distributionFilter",
}


def filters() -> list[tuple[str, str]]:
    return [
        (path.name, value)
        for path in FILES
        for key, value in strings(json.loads(path.read_text()))
        if key in FILTER_KEYS and not value.startswith("select_slo_")
    ]


def queries() -> list[tuple[str, str]]:
    return [
        (path.name, value)
        for path in FILES
        for key, value in strings(json.loads(path.read_text()))
        if key == "prometheusQuery"
    ]


def test_every_file_parses_and_the_docs_apply_each_one() -> None:
    assert FILES, "cloudrun/monitoring/ is empty"
    names = {path.name for path in FILES}
    for path in FILES:
        json.loads(path.read_text())
        assert f"cloudrun/monitoring/{path.name}" in DOCS, f"docs/monitoring.md skips {path.name}"
    commands = gcloud_commands()
    assert commands["dashboards"][:4] == ["gcloud", "monitoring", "dashboards", "create"]
    assert "--config-from-file=dashboard.json" in commands["dashboards"]
    policy = commands["policies"]
    assert policy[:5] == ["gcloud", "alpha", "monitoring", "policies", "create"]
    assert '--policy-from-file="$f"' in policy or "--policy-from-file=$f" in policy
    assert any(a.startswith("--notification-channels=") for a in policy)
    assert "for f in alert-*.json; do" in DOCS
    assert {n for n in names if n.startswith("alert-")}, "no alert policy"
    # The service and SLOs go through the REST API (gcloud has no command for them).
    assert "services?serviceId=lambdarun-api" in DOCS
    assert "-d @service-api.json" in DOCS
    (slos,) = re.findall(r"for slo in ([\w ]+); do", DOCS)
    assert {f"slo-{slo}.json" for slo in slos.split()} == {n for n in names if n.startswith("slo-")}
    assert "serviceLevelObjectiveId=$slo" in DOCS
    assert names == {
        "dashboard.json",
        "service-api.json",
        *(f"slo-{slo}.json" for slo in slos.split()),
        *(n for n in names if n.startswith("alert-")),
    }


def gcloud_commands() -> dict[str, list[str]]:
    """The docs' gcloud commands in shell blocks, by the group they act on."""
    found = {}
    for block in re.findall(r"```sh\n(.*?)```", DOCS, re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line.strip(), comments=True) if line.strip() else []
            if "gcloud" in words:
                command = words[words.index("gcloud") :]
                group = next(w for w in command if w in {"dashboards", "policies", "channels"})
                found[group] = command
    return found


def parse_filter(text: str) -> dict[str, str]:
    """`a.b."c"="value"` terms of a Monitoring filter, keys without their quotes."""
    terms = {}
    for key, value in re.findall(r'([\w.]+(?:\."[^"]+")?)=("[^"]*"|one_of\([^)]*\))', text):
        terms[key.replace('"', "")] = value.strip('"')
    assert re.sub(r'([\w.]+(?:\."[^"]+")?)=("[^"]*"|one_of\([^)]*\))', "", text).strip() == "", text
    return terms


def service_names() -> set[str]:
    return {
        yaml.safe_load((ROOT / "cloudrun" / name).read_text())["metadata"]["name"]
        for name in ("service.yaml", "worker.yaml")
    }


def test_every_filter_reads_a_metric_google_writes_with_its_labels() -> None:
    cloudrun_docs = (ROOT / "docs" / "cloudrun.md").read_text()
    seen = set()
    for name, text in filters():
        terms = parse_filter(text)
        metric = terms.pop("metric.type")
        seen.add(metric)
        assert metric in PLATFORM, f"{name}: {metric}"
        resource, labels = PLATFORM[metric]
        assert terms.pop("resource.type") == resource, f"{name}: {text}"
        for key, value in terms.items():
            kind, _, label = key.rpartition(".")
            if kind == "resource.label":
                assert label in RESOURCE_LABELS[resource], f"{name}: {key}"
            else:
                assert kind == "metric.label", f"{name}: {key}"
                assert label in labels, f"{name}: {key}"
            if label == "service_name":
                assert value in service_names(), f"{name}: no Cloud Run service {value}"
            if label == "subscription_id" and value not in NEW_PLACEHOLDERS:
                assert f"subscriptions create {value} " in cloudrun_docs, value
            if label == "response_code_class":
                classes = re.findall(r"\w+", value.removeprefix("one_of"))
                assert classes, text
                assert set(classes) <= {"1xx", "2xx", "3xx", "4xx", "5xx"}, text
    assert seen == set(PLATFORM)
    for path in FILES:
        for key, value in strings(json.loads(path.read_text())):
            if key == "groupByFields":
                assert value in {
                    'resource.label."service_name"',
                    'metric.label."response_code_class"',
                }


def test_every_query_reads_the_apps_metric_contract() -> None:
    seen = set()
    labels_used = set()
    for name, query in queries():
        for metric in re.findall(r"\b(\w+:\w+?)_(?:count|bucket|sum)\b", query):
            assert metric in PROMQL, f"{name}: {metric} is not in the metric contract"
            seen.add(PROMQL[metric])
            allowed = {sanitized(label) for label in APP_METRICS[PROMQL[metric]]} | {"le"}
            used = set(re.findall(r"by \(([^)]*)\)", query))
            used = {w.strip() for group in used for w in group.split(",")}
            used |= set(re.findall(r"\{(\w+)=~?", query))
            assert used <= allowed, f"{name}: {used - allowed}"
            labels_used |= used
        assert "histogram_quantile" not in query or "_bucket[" in query, query
    assert seen == set(APP_METRICS)
    assert {"http_route", "job_task", "job_outcome", "http_response_status_code"} <= labels_used


def placeholders(path: Path) -> set[str]:
    found = set()
    for key, value in strings(json.loads(path.read_text())):
        if key in ENUM_KEYS or key in PROSE_KEYS:
            continue
        found |= set(re.findall(r"\b[A-Z][A-Z0-9_]{3,}\b", value))
    return found


def test_placeholders_are_known_and_the_documented_render_fills_them() -> None:
    rendered_by_docs = set(re.findall(r"s/\\b(\w+)\\b/\$(\w+)/g", DOCS))
    filled = {name for name, variable in rendered_by_docs if name == variable}
    assert filled <= set(GCP_PLACEHOLDERS) | NEW_PLACEHOLDERS
    assert filled >= NEW_PLACEHOLDERS
    used: set[str] = set()
    values = {name: f"value-of-{name.lower().replace('_', '-')}" for name in filled}
    for path in FILES:
        found = placeholders(path)
        assert found <= set(GCP_PLACEHOLDERS) | NEW_PLACEHOLDERS, f"{path.name}: {found}"
        assert found <= filled, f"{path.name}: docs/monitoring.md does not fill {found - filled}"
        used |= found
        text = path.read_text()
        for name, value in values.items():  # sed -e "s/\bNAME\b/$NAME/g"
            text = re.sub(rf"\b{name}\b", value, text)
        assert not placeholders_in(text, filled), path.name
        json.loads(text)
    assert used == {"PROJECT_ID", "JOBS_SUBSCRIPTION"}


def placeholders_in(text: str, names: set[str]) -> set[str]:
    return {name for name in names if re.search(rf"\b{name}\b", text)}


BURN = re.compile(
    r'select_slo_burn_rate\("projects/PROJECT_ID/services/([\w-]+)/serviceLevelObjectives/'
    r'([\w-]+)", "(\d+)m"\)'
)


@pytest.mark.parametrize(
    ("name", "burn", "long", "short"),
    [
        ("alert-slo-availability-fast-burn.json", 14.4, 60, 5),
        ("alert-slo-availability-slow-burn.json", 6, 360, 30),
        ("alert-slo-latency-fast-burn.json", 14.4, 60, 5),
        ("alert-slo-latency-slow-burn.json", 6, 360, 30),
    ],
)
def test_each_burn_rate_alert_ands_a_long_and_a_short_window_of_a_defined_slo(
    name: str, burn: float, long: int, short: int
) -> None:
    policy = load(name)
    assert policy["combiner"] == "AND"
    minutes, objectives = [], set()
    for condition in policy["conditions"]:
        threshold = condition["conditionThreshold"]
        match = BURN.fullmatch(threshold["filter"])
        assert match, threshold["filter"]
        service, objective, window = match.groups()
        assert service == "lambdarun-api"
        assert (FOLDER / f"slo-{objective}.json").exists()
        objectives.add(objective)
        minutes.append(int(window))
        assert threshold["comparison"] == "COMPARISON_GT"
        assert threshold["thresholdValue"] == burn
        assert threshold["duration"] == "0s"
    assert len(objectives) == 1
    assert objectives.pop() in name
    assert sorted(minutes) == [short, long]
    assert long == 12 * short


def test_the_objectives_are_those_the_docs_state() -> None:
    availability = load("slo-availability.json")
    latency = load("slo-latency.json")
    for slo in (availability, latency):
        # 30 days: a burn rate of 14.4 spends 2% of the budget an hour (14.4 / 720 h).
        assert slo["rollingPeriod"] == f"{30 * 86400}s"
    assert availability["goal"] == 0.999
    ratio = availability["serviceLevelIndicator"]["requestBased"]["goodTotalRatio"]
    bad, total = parse_filter(ratio["badServiceFilter"]), parse_filter(ratio["totalServiceFilter"])
    assert bad.pop("metric.label.response_code_class") == "5xx"
    assert bad == total
    assert latency["goal"] == 0.99
    cut = latency["serviceLevelIndicator"]["requestBased"]["distributionCut"]
    assert parse_filter(cut["distributionFilter"])["metric.type"] == (
        "run.googleapis.com/request_latencies"
    )
    target = cut["range"]["max"]
    p99 = load("alert-api-latency-p99.json")["conditions"][0]["conditionThreshold"]
    assert p99["thresholdValue"] == target
    assert p99["aggregations"][0]["crossSeriesReducer"] == "REDUCE_PERCENTILE_99"
    assert f"within {target} ms" in latency["displayName"]
    assert load("service-api.json")["displayName"] == "lambdarun-api"


def test_the_oldest_message_alert_outlasts_every_delivery_attempt() -> None:
    """Pub/Sub redelivers a failing job up to maxDeliveryAttempts times, each after its ack
    deadline and a backoff doubling from minimumBackoff to maximumBackoff; only a message older
    than all of that is stuck."""
    spec = json.loads((ROOT / "cloudrun" / "pubsub-subscription.json").read_text())
    attempts = spec["deadLetterPolicy"]["maxDeliveryAttempts"]
    low, high = (
        int(spec["retryPolicy"][k].rstrip("s")) for k in ("minimumBackoff", "maximumBackoff")
    )
    backoff = sum(min(low * 2**n, high) for n in range(attempts - 1))
    longest = attempts * spec["ackDeadlineSeconds"] + backoff
    (condition,) = load("alert-jobs-oldest-unacked.json")["conditions"]
    threshold = condition["conditionThreshold"]
    assert threshold["thresholdValue"] > longest
    assert "oldest_unacked_message_age" in threshold["filter"]
    assert 'subscription_id"="JOBS_SUBSCRIPTION"' in threshold["filter"]


def test_the_dashboards_lines_are_the_thresholds_they_show() -> None:
    worker = yaml.safe_load((ROOT / "cloudrun" / "worker.yaml").read_text())
    timeout = worker["spec"]["template"]["spec"]["timeoutSeconds"]
    lines = {}
    for tile in load("dashboard.json")["mosaicLayout"]["tiles"]:
        for line in tile["widget"]["xyChart"].get("thresholds", []):
            lines[line["label"]] = line["value"]
    assert lines[f"timeout ({timeout} s)"] == timeout * 1000
    latency = load("slo-latency.json")["serviceLevelIndicator"]["requestBased"]
    assert lines["objective (p99)"] == latency["distributionCut"]["range"]["max"]
    (oldest,) = load("alert-jobs-oldest-unacked.json")["conditions"]
    assert lines["age alert"] == oldest["conditionThreshold"]["thresholdValue"]


def test_every_alert_says_what_to_do_and_goes_where_the_command_sends_it() -> None:
    for path in FILES:
        if not path.name.startswith("alert-"):
            continue
        policy = load(path.name)
        assert policy["conditions"], path.name
        assert policy["combiner"] in {"OR", "AND"}
        text = policy["documentation"]["content"]
        assert "**Do:**" in text, path.name
        assert "docs/monitoring.md" in text, path.name
        assert policy["documentation"]["mimeType"] == "text/markdown"
        assert "notificationChannels" not in policy  # --notification-channels adds them
        assert policy["severity"] in {"CRITICAL", "ERROR", "WARNING"}
