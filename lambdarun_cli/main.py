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
    try:
        return int(os.environ.get("PORT", "8000"))
    except ValueError:
        sys.exit("PORT must be a number")


POSTGRES_SCHEMES = ("postgresql", "postgres")


def _settings(command: str) -> Settings | None:
    from api.settings import SettingsError, load_settings

    try:
        return load_settings()
    except SettingsError as exc:
        print(f"lambdarun {command}: {exc}", file=sys.stderr)
        return None


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

    settings = _settings("dev")  # fail here, with the setting named, not in a reload worker
    if settings is None:
        return 2
    if scheme_of(settings.database_url) in POSTGRES_SCHEMES:
        status = _upgrade(settings.database_url, "dev")
        if status:
            return status
    print(
        f"lambdarun dev: http://{args.host}:{args.port} (docs at /docs)\n"
        f"  DATABASE_URL={settings.database_url}  QUEUE_URL={settings.queue_url}"
        f"  CACHE_URL={settings.cache_url}",
        file=sys.stderr,
    )
    uvicorn.run(
        "api.app:create_app",
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
        "(DATABASE_URL, QUEUE_URL, CACHE_URL, ...); the defaults need no services.",
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
