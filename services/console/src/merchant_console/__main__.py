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
    uvicorn.run(create_app(settings), host=settings.http_host, port=settings.http_port, log_level="warning")


if __name__ == "__main__":
    main()
