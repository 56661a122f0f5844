"""`lambdarun`: the local development server and project tooling."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from api.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
SOURCE_DIRS = ("api", "adapters", "handlers")


def _default_port() -> int:
    port = os.environ.get("PORT", "8000")
    if not port.isdigit():
        print(f"lambdarun: invalid settings: PORT: {port!r} is not a port number", file=sys.stderr)
        sys.exit(2)
    return int(port)


POSTGRES_SCHEMES = ("postgresql", "postgres")


def _settings(command: str, *, serving: bool = False) -> Settings | None:
    """The settings (for `serving`, checked as the app checks them at start-up); None, and one
    line naming the variable on stderr, when they are refused."""
    from api.settings import SettingsError, check_startup, load_settings

    try:
        settings = load_settings()
        if serving:
            check_startup(settings)
    except SettingsError as exc:
        print(f"lambdarun {command}: {exc}", file=sys.stderr)
        return None
    return settings


def _upgrade(database_url: str, command: str) -> int:
    """Apply pending Postgres migrations; other stores need none."""
    import asyncio

    from adapters.bootstrap import scheme_of

    if scheme_of(database_url) not in POSTGRES_SCHEMES:
        print(
            f"lambdarun {command}: {scheme_of(database_url)} creates its schema itself; "
            "nothing to upgrade",
            file=sys.stderr,
        )
        return 0
    from adapters.errors import AdapterError
    from adapters.postgres_migrate import upgrade

    try:
        applied = asyncio.run(upgrade(database_url))
    except AdapterError as exc:
        print(f"lambdarun {command}: {exc}", file=sys.stderr)
        return 1
    print(
        f"lambdarun {command}: applied {', '.join(applied)}"
        if applied
        else f"lambdarun {command}: schema is up to date",
        file=sys.stderr,
    )
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    settings = _settings("db upgrade")
    if settings is None:
        return 2
    return _upgrade(settings.database_url, "db upgrade")


def cmd_dev(args: argparse.Namespace) -> int:
    import uvicorn

    from adapters.bootstrap import scheme_of

    # Fail here, with the setting named, not in a reload worker.
    settings = _settings("dev", serving=True)
    if settings is None:
        return 2
    if scheme_of(settings.database_url) in POSTGRES_SCHEMES:
        status = _upgrade(settings.database_url, "dev")
        if status:
            return status
    from adapters.bootstrap import redacted

    print(
        f"lambdarun dev: http://{args.host}:{args.port} (docs at /docs)\n"
        f"  DATABASE_URL={redacted(settings.database_url)}  QUEUE_URL={settings.queue_url}"
        f"  CACHE_URL={redacted(settings.cache_url)}",
        file=sys.stderr,
    )
    if settings.telemetry == "otel" and not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        # No collector named: show the spans here, one JSON line each (docs/observability.md).
        os.environ.setdefault("OTEL_TRACES_EXPORTER", "console")
        os.environ.setdefault("OTEL_METRICS_EXPORTER", "none")
        print(
            f"  TELEMETRY=otel: spans to {os.environ['OTEL_TRACES_EXPORTER']}"
            " (OTEL_EXPORTER_OTLP_ENDPOINT sends them to a collector)",
            file=sys.stderr,
        )
    from lambdarun_cli.dev_app import PARENT

    os.environ[PARENT] = str(os.getpid())  # the reload worker dies with this process
    uvicorn.run(
        "lambdarun_cli.dev_app:app",
        factory=True,
        host=args.host,
        port=args.port,
        reload=args.reload,
        reload_dirs=[str(ROOT / d) for d in SOURCE_DIRS] if args.reload else None,
        log_level=args.log_level,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lambdarun", description="Develop and run the lambdarun API locally."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    dev = commands.add_parser(
        "dev",
        help="serve the API locally with auto-reload on the settings from the environment",
        description="Serve the API with uvicorn. Settings come from the environment "
        "(DATABASE_URL, QUEUE_URL, CACHE_URL, ...); the defaults need no services. "
        "TELEMETRY=otel prints each span as a JSON line, unless OTEL_EXPORTER_OTLP_ENDPOINT "
        "names a collector.",
    )
    dev.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    dev.add_argument(
        "--port", type=int, default=_default_port(), help="port (default $PORT or 8000)"
    )
    dev.add_argument(
        "--reload",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="restart when source files change (default on)",
    )
    dev.add_argument("--log-level", default="info", help="uvicorn log level (default info)")
    dev.set_defaults(func=cmd_dev)

    db = commands.add_parser("db", help="manage the database schema")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    upgrade = db_commands.add_parser(
        "upgrade",
        help="apply pending migrations to DATABASE_URL",
        description="Apply the pending migrations in adapters/postgres_migrations to the "
        "Postgres database DATABASE_URL names; each runs once, in order, under a lock. "
        "SQLite, memory and DynamoDB stores need none.",
    )
    upgrade.set_defaults(func=cmd_db_upgrade)
    add_local_commands(commands)

    schedules = commands.add_parser(
        "schedules",
        help="print the task registry's schedules as each cloud takes them",
        description="Print the scheduled tasks of the registry (api/tasks), the outbox's "
        "sweeper among them: as a table; as template.yaml's ScheduleV2 events for the worker "
        "(--format sam); as Cloud Scheduler jobs publishing to the jobs topic, for "
        "cloudrun/schedules.yaml (--format cloud-scheduler); or as the gcloud commands that "
        "create those jobs (--format gcloud). A test keeps both files in step with the "
        "registry.",
    )
    schedules.add_argument(
        "--format",
        choices=("table", "sam", "cloud-scheduler", "gcloud"),
        default="table",
        help="what to print (default table)",
    )
    schedules.add_argument(
        "--topic",
        default="projects/PROJECT_ID/topics/lambdarun-jobs",
        metavar="TOPIC",
        help="the Pub/Sub topic Cloud Scheduler publishes to (default "
        "projects/PROJECT_ID/topics/lambdarun-jobs)",
    )
    schedules.set_defaults(func=cmd_schedules)
    return parser


def cmd_schedules(args: argparse.Namespace) -> int:
    from lambdarun_cli import schedules

    return schedules.command(args)


def cmd_local_up(args: argparse.Namespace) -> int:
    from lambdarun_cli import local_up

    return local_up.command(args)


def cmd_local_invoke(args: argparse.Namespace) -> int:
    from lambdarun_cli import local_invoke

    return local_invoke.command(args)


def cmd_local_start_worker(args: argparse.Namespace) -> int:
    from lambdarun_cli import local_worker

    return local_worker.command(args)


def _template_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-t",
        "--template-file",
        "--template",
        default="template.yaml",
        metavar="PATH",
        help="the SAM template (default template.yaml)",
    )
    parser.add_argument(
        "--stack-name",
        metavar="NAME",
        help="names the local resources <stack>-<LogicalId> (default: the state file's stack, "
        "else stack_name in samconfig.toml for --config-env)",
    )
    parser.add_argument(
        "--config-env",
        default="default",
        metavar="ENV",
        help="samconfig.toml environment for the default stack name (default: default)",
    )
    parser.add_argument(
        "--parameter-overrides",
        nargs="+",
        action="extend",
        metavar="KEY=VALUE",
        help="template parameters instead of their defaults, as in SAM: 'Key=Value Key2=Value2' "
        "or ParameterKey=Key,ParameterValue=Value; invoke and start-worker start from those "
        "`local up` was given (kept in the state file)",
    )
    parser.add_argument(
        "--state",
        default=str(Path(".lambdarun") / "local-aws.json"),
        metavar="PATH",
        help="state file `local up` writes and the other commands read "
        "(default .lambdarun/local-aws.json)",
    )


def add_local_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    local = commands.add_parser(
        "local",
        help="run the AWS shape locally: tables and queues, Lambda invocations, the SQS worker",
        description="Run template.yaml's functions on this machine against a local AWS "
        "endpoint (moto in server mode, LocalStack) named by AWS_ENDPOINT_URL, without Docker. "
        "The template stays the one source of truth. See docs/local-aws.md.",
    )
    local_commands = local.add_subparsers(dest="local_command", required=True, metavar="COMMAND")

    up = local_commands.add_parser(
        "up",
        help="create the template's DynamoDB tables and SQS queues on AWS_ENDPOINT_URL",
        description="Create (or bring up to date) every AWS::DynamoDB::Table and AWS::SQS::Queue "
        "of the template on the local endpoint, with the template's properties (keys, indexes, "
        "TTL; visibility timeout, retention, message size, dead-letter redrive, FIFO), named "
        "<stack>-<LogicalId>. Running it again changes only what differs. Writes the state "
        "file: per function the variables that name these resources, in SAM's --env-vars "
        'format, plus the resources\' ids under "Stack".',
    )
    _template_options(up)
    up.add_argument(
        "--endpoint-url",
        metavar="URL",
        help="the local endpoint (default $AWS_ENDPOINT_URL; refuses to run without one)",
    )
    up.set_defaults(func=cmd_local_up)

    invoke = local_commands.add_parser(
        "invoke",
        help="invoke a function once with an event, like `sam local invoke`",
        description="Invoke FUNCTION (a logical id in the template) with an event, using its "
        "Handler, CodeUri, MemorySize, Timeout and Environment (Globals merged; !Ref, !GetAtt "
        "and !Sub resolved to the resources `local up` made). It runs in the Lambda Runtime "
        "Interface Emulator (aws-lambda-rie from aws-sam-cli, with awslambdaric) when one fits "
        "this machine, else in this process. The response goes to stdout; START/END/REPORT "
        "and the function's logs to stderr. Exit status 1 when the function fails, 2 for a "
        "usage error.",
    )
    invoke.add_argument("function", metavar="FUNCTION", help="the function's logical id")
    invoke.add_argument(
        "-e",
        "--event",
        metavar="PATH",
        help="JSON event file, '-' for stdin (default: {}), e.g. events/http_v2_get_user.json",
    )
    _env_vars_option(invoke)
    invoke.add_argument(
        "--emulator",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run in the Runtime Interface Emulator (default); --no-emulator runs the handler "
        "in this process with Lambda's environment variables",
    )
    _template_options(invoke)
    invoke.set_defaults(func=cmd_local_invoke)

    worker = local_commands.add_parser(
        "start-worker",
        help="poll a function's SQS queue and deliver batches as Lambda's event source mapping",
        description="Poll the queue FUNCTION's SQS event names and invoke FUNCTION with batches "
        "built as Lambda builds them (BatchSize, MaximumBatchingWindowInSeconds, every attribute "
        "and message attribute). Deletes what the function finished: with "
        "ReportBatchItemFailures every record not in batchItemFailures; nothing when it raised "
        "or answered something invalid. The rest comes back after the queue's visibility "
        "timeout and goes to the dead-letter queue after maxReceiveCount. The handler runs in "
        "this process (imported once, with the function's environment), or with --emulator in "
        "the Runtime Interface Emulator. SIGINT/SIGTERM: a batch in progress finishes first. "
        "When SQS cannot be reached it keeps polling with backoff (up to 10 s).",
    )
    worker.add_argument(
        "function",
        metavar="FUNCTION",
        nargs="?",
        help="the function's logical id (default: the only function with an SQS event)",
    )
    worker.add_argument(
        "--queue-url", metavar="URL", help="poll this queue instead of the event's queue"
    )
    _env_vars_option(worker)
    worker.add_argument(
        "--emulator",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="invoke through the Runtime Interface Emulator (default: in this process)",
    )
    worker.add_argument(
        "--wait-time-seconds",
        type=int,
        choices=range(21),
        default=20,
        metavar="0-20",
        help="long-poll wait of an idle ReceiveMessage, as Lambda's 20 (default); 0 polls "
        "every 0.1 s instead",
    )
    worker.add_argument(
        "--max-batches", type=int, metavar="N", help="stop after N batches were delivered"
    )
    worker.add_argument(
        "--until-empty",
        action="store_true",
        help="stop once the queue holds nothing visible, in flight or delayed",
    )
    _template_options(worker)
    worker.set_defaults(func=cmd_local_start_worker)


def _env_vars_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-n",
        "--env-vars",
        metavar="PATH",
        help='JSON file of variables, SAM\'s format: {"FunctionId": {"VAR": "value"}, '
        '"Parameters": {"VAR": "value"}} ("Parameters" applies to every function)',
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
