"""`lambdarun`: the local development server and project tooling."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE_DIRS = ("api", "adapters", "handlers")


def _default_port() -> int:
    try:
        return int(os.environ.get("PORT", "8000"))
    except ValueError:
        sys.exit("PORT must be a number")


def cmd_dev(args: argparse.Namespace) -> int:
    import uvicorn

    from api.settings import SettingsError, load_settings

    try:
        settings = load_settings()  # fail here, with the setting named, not in a reload worker
    except SettingsError as exc:
        print(f"lambdarun dev: {exc}", file=sys.stderr)
        return 2
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
