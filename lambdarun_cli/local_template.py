"""template.yaml read as SAM and CloudFormation read it, for running its functions locally:
parameters (defaults and overrides), conditions, Globals merged into each function, and the
intrinsic functions (!Ref, !GetAtt, !Sub, ...) resolved against local resources."""

from __future__ import annotations

import re
import shlex
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SERVERLESS_FUNCTION = "AWS::Serverless::Function"
QUEUE = "AWS::SQS::Queue"
TABLE = "AWS::DynamoDB::Table"
DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT = "123456789012"  # what moto and LocalStack answer with

# Fn::Sub placeholders: ${Name}, ${Resource.Attribute}; ${!Literal} stays as ${Literal}.
_SUB = re.compile(r"\$\{([^}]*)\}")
# What a `Ref` to a resource or an attribute looks up: (logical id, attribute or None for Ref).
Lookup = Callable[[str, str | None], str]


class TemplateError(Exception):
    """The template, a parameter or a reference cannot be used locally; the message says which."""


class Unresolved(TemplateError):
    """A reference names a resource that exists only in the cloud (an API, say), not locally."""


class _NoValue:
    """AWS::NoValue: the property it is the value of is left out."""


NO_VALUE = _NoValue()


def load_yaml(path: Path) -> dict[str, Any]:
    """The template with CloudFormation's short tags (!Ref, !Sub ...) in their long form."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
        name = suffix if suffix in ("Ref", "Condition") else f"Fn::{suffix}"
        value: Any
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
            if suffix == "GetAtt":
                value = str(value).split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
        return {name: value}

    Loader.add_multi_constructor("!", tag)
    try:
        data = yaml.load(path.read_text(), Loader=Loader)  # noqa: S506 - a SafeLoader subclass
    except OSError as exc:
        raise TemplateError(f"cannot read the template: {exc}") from exc
    except yaml.YAMLError as exc:
        raise TemplateError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("Resources"), dict):
        raise TemplateError(f"{path}: not a CloudFormation template (no Resources)")
    return data


def parse_parameter_overrides(tokens: Iterable[str]) -> dict[str, str]:
    """SAM's --parameter-overrides: `Key=Value` or `ParameterKey=K,ParameterValue=V`, several per
    argument separated by spaces, values optionally quoted."""
    found: dict[str, str] = {}
    for token in (part for argument in tokens for part in shlex.split(argument)):
        long_form = re.fullmatch(r"ParameterKey=([^,]+),ParameterValue=(.*)", token)
        if long_form:
            found[long_form[1]] = long_form[2]
        elif "=" in token and not token.startswith("="):
            key, value = token.split("=", 1)
            found[key] = value
        else:
            raise TemplateError(f"--parameter-overrides: expected Key=Value, got {token!r}")
    return found


def samconfig_stack_name(root: Path, config_env: str = "default") -> str | None:
    """stack_name from samconfig.toml's [<env>.global.parameters] (or its deploy section)."""
    path = root / "samconfig.toml"
    if not path.exists():
        return None
    try:
        config = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise TemplateError(f"{path}: {exc}") from exc
    env = config.get(config_env, {})
    for command in ("global", "deploy"):
        name = env.get(command, {}).get("parameters", {}).get("stack_name")
        if isinstance(name, str):
            return name
    return None


def merge_globals(global_props: Mapping[str, Any], props: Mapping[str, Any]) -> dict[str, Any]:
    """SAM's Globals rule: maps merge, lists add up (globals first), the function's scalars win."""
    merged: dict[str, Any] = dict(global_props)
    for key, value in props.items():
        current = merged.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            merged[key] = merge_globals(current, value)
        elif isinstance(current, list) and isinstance(value, list):
            merged[key] = current + value
        else:
            merged[key] = value
    return merged


@dataclass(frozen=True, slots=True)
class SqsEvent:
    """A function's SQS event: what its event source mapping polls and how."""

    name: str
    queue_arn: str
    batch_size: int
    batching_window: int
    report_failures: bool
    enabled: bool
    max_concurrency: int | None
    filtered: bool = False  # FilterCriteria, which `local start-worker` does not apply


