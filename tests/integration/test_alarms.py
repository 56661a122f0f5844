"""template.yaml's alarms and dashboard (docs/monitoring.md): every alarm reaches someone when it
fires and when it clears, prod cannot deploy without someone to reach, each alarm watches a metric
AWS really publishes for the resource it names, the thresholds follow what they guard, the
burn-rate windows page on a real burn and not on a blip, and the dashboard reads the metric
contract the app's EMF emitter writes."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from lambdarun_cli.deploy_check import aws_problems
from lambdarun_cli.local_template import Template
from tests.support.cfn import load_template

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = ROOT / "template.yaml"
TEMPLATE = load_template(TEMPLATE_PATH)
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]
PARAMETERS: dict[str, Any] = TEMPLATE["Parameters"]
ALARM_TYPES = {"AWS::CloudWatch::Alarm", "AWS::CloudWatch::CompositeAlarm"}
TOPIC = {"Fn::If": ["CreateAlarmTopic", {"Ref": "AlarmTopic"}, {"Ref": "AlarmTopicArn"}]}

# What AWS publishes, and with which sets of dimensions (the services' metric references).
PUBLISHED: dict[tuple[str, str], list[set[str]]] = {
    **{
        ("AWS/ApiGateway", name): [{"ApiId"}, {"ApiId", "Stage"}]
        for name in ("Count", "4xx", "5xx", "Latency", "IntegrationLatency")
    },
    **{
        ("AWS/Lambda", name): [{"FunctionName"}, {"FunctionName", "Resource"}]
        for name in ("Invocations", "Errors", "Throttles", "Duration")
    },
    **{
        ("AWS/SQS", name): [{"QueueName"}]
        for name in (
            "ApproximateAgeOfOldestMessage",
            "ApproximateNumberOfMessagesVisible",
            "ApproximateNumberOfMessagesNotVisible",
        )
    },
    **{
        ("AWS/DynamoDB", name): [{"TableName"}, {"TableName", "GlobalSecondaryIndexName"}]
        for name in ("ReadThrottleEvents", "WriteThrottleEvents")
    },
    ("AWS/DynamoDB", "ThrottledRequests"): [{"TableName", "Operation"}],
}
# The metric contract (docs/monitoring.md): the app's EMF metrics and their dimension sets, in
# a namespace per stage (the dashboard's ${Stage} is read as the marker <Stage>).
NAMESPACE = "lambdarun-<Stage>"
CONTRACT = {
    "http.server.request.duration": {
        "service",
        "http.route",
        "http.request.method",
        "http.response.status_code",
    },
    "job.duration": {"service", "job.task", "job.outcome"},
    "job.queue_lag": {"service", "job.task"},
}
WORKER_COUNTERS = {"PoisonMessages", "UnsupportedEvents", "Records", "ScheduleTicks"}
# The dashboard's dimension values, as dashboard() fills the ${...} of the resources they name.
RESOURCE_MARKERS = {
    "ApiId": {"<HttpApi>"},
    "FunctionName": {"<ApiFunction>", "<WorkerFunction>"},
    "QueueName": {"<JobsQueue.QueueName>", "<JobsDeadLetterQueue.QueueName>"},
    "TableName": {"<Table>"},
    "GlobalSecondaryIndexName": {"gsi1"},
}


def alarms() -> dict[str, dict[str, Any]]:
    return {k: r for k, r in RESOURCES.items() if r["Type"] in ALARM_TYPES}


def sub_text(value: Any) -> str:
    """A string property as written: plain, or the template of its Fn::Sub."""
    if isinstance(value, dict) and "Fn::Sub" in value:
        sub = value["Fn::Sub"]
        return str(sub[0] if isinstance(sub, list) else sub)
    return str(value)


def components(composite: dict[str, Any]) -> list[str]:
    """The metric alarms a composite's AlarmRule combines, by logical id."""
    return re.findall(r'ALARM\("\$\{(\w+)\}"\)', sub_text(composite["Properties"]["AlarmRule"]))


