"""`make deploy-check STAGE=...`: what a deploy would be missing, one line each, before it runs.

    python3 -m lambdarun_cli.deploy_check aws --config-env prod [--check-secrets]
    python3 -m lambdarun_cli.deploy_check gcp [--render DIR]

Standard library only (boto3 only for --check-secrets), so CI runs it before any install.

aws: samconfig.toml's environment must give every template parameter that has no default, the
issuer's three JWT values without a placeholder left in them, where prod's alarms go (AlarmEmail
or AlarmTopicArn, no placeholder), and `Stage` equal to the environment's name for dev and prod.
`--check-secrets` (with AWS credentials) looks up the SSM parameter the API reads its cursor
secret from: without it every invocation fails at init.
`--overrides --deploy-id ID` prints samconfig's whole parameter list plus `DeployId` (what CI
passes to `sam deploy`: a `--parameter-overrides` on the command line replaces the list).

gcp: every placeholder of cloudrun/service.yaml and worker.yaml needs an environment variable
of its name; `--render DIR` writes the two files with them filled in (what CI deploys), and
fails if a placeholder is still there. `--no-traffic-tag TAG --serving FILE` makes the rendered
service.yaml deploy a tagged revision that gets no traffic (CI smoke-tests it first).
`--telemetry otel` turns TELEMETRY=otel on in both and adds the OpenTelemetry collector sidecar
the app exports to (cloudrun/otel-collector.yaml, from Secret Manager; docs/observability.md).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shlex
import sys
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PLACEHOLDER = "REPLACE-ME"  # what samconfig.toml's example values hold until someone decides
JWT_PARAMETERS = ("JwtIssuer", "JwtAudience", "JwtJwksUrl")
ALARM_DESTINATIONS = ("AlarmEmail", "AlarmTopicArn")  # prod needs one (template.yaml's Rules)
NAMED_STAGES = ("dev", "prod")  # environments whose Stage must be their own name
# cloudrun/*.yaml placeholders, each filled from the environment variable of its name.
GCP_PLACEHOLDERS = (
    "PROJECT_ID",
    "REGION",
    "REDIS_HOST",
    "ISSUER_HOST",
    "API_AUDIENCE",
    "VPC_NETWORK",
    "VPC_SUBNET",
)
GCP_FILES = ("service.yaml", "worker.yaml")
# Google's build of the OpenTelemetry Collector (Cloud Trace, Cloud Monitoring exporters, GCP
# resource detection), pinned: a new collector is a reviewed change like any dependency.
COLLECTOR_IMAGE = (
    "us-docker.pkg.dev/cloud-ops-agents-artifacts/google-cloud-opentelemetry-collector/"
    "otelcol-google:0.160.0"
)
# Secret Manager holds cloudrun/otel-collector.yaml (nothing in it is secret): Cloud Run mounts
# files from secrets, so the config can change without a new image.
COLLECTOR_CONFIG_SECRET = "lambdarun-otel-collector-config"  # noqa: S105 - a secret's name


def parse_overrides(text: str) -> dict[str, str]:
    """samconfig's `parameter_overrides`: `Key="value" Key2=value2`, shell-quoted."""
    found = {}
    for token in shlex.split(text):
        name, separator, value = token.partition("=")
        if separator:
            found[name] = value
    return found


def template_parameters(template: Path) -> dict[str, dict[str, Any]]:
    """The template's Parameters section, read without a YAML library: each parameter's name
    and whether it has a Default (all a check needs)."""
    parameters: dict[str, dict[str, Any]] = {}
    inside, current = False, None
    for line in template.read_text().splitlines():
        if re.match(r"^\S", line):
            inside = line.startswith("Parameters:")
            continue
        if not inside:
            continue
        name = re.match(r"^  ([A-Za-z0-9]+):\s*$", line)
        if name:
            current = name[1]
            parameters[current] = {}
        elif current and re.match(r"^    Default:", line):
            parameters[current]["Default"] = line.split(":", 1)[1].strip()
    return parameters


