from __future__ import annotations

from pathlib import Path

from stocksync_common.cli import main as run_cli

from order_ingest.config import IngestSettings
from order_ingest.entrypoints.app import create_app


def main() -> None:
    run_cli("order-ingest", IngestSettings, create_app, Path(__file__).parent / "migrations")  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
