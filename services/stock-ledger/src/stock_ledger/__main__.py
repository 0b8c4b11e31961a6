"""stock-ledger command line: `serve`, `migrate` (shared) and `reconcile`."""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from pathlib import Path

from stocksync_common.cli import Command
from stocksync_common.cli import main as run_cli
from stocksync_common.db import make_engine
from stocksync_common.settings import ServiceSettings

from stock_ledger.config import LedgerSettings
from stock_ledger.entrypoints.app import create_app
from stock_ledger.service_layer.reconciliation import emitted_versions, ledger_discrepancies, version_discrepancies


async def reconcile(settings: ServiceSettings, merchant_id: uuid.UUID | None, check_events: bool) -> int:
    """Print every discrepancy; return how many there are."""
    engine = make_engine(settings.database_url, pool_size=2)
    try:
        found = await ledger_discrepancies(engine, merchant_id)
        if check_events:
            emitted = await emitted_versions(settings.kafka_bootstrap_servers, merchant_id)
            found += await version_discrepancies(engine, emitted, merchant_id)
    finally:
        await engine.dispose()
    for discrepancy in found:
        print(discrepancy.describe())
    print(f"reconciliation: {len(found)} discrepancies", file=sys.stderr)
    return len(found)


def _reconcile_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--merchant", type=uuid.UUID, help="only this merchant")
    parser.add_argument("--skip-events", action="store_true", help="do not read stock.changed.v1 from the broker")


def _run_reconcile(args: argparse.Namespace, settings: ServiceSettings) -> int:
    return 1 if asyncio.run(reconcile(settings, args.merchant, not args.skip_events)) else 0


RECONCILE = Command(
    "compare ledger sums with stock rows and versions with emitted events; exit 1 on any difference",
    _reconcile_arguments,
    _run_reconcile,
)


def main(argv: list[str] | None = None) -> None:
    run_cli(
        "stock-ledger",
        LedgerSettings,
        create_app,  # type: ignore[arg-type]
        Path(__file__).parent / "migrations",
        argv,
        commands={"reconcile": RECONCILE},
    )


if __name__ == "__main__":
    main()
