"""The command line every service shares: `python -m <service> serve|migrate|wait-for-migrations`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from stocksync_common.migrations import upgrade, wait_until_current
from stocksync_common.settings import ServiceSettings


def main(
    prog: str,
    settings_factory: Callable[[], ServiceSettings],
    app_factory: Callable[[ServiceSettings], FastAPI],
    migrations: Path,
    argv: list[str] | None = None,
) -> None:
    parser = argparse.ArgumentParser(prog=prog)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the HTTP API and the consumers")
    sub.add_parser("migrate", help="apply database migrations and exit")
    wait = sub.add_parser(
        "wait-for-migrations",
        help="wait until the database schema is at this version's head (exit 1 after --timeout seconds)",
    )
    wait.add_argument("--timeout", type=float, default=600.0, help="seconds to wait (default 600)")
    args = parser.parse_args(argv)
    settings = settings_factory()
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
