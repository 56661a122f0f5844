"""`lambdarun local up`: the template's DynamoDB tables and SQS queues, created on a local AWS
endpoint (moto in server mode, LocalStack) with the properties the template gives them, and the
state file that `local invoke` and `local start-worker` resolve references with."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, cast

from lambdarun_cli.local_template import (
    DEFAULT_ACCOUNT,
    DEFAULT_REGION,
    QUEUE,
    TABLE,
    Template,
    TemplateError,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_sqs import SQSClient

STATE_FILE = Path(".lambdarun") / "local-aws.json"
STACK_KEY = "Stack"  # the state's own section; the other top-level keys are SAM --env-vars
# SQS attributes CloudFormation passes through as they are (booleans and numbers as strings).
_QUEUE_ATTRIBUTES = (
    "DelaySeconds",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "VisibilityTimeout",
    "FifoQueue",
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "FifoThroughputLimit",
    "KmsMasterKeyId",
    "KmsDataKeyReusePeriodSeconds",
    "SqsManagedSseEnabled",
)
_INDEX_KEYS = ("IndexName", "KeySchema", "Projection", "ProvisionedThroughput")


class LocalError(Exception):
    """A local command cannot go on; the message says why and what to do."""


def aws_client(service: str, *, endpoint: str | None, region: str | None = None) -> Any:
    """A botocore client; credentials and region come from the usual SDK configuration, and
    `AWS_ENDPOINT_URL_<SERVICE>` overrides the endpoint for one service, as in the SDKs."""
    import botocore.session
    from botocore.config import Config

    session = botocore.session.get_session()
    region = (
        region
        or session.get_config_variable("region")
        or os.environ.get("AWS_REGION")
        or DEFAULT_REGION
    )
    # Reads outlast a 20-second long poll.
    config = Config(connect_timeout=5, read_timeout=30, retries={"mode": "standard"})
    endpoint = os.environ.get(f"AWS_ENDPOINT_URL_{service.upper()}") or endpoint
    return session.create_client(service, region_name=region, endpoint_url=endpoint, config=config)


@dataclass(slots=True)
class LocalState:
    """What `local up` made: physical ids and attributes of each table and queue."""

    stack_name: str
    endpoint: str
    region: str = DEFAULT_REGION
    account: str = DEFAULT_ACCOUNT
    resources: dict[str, dict[str, str]] = field(default_factory=dict)
    parameters: dict[str, str] = field(default_factory=dict)  # the overrides `local up` had

    def lookup(self, logical_id: str, attribute: str | None) -> str:
        record = self.resources.get(logical_id)
        if record is None:
            raise LocalError(
                f"{logical_id} is not in the local stack {self.stack_name}: "
                "run `lambdarun local up` again"
            )
        key = attribute or "Ref"
        if key not in record:
            raise TemplateError(f"{logical_id} has no attribute {key} locally")
        return record[key]

    def write(self, path: Path, functions: dict[str, dict[str, str]]) -> None:
        stack = {
            "StackName": self.stack_name,
            "Endpoint": self.endpoint,
            "Region": self.region,
            "Account": self.account,
            "Parameters": self.parameters,
            "Resources": self.resources,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**functions, STACK_KEY: stack}, indent=2) + "\n")

    @classmethod
    def read(cls, path: Path) -> LocalState | None:
        try:
            data = json.loads(path.read_text())
            stack = data[STACK_KEY]
            return cls(
                stack_name=stack["StackName"],
                endpoint=stack["Endpoint"],
                region=stack["Region"],
                account=stack["Account"],
                resources=stack["Resources"],
                parameters=stack.get("Parameters", {}),
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise LocalError(f"{path}: not a state file of `lambdarun local up` ({exc})") from exc


class StackBuilder:
    """Creates (or brings up to date) each table and queue once, dependencies first."""

    def __init__(self, template: Template, state: LocalState, out: TextIO) -> None:
        self.template = template
        self.state = state
        self.out = out
        self._busy: set[str] = set()
        self.sqs = cast("SQSClient", aws_client("sqs", endpoint=state.endpoint))
        self.dynamodb = cast("DynamoDBClient", aws_client("dynamodb", endpoint=state.endpoint))
        state.region = self.sqs.meta.region_name
        template.region = state.region
        template.lookup = self.lookup

    def lookup(self, logical_id: str, attribute: str | None) -> str:
        self.ensure(logical_id)
        return self.state.lookup(logical_id, attribute)

    def ensure(self, logical_id: str) -> None:
        if logical_id in self.state.resources:
            return
        if logical_id in self._busy:
            raise TemplateError(f"{logical_id} refers to itself through other resources")
        self._busy.add(logical_id)
        resource = self.template.resources[logical_id]
        props = self.template.resolve(resource.get("Properties") or {})
        if resource["Type"] == QUEUE:
            record = self._queue(logical_id, props)
        else:
            record = self._table(logical_id, props)
        self.state.resources[logical_id] = record
        self._busy.discard(logical_id)

    def _report(self, verb: str, kind: str, logical_id: str, name: str) -> None:
        print(f"  {verb:<9} {kind:<22} {logical_id:<24} {name}", file=self.out)

    def _queue(self, logical_id: str, props: dict[str, Any]) -> dict[str, str]:
        fifo = str(props.get("FifoQueue", "false")).lower() == "true"
        name = props.get("QueueName") or f"{self.template.stack_name}-{logical_id}"
        name += ".fifo" if fifo and not name.endswith(".fifo") else ""
        attributes = {k: _text(props[k]) for k in _QUEUE_ATTRIBUTES if k in props}
        for policy in ("RedrivePolicy", "RedriveAllowPolicy"):
            if policy in props:
                attributes[policy] = json.dumps(_numbers(props[policy]))
        from botocore.exceptions import ClientError

        try:
            url = self.sqs.get_queue_url(QueueName=name)["QueueUrl"]
        except ClientError as exc:
            if "NonExistentQueue" not in str(exc.response.get("Error", {}).get("Code")):
                raise
            url = self.sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]  # type: ignore[arg-type]
            verb = "created"
        else:
            current = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
            now: dict[str, str] = {str(k): v for k, v in current["Attributes"].items()}
            changed = {
                k: v
                for k, v in attributes.items()
                if k != "FifoQueue" and not _same(k, now.get(k), v)
            }
            if changed:
                self.sqs.set_queue_attributes(QueueUrl=url, Attributes=changed)  # type: ignore[arg-type]
            verb = "updated" if changed else "exists"
        arn = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        queue_arn = arn["Attributes"]["QueueArn"]
        self.state.account = queue_arn.split(":")[4]
        self._report(verb, QUEUE, logical_id, name)
        return {"Type": QUEUE, "Ref": url, "Arn": queue_arn, "QueueName": name, "QueueUrl": url}

    def _table(self, logical_id: str, props: dict[str, Any]) -> dict[str, str]:
        name = props.get("TableName") or f"{self.template.stack_name}-{logical_id}"
        db = self.dynamodb
        try:
            table = db.describe_table(TableName=name)["Table"]
            verb = "exists"
        except db.exceptions.ResourceNotFoundException:
            db.create_table(**_create_table_request(name, props))
            db.get_waiter("table_exists").wait(
                TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
            )
            table = db.describe_table(TableName=name)["Table"]
            verb = "created"
        ttl = props.get("TimeToLiveSpecification")
        if ttl:
            wanted = str(ttl.get("Enabled", False)).lower() == "true"
            now = db.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
            enabled = now.get("TimeToLiveStatus") in ("ENABLED", "ENABLING")
            if enabled != wanted or (wanted and now.get("AttributeName") != ttl["AttributeName"]):
                db.update_time_to_live(
                    TableName=name,
                    TimeToLiveSpecification={
                        "Enabled": wanted,
                        "AttributeName": ttl["AttributeName"],
                    },
                )
                verb = "updated" if verb == "exists" else verb
        pitr = props.get("PointInTimeRecoverySpecification") or {}
        if str(pitr.get("PointInTimeRecoveryEnabled", False)).lower() == "true":
            db.update_continuous_backups(
                TableName=name,
                PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
            )
        self.state.account = table["TableArn"].split(":")[4]
        self._report(verb, TABLE, logical_id, name)
        record = {"Type": TABLE, "Ref": name, "Arn": table["TableArn"]}
        if table.get("LatestStreamArn"):
            record["StreamArn"] = table["LatestStreamArn"]
        return record


def _same(name: str, current: str | None, wanted: str) -> bool:
    if current is None or not name.endswith("Policy"):
        return current == wanted
    try:
        return bool(json.loads(current) == json.loads(wanted))
    except ValueError:
        return False


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _numbers(policy: Any) -> Any:
    # Ref on a Number parameter gives a string; SQS wants maxReceiveCount as a number.
    if isinstance(policy, dict):
        return {k: int(v) if k == "maxReceiveCount" else v for k, v in policy.items()}
    return json.loads(policy) if isinstance(policy, str) else policy


def _create_table_request(name: str, props: dict[str, Any]) -> dict[str, Any]:
    """CreateTable arguments from an AWS::DynamoDB::Table's properties."""
    billing = props.get("BillingMode", "PROVISIONED")
    request: dict[str, Any] = {
        "TableName": name,
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "BillingMode": billing,
    }
    if billing == "PROVISIONED":
        request["ProvisionedThroughput"] = {
            k: int(v) for k, v in props.get("ProvisionedThroughput", {}).items()
        }
    for kind in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        if props.get(kind):
            request[kind] = [
                {k: v for k, v in index.items() if k in _INDEX_KEYS} for index in props[kind]
            ]
    stream = props.get("StreamSpecification")
    if stream:
        request["StreamSpecification"] = {
            "StreamEnabled": True,
            "StreamViewType": stream["StreamViewType"],
        }
    sse = props.get("SSESpecification")
    if sse:
        request["SSESpecification"] = {
            k: v
            for k, v in {
                "Enabled": str(sse.get("SSEEnabled", False)).lower() == "true",
                "SSEType": sse.get("SSEType"),
                "KMSMasterKeyId": sse.get("KMSMasterKeyId"),
            }.items()
            if v is not None
        }
    if "DeletionProtectionEnabled" in props:
        request["DeletionProtectionEnabled"] = (
            str(props["DeletionProtectionEnabled"]).lower() == "true"
        )
    if props.get("TableClass"):
        request["TableClass"] = props["TableClass"]
    if props.get("Tags"):
        request["Tags"] = props["Tags"]
    return request