def windows() -> dict[str, str]:
    """Each burn-rate window alarm and the composite it belongs to."""
    found = {}
    for name, alarm in alarms().items():
        if alarm["Type"] == "AWS::CloudWatch::CompositeAlarm":
            found.update(dict.fromkeys(components(alarm), name))
    return found


def template(**overrides: str) -> Template:
    """template.yaml with these parameter values, as the repo's own resolver reads it."""
    values = {"Stage": "prod", **overrides}
    return Template(TEMPLATE_PATH, stack_name=f"lambdarun-{values['Stage']}", overrides=values)


# ---- who hears it -----------------------------------------------------------------------------


def test_every_alarm_reaches_the_topic_when_it_fires_and_when_it_clears() -> None:
    parts = windows()
    assert parts, "no composite alarm: the burn-rate alarms are gone"
    for name, alarm in alarms().items():
        properties = alarm["Properties"]
        if name in parts:  # a window: its composite speaks for it, once
            assert "AlarmActions" not in properties, name
            assert "OKActions" not in properties, name
            composite = RESOURCES[parts[name]]["Properties"]
            assert composite["AlarmActions"] == [TOPIC], parts[name]
            continue
        assert properties["AlarmActions"] == [TOPIC], name
        assert properties["OKActions"] == [TOPIC], name
        assert properties.get("AlarmDescription"), f"{name}: the mail says nothing"
    assert len(alarms()) - len(parts) >= 14


def test_the_stack_makes_the_topic_unless_given_one_and_subscribes_the_address() -> None:
    topic = RESOURCES["AlarmTopic"]
    assert topic["Type"] == "AWS::SNS::Topic"
    assert topic["Condition"] == "CreateAlarmTopic"
    subscription = RESOURCES["AlarmEmailSubscription"]
    assert subscription["Condition"] == "HasAlarmEmail"
    assert subscription["Properties"]["Protocol"] == "email"
    assert subscription["Properties"]["Endpoint"] == {"Ref": "AlarmEmail"}
    assert subscription["Properties"]["TopicArn"] == TOPIC

    own = template(AlarmEmail="oncall@example.com")
    assert own.condition("CreateAlarmTopic") is True
    assert own.condition("HasAlarmEmail") is True
    theirs = template(AlarmTopicArn="arn:aws:sns:eu-west-1:123456789012:paging")
    assert theirs.condition("CreateAlarmTopic") is False
    assert theirs.condition("HasAlarmEmail") is False
    assert TEMPLATE["Outputs"]["AlarmsTopicArn"]["Value"] == TOPIC


def rule_allows(**overrides: str) -> bool:
    rule = TEMPLATE["Rules"]["ProdAlarmsHaveADestination"]
    resolved = template(**overrides)
    if not resolved.resolve(rule["RuleCondition"]):
        return True
    return all(resolved.resolve(a["Assert"]) for a in rule["Assertions"])


