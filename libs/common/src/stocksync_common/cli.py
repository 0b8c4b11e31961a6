"""The command line every service shares: `python -m <service> serve|migrate|wait-for-migrations`,
plus the commands a service adds (stock-ledger's `reconcile`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from stocksync_common.migrations import upgrade, wait_until_current
from stocksync_common.settings import ServiceSettings


@dataclass(frozen=True)
class Command:
    """A service's own command: its help, its arguments, and what it runs (the exit code)."""

    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, ServiceSettings], int]


def main(
    prog: str,
    settings_factory: Callable[[], ServiceSettings],
    app_factory: Callable[[ServiceSettings], FastAPI],
    migrations: Path,
    argv: list[str] | None = None,
    commands: Mapping[str, Command] | None = None,
) -> None:
    commands = commands or {}
    parser = argparse.ArgumentParser(prog=prog)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the HTTP API and the consumers")
    sub.add_parser("migrate", help="apply database migrations and exit")
    wait = sub.add_parser(
        "wait-for-migrations",
        help="wait until the database schema is at this version's head (exit 1 after --timeout seconds)",
    )
    wait.add_argument("--timeout", type=float, default=600.0, help="seconds to wait (default 600)")
    for name, command in commands.items():
        command.arguments(sub.add_parser(name, help=command.help, description=command.help))
    args = parser.parse_args(argv)
    settings = settings_factory()
    if args.command in commands:
        sys.exit(commands[args.command].run(args, settings))
    if args.command == "migrate":
        upgrade(migrations, settings.database_url)
        return
    if args.command == "wait-for-migrations":
        schema = prog.replace("-", "_")
        if not wait_until_current(migrations, settings.database_url, schema, args.timeout):
            print(f"{prog}: schema {schema} is not at this version's head after {args.timeout:g} s", file=sys.stderr)
            sys.exit(1)
        return
    uvicorn.run(
        app_factory(settings),
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(settings.graceful_shutdown_timeout_s),
    )