def resource_variables(template: Template, state: LocalState) -> dict[str, dict[str, str]]:
    """Per function, the environment variables whose values name a local table or queue: the
    part of the state file that `sam local invoke --env-vars` can read too."""
    touched: list[str] = []

    def recording(logical_id: str, attribute: str | None) -> str:
        touched.append(logical_id)
        return state.lookup(logical_id, attribute)

    template.lookup = recording
    found: dict[str, dict[str, str]] = {}
    for function_id in template.function_ids():
        props = template.function_properties(function_id)
        variables = (props.get("Environment") or {}).get("Variables") or {}
        for name, raw in variables.items():
            touched.clear()
            try:
                value = template.resolve(raw)
            except TemplateError:
                continue
            if touched:
                found.setdefault(function_id, {})[name] = str(value)
    return found


def development_secrets(template: Template, endpoint: str, out: TextIO) -> None:
    """The secrets the functions read at init (`X_PARAMETER`: an SSM SecureString,
    `X_SECRET_ID`: a Secrets Manager secret; handlers/lambda_secrets.py), created with a random
    development value where missing. They live outside the template in AWS; an existing one is
    never overwritten."""
    import secrets

    from botocore.exceptions import ClientError

    from handlers.lambda_secrets import references

    wanted: dict[tuple[str, str], str] = {}
    for function_id in template.function_ids():
        for reference in references(template.function(function_id).environment):
            if reference.name:
                wanted.setdefault((reference.source, reference.name), reference.variable)
    for (source, name), variable in sorted(wanted.items()):
        value = secrets.token_urlsafe(32)
        try:
            if source == "ssm":
                kind = "AWS::SSM::Parameter"
                aws_client("ssm", endpoint=endpoint).put_parameter(
                    Name=name, Value=value, Type="SecureString", Overwrite=False
                )
            else:
                kind = "AWS::SecretsManager"
                aws_client("secretsmanager", endpoint=endpoint).create_secret(
                    Name=name, SecretString=value
                )
            verb = "created"
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code"))
            if code not in ("ParameterAlreadyExists", "ResourceExistsException"):
                raise
            verb = "exists"
        print(f"  {verb:<9} {kind:<22} {variable:<24} {name}", file=out)