def test_prod_cannot_deploy_without_somewhere_for_its_alarms_to_go(tmp_path: Path) -> None:
    # CloudFormation's rule, as the template's own resolver evaluates it.
    assert not rule_allows()
    assert rule_allows(AlarmEmail="oncall@example.com")
    assert rule_allows(AlarmTopicArn="arn:aws:sns:eu-west-1:123456789012:paging")
    assert rule_allows(Stage="dev")

    # make deploy-check, on samconfig.toml once the issuer's values are in.
    text = (ROOT / "samconfig.toml").read_text()
    for placeholder, value in {
        "REPLACE-ME.invalid/.well-known/jwks.json": "issuer.example.com/.well-known/jwks.json",
        "REPLACE-ME.invalid/": "issuer.example.com/",
        'JwtAudience=\\"REPLACE-ME\\"': 'JwtAudience=\\"https://api.example.com\\"',
    }.items():
        text = text.replace(placeholder, value)
    samconfig = tmp_path / "samconfig.toml"

    def problems(stage: str, config: str) -> list[str]:
        samconfig.write_text(config)
        return aws_problems(stage, samconfig, TEMPLATE_PATH)

    shipped = problems("prod", text)
    assert len(shipped) == 1
    assert shipped[0].startswith("prod: AlarmEmail is 'REPLACE-ME")
    email = text.replace("REPLACE-ME@example.invalid", "oncall@example.com")
    assert problems("prod", email) == []
    neither = re.sub(r' AlarmEmail=\\"[^"\\]*\\"', "", text)
    assert problems("prod", neither) == [
        "prod: AlarmEmail or AlarmTopicArn is required: prod's alarms must reach someone "
        "(docs/monitoring.md)"
    ]
    topic = neither.replace(
        'Stage=\\"prod\\"', 'Stage=\\"prod\\" AlarmTopicArn=\\"arn:aws:sns:eu-west-1:1:p\\"'
    )
    assert problems("prod", topic) == []
    assert problems("dev", text) == []  # dev may keep its alarms to itself


# ---- what each alarm watches ------------------------------------------------------------------


def watched(alarm: dict[str, Any]) -> list[dict[str, Any]]:
    """The metrics an alarm reads: its own, or each MetricStat of its metric math."""
    properties = alarm["Properties"]
    if "MetricName" in properties:
        return [properties]
    return [
        query["MetricStat"]["Metric"] for query in properties["Metrics"] if "MetricStat" in query
    ]


def expected_value(dimension: str, value: Any) -> bool:
    """Whether a dimension's value names the resource that publishes it, as it names it."""
    queues = ("JobsQueue", "JobsDeadLetterQueue")
    indexes = [i["IndexName"] for i in RESOURCES["Table"]["Properties"]["GlobalSecondaryIndexes"]]
    return {
        "ApiId": value == {"Ref": "HttpApi"},
        "FunctionName": value in ({"Ref": "ApiFunction"}, {"Ref": "WorkerFunction"}),
        "QueueName": value in [{"Fn::GetAtt": [q, "QueueName"]} for q in queues],
        "TableName": value == {"Ref": "Table"},
        "GlobalSecondaryIndexName": value in indexes,
    }.get(dimension, False)


def test_each_alarm_watches_a_metric_its_resource_publishes() -> None:
    for name, alarm in alarms().items():
        if alarm["Type"] == "AWS::CloudWatch::CompositeAlarm":
            assert all(c in RESOURCES for c in components(alarm)), name
            continue
        metrics = watched(alarm)
        assert metrics, name
        for metric in metrics:
            key = (metric["Namespace"], metric["MetricName"])
            assert key in PUBLISHED, f"{name}: {key} is not a metric AWS publishes"
            dimensions = {d["Name"]: d["Value"] for d in metric["Dimensions"]}
            assert set(dimensions) in PUBLISHED[key], f"{name}: {key} has no {set(dimensions)}"
            for dimension, value in dimensions.items():
                assert expected_value(dimension, value), f"{name}: {dimension}={value}"
        properties = alarm["Properties"]
        if "ExtendedStatistic" in properties:
            assert re.fullmatch(r"p\d{1,2}(\.\d{1,2})?", properties["ExtendedStatistic"]), name
        if "Metrics" in properties:  # metric math: one answer, from ids that exist
            ids = {query["Id"] for query in properties["Metrics"]}
            (answer,) = [q for q in properties["Metrics"] if q.get("ReturnData", True)]
            used = set(re.findall(r"\b[a-z]\w*\b", sub_text(answer["Expression"])))
            assert used, name
            assert used <= ids - {answer["Id"]}, name