@dataclass(frozen=True, slots=True)
class Function:
    logical_id: str
    name: str  # the physical name Lambda would know it by
    handler: str
    code_dir: Path
    runtime: str
    architectures: tuple[str, ...]
    memory: int
    timeout: int
    log_group: str
    environment: dict[str, str]
    declared: frozenset[str]  # variable names the template declares (SAM overrides only these)
    unresolved: tuple[str, ...] = ()  # variables whose references had no local value
    sqs_events: tuple[SqsEvent, ...] = field(default=())


class Template:
    """One template with one set of parameter values. `lookup` answers Ref and Fn::GetAtt on
    tables and queues (the local stack's state, or `local up` creating them on first use)."""

    def __init__(
        self,
        path: Path,
        *,
        stack_name: str,
        overrides: Mapping[str, str] | None = None,
        region: str = DEFAULT_REGION,
        account: str = DEFAULT_ACCOUNT,
        lookup: Lookup | None = None,
    ) -> None:
        self.path = path
        self.root = path.resolve().parent
        self.data = load_yaml(path)
        self.resources: dict[str, dict[str, Any]] = self.data["Resources"]
        self.stack_name = stack_name
        self.region = region
        self.account = account
        self.lookup = lookup
        self.overrides = dict(overrides or {})
        self.parameters = self._parameters(self.overrides)
        self._conditions: dict[str, bool] = {}

    # ------------------------------------------------------------------ parameters ----
    def _parameters(self, overrides: Mapping[str, str]) -> dict[str, Any]:
        declared: dict[str, dict[str, Any]] = self.data.get("Parameters") or {}
        unknown = sorted(set(overrides) - set(declared))
        if unknown:
            raise TemplateError(
                f"--parameter-overrides: {', '.join(unknown)} not among the template's "
                f"parameters ({', '.join(declared)})"
            )
        values: dict[str, Any] = {}
        for name, spec in declared.items():
            if name in overrides:
                value = overrides[name]
            elif "Default" in spec:
                value = str(spec["Default"])
            else:
                raise TemplateError(f"parameter {name} has no default: pass --parameter-overrides")
            values[name] = _check_parameter(name, spec, value)
        return values

    def types(self, type_name: str) -> list[str]:
        return [rid for rid, r in self.resources.items() if r.get("Type") == type_name]

    # ----------------------------------------------------------------- resolution ----
    def resolve(self, value: Any) -> Any:
        """`value` with every intrinsic function evaluated; AWS::NoValue entries dropped."""
        if isinstance(value, list):
            items = [self.resolve(item) for item in value]
            return [item for item in items if item is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, argument),) = value.items()
            if key == "Ref":
                return self.ref(argument)
            if key.startswith("Fn::") or (key == "Condition" and isinstance(argument, str)):
                return self._function(key, argument)
        resolved = {k: self.resolve(v) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not NO_VALUE}

    def ref(self, name: str) -> Any:
        pseudo = {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account,
            "AWS::StackName": self.stack_name,
            "AWS::StackId": f"arn:aws:cloudformation:{self.region}:{self.account}:stack/"
            f"{self.stack_name}/local",
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NotificationARNs": [],
        }
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        return self.attribute(name, None)

    def attribute(self, logical_id: str, attribute: str | None) -> str:
        resource = self.resources.get(logical_id)
        if resource is None:
            raise TemplateError(f"the template has no parameter or resource {logical_id!r}")
        kind = resource.get("Type")
        what = f"{logical_id}.{attribute}" if attribute else logical_id
        if kind in (QUEUE, TABLE):
            if self.lookup is None:
                raise Unresolved(f"{what}: no local stack (run `lambdarun local up`)")
            return self.lookup(logical_id, attribute)
        if kind == SERVERLESS_FUNCTION and attribute in (None, "Arn"):
            name = self.resolve(resource.get("Properties", {}).get("FunctionName"))
            name = name or f"{self.stack_name}-{logical_id}"
            arn = f"arn:aws:lambda:{self.region}:{self.account}:function:{name}"
            return str(name) if attribute is None else arn
        if kind == "AWS::Logs::LogGroup" and attribute in (None, "Arn"):
            name = self.resolve(resource.get("Properties", {}).get("LogGroupName"))
            name = name or f"{self.stack_name}-{logical_id}"
            arn = f"arn:aws:logs:{self.region}:{self.account}:log-group:{name}:*"
            return str(name) if attribute is None else arn
        raise Unresolved(f"{what}: a {kind} exists only in the cloud, not locally")

    def _function(self, key: str, argument: Any) -> Any:
        if key in ("Fn::Equals", "Fn::Not", "Fn::And", "Fn::Or", "Condition"):
            return self._boolean(key, argument)
        evaluate = {
            "Fn::GetAtt": self._get_att,
            "Fn::Sub": self._sub,
            "Fn::If": self._if,
            "Fn::Join": self._join,
            "Fn::Select": self._select,
            "Fn::Split": self._split,
            "Fn::FindInMap": self._find_in_map,
            "Fn::Base64": self._base64,
        }.get(key)
        if evaluate is None:
            raise TemplateError(f"{key} is not supported locally")
        return evaluate(argument)

    def _get_att(self, argument: Any) -> str:
        logical_id, attribute = argument
        return self.attribute(str(logical_id), str(self.resolve(attribute)))

    def _if(self, argument: Any) -> Any:
        condition, when_true, when_false = argument
        return self.resolve(when_true if self.condition(condition) else when_false)

    def _join(self, argument: Any) -> str:
        delimiter, items = argument
        return str(delimiter).join(str(item) for item in self.resolve(items))

    def _select(self, argument: Any) -> Any:
        index, items = argument
        return self.resolve(items)[int(self.resolve(index))]

    def _split(self, argument: Any) -> list[str]:
        delimiter, text = argument
        return str(self.resolve(text)).split(str(delimiter))

    def _find_in_map(self, argument: Any) -> Any:
        mapping, first, second = (self.resolve(part) for part in argument)
        try:
            return self.data["Mappings"][mapping][first][second]
        except (KeyError, TypeError) as exc:
            raise TemplateError(f"Fn::FindInMap: no {mapping}.{first}.{second}") from exc

    def _base64(self, argument: Any) -> str:
        import base64

        return base64.b64encode(str(self.resolve(argument)).encode()).decode()

    def _sub(self, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument
        values = {name: self.resolve(value) for name, value in variables.items()}

        def one(match: re.Match[str]) -> str:
            name = match[1]
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in values:
                return str(values[name])
            if "." in name and not name.startswith("AWS::"):
                logical_id, attribute = name.split(".", 1)
                return self.attribute(logical_id, attribute)
            return str(self.ref(name))

        return _SUB.sub(one, text)

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            conditions = self.data.get("Conditions") or {}
            if name not in conditions:
                raise TemplateError(f"the template has no condition {name!r}")
            self._conditions[name] = bool(self.resolve(conditions[name]))
        return self._conditions[name]

    def _boolean(self, key: str, argument: Any) -> bool:
        if key == "Condition":
            return self.condition(argument)
        if key == "Fn::Equals":
            left, right = (self.resolve(part) for part in argument)
            return str(left) == str(right)
        results = [
            self.condition(item["Condition"])
            if isinstance(item, dict) and set(item) == {"Condition"}
            else bool(self.resolve(item))
            for item in argument
        ]
        if key == "Fn::Not":
            return not results[0]
        return all(results) if key == "Fn::And" else any(results)

    # ------------------------------------------------------------------ functions ----
    def function_ids(self) -> list[str]:
        return self.types(SERVERLESS_FUNCTION)

    def function_properties(self, logical_id: str) -> dict[str, Any]:
        """The function's properties with Globals merged in, references not yet resolved."""
        resource = self.resources[logical_id]
        globals_ = (self.data.get("Globals") or {}).get("Function") or {}
        return merge_globals(globals_, resource.get("Properties") or {})

    def function(self, logical_id: str) -> Function:
        """The function as Lambda would run it: Globals merged, references resolved; a variable
        whose reference has no local value is "" (as in `sam local invoke`) and listed."""
        resource = self.resources.get(logical_id)
        if resource is None or resource.get("Type") != SERVERLESS_FUNCTION:
            known = ", ".join(self.function_ids()) or "none"
            raise TemplateError(f"no function {logical_id!r} in {self.path} (functions: {known})")
        props = self.function_properties(logical_id)
        variables = (props.get("Environment") or {}).get("Variables") or {}
        environment: dict[str, str] = {}
        unresolved: list[str] = []
        for name, raw in variables.items():
            try:
                value = self.resolve(raw)
                if value is NO_VALUE:  # CloudFormation drops the variable
                    continue
                environment[name] = _stringify(value)
            except Unresolved:
                environment[name] = ""
                unresolved.append(name)
        code = self.resolve(props.get("CodeUri", "."))
        if not isinstance(code, str) or code.startswith("s3://"):
            raise TemplateError(f"{logical_id}: CodeUri must be a local directory, got {code!r}")
        logging = self.resolve(props.get("LoggingConfig") or {})
        name = self.attribute(logical_id, None)
        return Function(
            logical_id=logical_id,
            name=name,
            handler=str(self.resolve(props.get("Handler", ""))),
            code_dir=(self.root / code).resolve(),
            runtime=str(self.resolve(props.get("Runtime", ""))),
            architectures=tuple(self.resolve(props.get("Architectures") or ["x86_64"])),
            memory=int(self.resolve(props.get("MemorySize", 128))),
            timeout=int(self.resolve(props.get("Timeout", 3))),
            log_group=str(logging.get("LogGroup") or f"/aws/lambda/{name}"),
            environment=environment,
            declared=frozenset(variables),
            unresolved=tuple(unresolved),
            sqs_events=tuple(self._sqs_events(props.get("Events") or {})),
        )

    def _sqs_events(self, events: Mapping[str, Any]) -> Iterable[SqsEvent]:
        for name, event in events.items():
            if event.get("Type") != "SQS":
                continue
            props = event.get("Properties") or {}
            scaling = self.resolve(props.get("ScalingConfig") or {})
            try:
                queue_arn = str(self.resolve(props["Queue"]))
            except Unresolved:
                queue_arn = ""  # no local stack: `local start-worker` says so when it needs it
            yield SqsEvent(
                name=name,
                queue_arn=queue_arn,
                batch_size=int(self.resolve(props.get("BatchSize", 10))),
                batching_window=int(self.resolve(props.get("MaximumBatchingWindowInSeconds", 0))),
                report_failures="ReportBatchItemFailures"
                in self.resolve(props.get("FunctionResponseTypes") or []),
                enabled=str(self.resolve(props.get("Enabled", True))).lower() != "false",
                max_concurrency=int(scaling["MaximumConcurrency"])
                if "MaximumConcurrency" in scaling
                else None,
                filtered="FilterCriteria" in props,
            )


def _check_parameter(name: str, spec: Mapping[str, Any], value: str) -> Any:
    kind = str(spec.get("Type", "String"))
    allowed = spec.get("AllowedValues")
    if allowed is not None and value not in [str(a) for a in allowed]:
        raise TemplateError(f"parameter {name}={value!r}: allowed values are {allowed}")
    pattern = spec.get("AllowedPattern")
    if pattern is not None and not re.fullmatch(str(pattern), value):
        raise TemplateError(f"parameter {name}={value!r} does not match {pattern}")
    if kind == "Number":
        try:
            number = float(value)
        except ValueError:
            raise TemplateError(f"parameter {name}={value!r} is not a number") from None
        low, high = spec.get("MinValue"), spec.get("MaxValue")
        if (low is not None and number < float(low)) or (high is not None and number > float(high)):
            raise TemplateError(f"parameter {name}={value!r} is outside [{low}, {high}]")
    if kind == "CommaDelimitedList" or kind.startswith("List<"):
        return [item.strip() for item in value.split(",")]
    return value


def _stringify(value: Any) -> str:
    # Lambda environment values are strings; booleans as CloudFormation writes them.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        raise TemplateError(f"an environment variable cannot hold {value!r}")
    return str(value)