def up(
    template: Template, *, endpoint: str, state_path: Path, out: TextIO = sys.stdout
) -> LocalState:
    """Create every table and queue the template declares (skipping resources whose Condition
    is false) and write the state file."""
    from botocore.exceptions import BotoCoreError, ClientError

    state = LocalState(
        stack_name=template.stack_name, endpoint=endpoint, parameters=template.overrides
    )
    print(f"lambdarun local up: stack {state.stack_name} on {endpoint}", file=out)
    try:
        builder = StackBuilder(template, state, out)
        for logical_id, resource in template.resources.items():
            if resource.get("Type") not in (QUEUE, TABLE):
                continue
            condition = resource.get("Condition")
            if condition is None or template.condition(condition):
                builder.ensure(logical_id)
    except (BotoCoreError, ClientError) as exc:
        raise LocalError(f"{endpoint}: {exc}") from exc
    template.account = state.account
    functions = resource_variables(template, state)
    template.lookup = state.lookup
    try:
        development_secrets(template, endpoint, out)
    except (BotoCoreError, ClientError) as exc:
        raise LocalError(f"{endpoint}: {exc}") from exc
    state.write(state_path, functions)
    print(f"  wrote     {state_path} (SAM --env-vars format, plus the stack)", file=out)
    return state


def command(args: Any) -> int:
    """`lambdarun local up`."""
    from lambdarun_cli.local_template import parse_parameter_overrides, samconfig_stack_name

    endpoint = args.endpoint_url or os.environ.get("AWS_ENDPOINT_URL")
    if not endpoint:
        print(
            "lambdarun local up: no endpoint: set AWS_ENDPOINT_URL (or pass --endpoint-url) to "
            "a local AWS (moto server, LocalStack); `sam deploy` is the way to AWS itself",
            file=sys.stderr,
        )
        return 2
    try:
        path = Path(args.template_file)
        name = args.stack_name or samconfig_stack_name(path.resolve().parent, args.config_env)
        template = Template(
            path,
            stack_name=name or "lambdarun",
            overrides=parse_parameter_overrides(args.parameter_overrides or []),
        )
        up(template, endpoint=endpoint, state_path=Path(args.state))
    except (LocalError, TemplateError) as exc:
        print(f"lambdarun local up: {exc}", file=sys.stderr)
        return 1 if isinstance(exc, LocalError) else 2
    return 0