def test_thresholds_follow_what_they_guard() -> None:
    worker = RESOURCES["WorkerFunction"]["Properties"]
    duration = RESOURCES["WorkerDurationAlarm"]["Properties"]
    assert duration["Threshold"] == 0.8 * worker["Timeout"] * 1000

    # A message being retried is older each receive; only one older than all its receives is a
    # backlog. (The sweeper resends a job whose message is lost, so age alone is the signal.)
    queue = RESOURCES["JobsQueue"]["Properties"]
    receives = PARAMETERS["MaxReceiveCount"]["Default"]
    age = RESOURCES["JobsQueueAgeAlarm"]["Properties"]
    assert age["Threshold"] > receives * queue["VisibilityTimeout"]
    assert age["MetricName"] == "ApproximateAgeOfOldestMessage"

    for name in ("ApiLatencyP99Alarm", *(n for n in windows() if "Latency" in n)):
        assert RESOURCES[name]["Properties"]["Threshold"] == {"Ref": "LatencyP99TargetMs"}, name
    assert PARAMETERS["LatencyP99TargetMs"]["Default"] == 1000
    assert PARAMETERS["AvailabilityTarget"]["Default"] == 99.9


# ---- the objectives' burn-rate windows --------------------------------------------------------


def period(alarm: dict[str, Any]) -> int:
    properties = alarm["Properties"]
    if "Period" in properties:
        return int(properties["Period"])
    (seconds,) = {q["MetricStat"]["Period"] for q in properties["Metrics"] if "MetricStat" in q}
    return int(seconds)


def python_of(expression: str) -> str:
    """CloudWatch metric math (IF, FILL, arithmetic) as the Python expression it means."""
    expression = re.sub(r"FILL\((\w+), (\w+)\)", r"(\2 if \1 is None else \1)", expression)
    match = re.fullmatch(r"IF\((.*)\)", expression)
    if not match:
        return expression
    depth, parts, start = 0, [], 0
    for at, char in enumerate(match[1]):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(match[1][start:at])
            start = at + 1
    condition, then, otherwise = [*parts, match[1][start:]]
    return f"(({then}) if ({condition}) else ({otherwise}))"


def burn_rate(alarm: str, errors: float | None, requests: float, target: float = 99.9) -> float:
    query = next(q for q in RESOURCES[alarm]["Properties"]["Metrics"] if "Expression" in q)
    text = sub_text(query["Expression"]).replace("${AvailabilityTarget}", str(target))
    code = python_of(text)
    value: float = eval(code, {"__builtins__": {}}, {"errors": errors, "requests": requests})  # noqa: S307 - our own template's arithmetic, no names but two
    return value


@pytest.mark.parametrize(
    ("composite", "burn", "long", "short"),
    [
        ("ApiAvailabilityFastBurnAlarm", 14.4, 3600, 300),
        ("ApiAvailabilitySlowBurnAlarm", 6, 21600, 1800),
        ("ApiLatencyFastBurnAlarm", 14.4, 3600, 300),
        ("ApiLatencySlowBurnAlarm", 6, 21600, 1800),
    ],
)
def test_each_burn_alert_ands_a_long_and_a_short_window(
    composite: str, burn: float, long: int, short: int
) -> None:
    rule = sub_text(RESOURCES[composite]["Properties"]["AlarmRule"])
    assert re.fullmatch(r'ALARM\("\$\{\w+\}"\) AND ALARM\("\$\{\w+\}"\)', rule), rule
    parts = [RESOURCES[name] for name in components(RESOURCES[composite])]
    assert sorted(period(p) for p in parts) == [short, long]
    assert long == 12 * short
    for part in parts:
        properties = part["Properties"]
        assert properties["ComparisonOperator"] == "GreaterThanThreshold"
        assert properties["EvaluationPeriods"] == 1
        assert properties["TreatMissingData"] == "notBreaching"
        if "Latency" in composite:
            # 99% within the target: a burn rate over B is more than B% slower than it, that is
            # the (100 - B)th percentile over the target.
            assert properties["ExtendedStatistic"] == f"p{100 - burn:g}"
        else:
            assert properties["Threshold"] == burn