def aws_problems(config_env: str, samconfig: Path, template: Path) -> list[str]:
    config = tomllib.loads(samconfig.read_text())
    deploy = config.get(config_env, {}).get("deploy", {}).get("parameters")
    if deploy is None:
        return [f"samconfig.toml: no [{config_env}.deploy.parameters]"]
    given = parse_overrides(deploy.get("parameter_overrides", ""))
    problems = []
    for name, spec in template_parameters(template).items():
        if name not in given and "Default" not in spec:
            problems.append(f"{config_env}: {name} is required and samconfig.toml does not set it")
    for name in JWT_PARAMETERS:
        value = given.get(name, "")
        if not value or PLACEHOLDER in value:
            problems.append(
                f"{config_env}: {name} is {value or 'empty'!r}: set your issuer's value in "
                "samconfig.toml (docs/auth.md)"
            )
    stage = given.get("Stage")
    for name in ALARM_DESTINATIONS:
        if PLACEHOLDER in given.get(name, ""):
            problems.append(
                f"{config_env}: {name} is {given[name]!r}: set where the alarms go in "
                "samconfig.toml (docs/monitoring.md)"
            )
    if stage == "prod" and not any(given.get(name) for name in ALARM_DESTINATIONS):
        problems.append(
            f"{config_env}: AlarmEmail or AlarmTopicArn is required: prod's alarms must reach "
            "someone (docs/monitoring.md)"
        )
    if config_env in NAMED_STAGES and stage != config_env:
        problems.append(f"{config_env}: Stage is {stage!r}, not {config_env!r}")
    return problems


