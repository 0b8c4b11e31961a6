"""`python -m merchant_console serve`: the console on HTTP_HOST:HTTP_PORT (it has no database)."""

from __future__ import annotations

import argparse

import uvicorn

from merchant_console.config import ConsoleSettings
from merchant_console.entrypoints.app import create_app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m merchant_console")
    parser.add_argument("command", choices=["serve"])
    parser.parse_args()
    settings = ConsoleSettings()
    # Idle connections are kept longer than a proxy's pool keeps them (httpx: 5 s), so the
    # proxy, never the console, closes them: no request is sent on a connection closing under it.
    uvicorn.run(
        create_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        log_level="warning",
        timeout_keep_alive=75,
    )


if __name__ == "__main__":
    main()