def test_the_availability_windows_burn_on_a_real_burn_only() -> None:
    for name in ("ApiAvailabilityBurn1hAlarm", "ApiAvailabilityBurn5mAlarm"):
        threshold = RESOURCES[name]["Properties"]["Threshold"]
        # 99.9%: the budget is 0.1% of requests; 14.4x is 1.44%.
        assert burn_rate(name, 20, 1000) == pytest.approx(20)
        assert burn_rate(name, 20, 1000) > threshold
        assert burn_rate(name, 14, 1000) < threshold
        assert burn_rate(name, 1, 1000) == pytest.approx(1)  # spends the budget in exactly 30 d
        assert burn_rate(name, None, 1000) == 0  # no 5xx datapoint: none happened
        assert burn_rate(name, None, 0) == 0  # no traffic burns nothing
        assert burn_rate(name, 2, 1000, target=99.0) == pytest.approx(0.2)
    for name in ("ApiAvailabilityBurn6hAlarm", "ApiAvailabilityBurn30mAlarm"):
        threshold = RESOURCES[name]["Properties"]["Threshold"]
        assert burn_rate(name, 7, 1000) > threshold
        assert burn_rate(name, 5, 1000) < threshold


# ---- the dashboard ---------------------------------------------------------------------------


def dashboard() -> dict[str, Any]:
    """DashboardBody with each ${...} filled as a marker naming what it substitutes."""
    body = sub_text(RESOURCES["Dashboard"]["Properties"]["DashboardBody"])
    names = set(RESOURCES) | set(PARAMETERS) | {"AWS::Region"}
    for reference in re.findall(r"\$\{([^}]+)\}", body):
        assert reference.split(".")[0] in names, f"${{{reference}}} names nothing"
    body = body.replace("${LatencyP99TargetMs}", "1000")
    filled = re.sub(r"\$\{([^}]+)\}", r"<\1>", body)
    parsed: dict[str, Any] = json.loads(filled)
    return parsed


def searches(widget: dict[str, Any]) -> list[tuple[str, set[str], str, str]]:
    """(namespace, dimensions, terms, statistic) of each SEARCH in a metric widget."""
    found = []
    for line in widget["properties"].get("metrics", []):
        for item in line:
            if isinstance(item, dict) and "SEARCH(" in item.get("expression", ""):
                match = re.search(r"SEARCH\('\{([^}]*)\}\s*(.*)', '([^']+)'", item["expression"])
                assert match, item["expression"]
                schema = [part.strip().strip('"') for part in match[1].split(",")]
                found.append((schema[0], set(schema[1:]), match[2], match[3]))
    return found


def plain_metrics(widget: dict[str, Any]) -> list[tuple[str, str, dict[str, str]]]:
    found = []
    for line in widget["properties"].get("metrics", []):
        if isinstance(line[0], str):
            values = [item for item in line if isinstance(item, str)]
            found.append((values[0], values[1], dict(zip(values[2::2], values[3::2], strict=True))))
    return found