def cursor_secret_problem(config_env: str, samconfig: Path) -> str | None:
    """The SSM parameter the API reads CURSOR_SECRET from, looked up with the caller's AWS
    credentials; a line saying what to create when it is not there."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    config = tomllib.loads(samconfig.read_text())
    given = parse_overrides(config[config_env]["deploy"]["parameters"]["parameter_overrides"])
    name = given.get("CursorSecretParameter") or f"/lambdarun/{given.get('Stage')}/cursor-secret"
    try:
        boto3.client("ssm").get_parameter(Name=name)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ParameterNotFound":
            return f"{config_env}: cannot read SSM parameter {name}: {exc}"
        return (
            f"{config_env}: SSM parameter {name} is missing: aws ssm put-parameter --name "
            f'{name} --type SecureString --value "$(openssl rand -hex 32)" (docs/secrets.md)'
        )
    except BotoCoreError as exc:
        return f"{config_env}: cannot reach SSM to look for {name}: {exc}"
    return None


def deploy_overrides(config_env: str, samconfig: Path, deploy_id: str) -> str:
    """samconfig's parameter list and `DeployId` (a hash of the commit and that list, so that
    a change of parameters alone still publishes a new version behind the `live` alias)."""
    config = tomllib.loads(samconfig.read_text())
    listed = config[config_env]["deploy"]["parameters"]["parameter_overrides"]
    given = parse_overrides(listed)
    digest = hashlib.sha256(f"{deploy_id}\n{sorted(given.items())}".encode()).hexdigest()
    given["DeployId"] = digest[:32]
    # As samconfig.toml writes them, which is what `sam deploy` parses: Key="value".
    quoted = (value.replace("\\", "\\\\").replace('"', '\\"') for value in given.values())
    return " ".join(f'{name}="{value}"' for name, value in zip(given, quoted, strict=True))


def gcp_problems(environ: Mapping[str, str], folder: Path) -> list[str]:
    texts = {name: (folder / name).read_text() for name in GCP_FILES}
    problems = []
    for placeholder in GCP_PLACEHOLDERS:
        where = [f"cloudrun/{n}" for n, t in texts.items() if re.search(rf"\b{placeholder}\b", t)]
        if where and not environ.get(placeholder):
            problems.append(f"gcp: {placeholder} is not set: it fills {', '.join(where)}")
    return problems


def subscription_flags(folder: Path, environ: Mapping[str, str]) -> str:
    """cloudrun/pubsub-subscription.json as the flags of `gcloud pubsub subscriptions update`:
    the dead-letter topic, the delivery attempts, the retry backoff and the ack deadline."""
    spec = json.loads((folder / "pubsub-subscription.json").read_text())
    topic = spec["deadLetterPolicy"]["deadLetterTopic"]
    topic = re.sub(r"\bPROJECT_ID\b", environ.get("PROJECT_ID", "PROJECT_ID"), topic)
    return " ".join(
        [
            f"--dead-letter-topic={topic}",
            f"--max-delivery-attempts={spec['deadLetterPolicy']['maxDeliveryAttempts']}",
            f"--min-retry-delay={spec['retryPolicy']['minimumBackoff']}",
            f"--max-retry-delay={spec['retryPolicy']['maximumBackoff']}",
            f"--ack-deadline={spec['ackDeadlineSeconds']}",
        ]
    )


def with_collector(text: str) -> str:
    """A service file whose app runs with TELEMETRY=otel and exports to an OpenTelemetry
    collector beside it: a second container on localhost:4318 that the app starts after (its
    health check answers first), its config mounted from Secret Manager."""
    service = re.search(r"^metadata:\n  name: (\S+)$", text, re.MULTILINE)
    app = re.search(r"^      containers:\n        - name: (\S+)\n", text, re.MULTILINE)
    annotations = "\nspec:\n  template:\n    metadata:\n      annotations:\n"
    env = re.search(r"^          env:\n", text, re.MULTILINE)  # the app's, the first container
    head, found, _ = text.partition("\n  traffic:\n")
    # The container list must end the template, so the sidecar and its volume go after it.
    last = [line for line in head.splitlines() if line.strip() and not line.startswith("#")][-1]
    if not (service and app and env and found and annotations in text):
        raise ValueError("expected metadata.name, template annotations, containers and traffic")
    if not last.startswith("            ") or re.search(r"^\s+- name: TELEMETRY$", text, re.M):
        raise ValueError("expected the containers last in the template and no TELEMETRY set")
    depends = json.dumps({app[1]: ["collector"]}, separators=(",", ":"))
    text = text.replace(
        annotations,
        f"{annotations}        run.googleapis.com/container-dependencies: '{depends}'\n",
    )
    settings = (
        "            - name: TELEMETRY\n"
        "              value: otel\n"
        "            - name: OTEL_SERVICE_NAME\n"
        f"              value: {service[1]}\n"
        "            - name: OTEL_EXPORTER_OTLP_ENDPOINT  # the collector container\n"
        "              value: http://localhost:4318\n"
    )
    at = text.index("\n          env:\n") + len("\n          env:\n")
    text = text[:at] + settings + text[at:]
    sidecar = f"""
        - name: collector
          image: {COLLECTOR_IMAGE}
          args: ["--config=/etc/otelcol-google/config.yaml"]
          resources:
            limits:
              cpu: "1"
              memory: 512Mi
          # The app waits for this (container-dependencies): no span is sent before it listens.
          startupProbe:
            httpGet:
              path: /
              port: 13133  # the collector's health_check extension
            periodSeconds: 1
            timeoutSeconds: 1
            failureThreshold: 30
          volumeMounts:
            - name: collector-config
              mountPath: /etc/otelcol-google
      volumes:
        - name: collector-config
          secret:
            secretName: {COLLECTOR_CONFIG_SECRET}
            items:
              - key: latest
                path: config.yaml"""
    head, found, tail = text.partition("\n  traffic:\n")  # again: the env lines moved it
    return f"{head.rstrip()}{sidecar}{found}{tail}"


def render(
    environ: Mapping[str, str], folder: Path, out: Path, tag: str | None, *, telemetry: bool = False
) -> list[str]:
    """Write the service files with every placeholder filled; problems if one is left."""
    problems = []
    out.mkdir(parents=True, exist_ok=True)
    for name in GCP_FILES:
        text = (folder / name).read_text()
        for placeholder in GCP_PLACEHOLDERS:
            if environ.get(placeholder):
                text = re.sub(rf"\b{placeholder}\b", environ[placeholder], text)
        if tag:
            text = re.sub(r":latest$", f":{tag}", text, flags=re.MULTILINE)
        if telemetry:
            text = with_collector(text)
        left = sorted({p for p in GCP_PLACEHOLDERS if re.search(rf"\b{p}\b", text)})
        problems += [f"gcp: cloudrun/{name} still holds {p}" for p in left]
        (out / name).write_text(text)
    return problems


# A Cloud Run revision tag: it prefixes the service's host name (TAG---SERVICE-...run.app).
REVISION_TAG = re.compile(r"[a-z][a-z0-9-]{0,28}[a-z0-9]")


def hold_traffic(text: str, services: Sequence[Mapping[str, Any]], tag: str) -> str:
    """A rendered service file whose new revision gets no traffic: it is named `SERVICE-TAG` and
    reached only through the tag's own URL, while the revisions serving now keep their shares
    (by name). `services` is `gcloud run services list --format=json`: empty before the first
    deploy, when there is nothing to keep and the new revision takes all the traffic."""
    if not REVISION_TAG.fullmatch(tag):
        raise ValueError(f"{tag!r} is not a revision tag (lower-case letters, digits, dashes)")
    name = re.search(r"^metadata:\n  name: (\S+)$", text, re.MULTILINE)
    head, found, block = text.partition("\n  traffic:\n")
    if not name or not found or any(not line.startswith("    ") for line in block.splitlines()):
        raise ValueError("expected metadata.name first and spec.traffic last in the service file")
    revision = f"{name[1]}-{tag}"
    head, found, rest = head.partition("\nspec:\n  template:\n    metadata:\n")
    if not found:
        raise ValueError("expected spec.template.metadata in the service file")
    shares: dict[str, int] = {}
    for service in services:
        if service.get("metadata", {}).get("name") == name[1]:
            for target in service.get("status", {}).get("traffic", []):
                if target.get("percent"):
                    serving = target["revisionName"]
                    shares[serving] = shares.get(serving, 0) + int(target["percent"])
    targets = [f"    - revisionName: {rev}\n      percent: {pc}\n" for rev, pc in shares.items()]
    targets.append(f"    - revisionName: {revision}\n      tag: {tag}\n")
    targets.append(f"      percent: {0 if shares else 100}\n")
    return f"{head}{found}      name: {revision}\n{rest}\n  traffic:\n" + "".join(targets)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deploy_check", description=__doc__.split("\n\n")[0])
    clouds = parser.add_subparsers(dest="cloud", required=True)
    aws = clouds.add_parser("aws", help="check samconfig.toml's environment for sam deploy")
    aws.add_argument("--config-env", required=True, help="samconfig.toml environment (STAGE)")
    aws.add_argument("--check-secrets", action="store_true", help="look up the SSM secret too")
    aws.add_argument("--overrides", action="store_true", help="print sam deploy's overrides")
    aws.add_argument("--deploy-id", default="", help="with --overrides: the commit deployed")
    gcp = clouds.add_parser("gcp", help="check the environment for cloudrun/*.yaml")
    gcp.add_argument("--render", metavar="DIR", help="write the filled-in service files there")
    gcp.add_argument("--tag", help="with --render: the image tag instead of latest")
    gcp.add_argument(
        "--no-traffic-tag",
        metavar="TAG",
        help="with --render and --serving: service.yaml deploys a revision tagged TAG that gets "
        "no traffic; the revisions serving now keep it",
    )
    gcp.add_argument(
        "--serving",
        metavar="FILE",
        help="`gcloud run services list --format=json`: which revisions serve now",
    )
    gcp.add_argument(
        "--telemetry",
        choices=("off", "otel"),
        default="off",
        help="with --render: otel sets TELEMETRY=otel and adds the OpenTelemetry collector "
        f"sidecar (its config from the secret {COLLECTOR_CONFIG_SECRET})",
    )
    gcp.add_argument(
        "--subscription-flags",
        action="store_true",
        help="print cloudrun/pubsub-subscription.json as gcloud pubsub subscriptions flags",
    )
    args = parser.parse_args(argv)

    if args.cloud == "aws":
        samconfig, template = ROOT / "samconfig.toml", ROOT / "template.yaml"
        problems = aws_problems(args.config_env, samconfig, template)
        if args.check_secrets and not problems:
            found = cursor_secret_problem(args.config_env, samconfig)
            problems += [found] if found else []
        if args.overrides and not problems:
            print(deploy_overrides(args.config_env, samconfig, args.deploy_id))
    else:
        from os import environ

        if args.subscription_flags:
            print(subscription_flags(ROOT / "cloudrun", environ))
            return 0
        if args.no_traffic_tag and not (args.render and args.serving):
            parser.error("--no-traffic-tag needs --render and --serving")
        problems = gcp_problems(environ, ROOT / "cloudrun")
        if args.render and not problems:
            problems = render(
                environ,
                ROOT / "cloudrun",
                Path(args.render),
                args.tag,
                telemetry=args.telemetry == "otel",
            )
        if args.no_traffic_tag and not problems:
            # The API only: the worker serves Eventarc's pushes, which reach whatever revision
            # has the traffic, and its ingress is internal, so nothing could test a tagged one.
            rendered = Path(args.render) / "service.yaml"
            services = json.loads(Path(args.serving).read_text() or "[]")
            try:
                text = hold_traffic(rendered.read_text(), services, args.no_traffic_tag)
                rendered.write_text(text)
            except ValueError as exc:
                problems = [f"gcp: --no-traffic-tag: {exc}"]
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