def emitted(capsys: pytest.CaptureFixture[str]) -> dict[str, set[str]]:
    """What the app's EMF emitter writes for one request and one job: metric -> dimensions."""
    from aws_lambda_powertools import Metrics

    from api.jobs.observe import JobRun, Outcome
    from handlers.lambda_observability import EmfMetrics

    capsys.readouterr()
    emf = EmfMetrics(Metrics(namespace=NAMESPACE, service="lambdarun"))
    emf.request(route="/v1/users/{user_id}", method="GET", status=503, seconds=0.01)
    emf.record(JobRun(task="users.welcome", outcome=Outcome.DONE, seconds=0.2, lag=1.5))
    found = {}
    for line in capsys.readouterr().out.splitlines():
        document = json.loads(line)
        (directive,) = document["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == NAMESPACE
        (dimensions,) = directive["Dimensions"]
        for metric in directive["Metrics"]:
            assert metric["Unit"] == "Seconds"
            found[metric["Name"]] = set(dimensions)
            if metric["Name"] == "http.server.request.duration":
                assert document["http.response.status_code"] == "503"
    return found


def test_the_dashboard_reads_the_metric_contract_the_app_writes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert emitted(capsys) == CONTRACT
    widgets = dashboard()["widgets"]
    searched: dict[str, set[str]] = {}
    counters: set[str] = set()
    worker_source = (ROOT / "handlers" / "aws_worker.py").read_text()
    for widget in widgets:
        if widget["type"] != "metric":
            continue
        assert widget["properties"]["region"] == "<AWS::Region>"
        for namespace, name, dimensions in plain_metrics(widget):
            if namespace == NAMESPACE:
                assert name in WORKER_COUNTERS, name
                assert dimensions == {"service": "lambdarun"}
                assert f'name="{name}"' in worker_source, f"the worker writes no {name}"
                counters.add(name)
                continue
            key = (namespace, name)
            assert key in PUBLISHED, key
            assert set(dimensions) in PUBLISHED[key], (key, dimensions)
            for dimension, value in dimensions.items():
                assert value in RESOURCE_MARKERS[dimension], (key, dimension, value)
        for namespace, dimensions, terms, statistic in searches(widget):
            if namespace != NAMESPACE:
                assert (namespace, "ThrottledRequests") in PUBLISHED
                assert dimensions in PUBLISHED[(namespace, "ThrottledRequests")]
                continue
            metric = re.search(r'MetricName="([^"]+)"', terms)
            if metric is None:  # the worker's Jobs* counters, by their common token
                assert dimensions == {"service"}
                assert terms.strip() == "Jobs"
                assert 'f"Jobs{' in worker_source
                continue
            assert CONTRACT[metric[1]] == dimensions, metric[1]
            assert statistic in {"SampleCount", "p50", "p99"}
            searched.setdefault(metric[1], set()).add(statistic)
            if "OR" in terms:  # the 5xx panel: exact status codes, as the emitter writes them
                codes = set(re.findall(r'"(\d{3})"', terms))
                assert "503" in codes
                assert all(code.startswith("5") for code in codes)
    assert searched == {
        "http.server.request.duration": {"SampleCount", "p50", "p99"},
        "job.duration": {"SampleCount", "p99"},
        "job.queue_lag": {"p99"},
    }
    assert counters == WORKER_COUNTERS


def test_the_dashboards_lines_are_the_alarms_thresholds() -> None:
    lines = {}
    for widget in dashboard()["widgets"]:
        for line in widget["properties"].get("annotations", {}).get("horizontal", []):
            lines[(widget["properties"]["title"], line["label"])] = line["value"]
    worker = RESOURCES["WorkerFunction"]["Properties"]
    assert lines[("Worker duration, ms", "timeout")] == worker["Timeout"] * 1000
    assert (
        lines[("Worker duration, ms", "alarm (80% of timeout)")]
        == (RESOURCES["WorkerDurationAlarm"]["Properties"]["Threshold"])
    )
    assert (
        lines[("Jobs queue: depth and oldest message", "age alarm")]
        == (RESOURCES["JobsQueueAgeAlarm"]["Properties"]["Threshold"])
    )
    assert (
        lines[("API latency (gateway), ms", "objective (p99)")]
        == (
            PARAMETERS["LatencyP99TargetMs"]["Default"]  # dashboard() fills in the default
        )
    )


def test_the_dashboard_shows_every_alarm_that_notifies() -> None:
    (panel,) = [w for w in dashboard()["widgets"] if w["type"] == "alarm"]
    shown = set()
    for arn in panel["properties"]["alarms"]:
        match = re.fullmatch(r"<(\w+)\.Arn>", arn)
        assert match, arn
        shown.add(match[1])
    assert shown == set(alarms()) - set(windows())


def test_each_stage_writes_its_metrics_to_a_namespace_of_its_own() -> None:
    variables = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    assert sub_text(variables["POWERTOOLS_METRICS_NAMESPACE"]) == "lambdarun-${Stage}"
